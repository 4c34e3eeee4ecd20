"""The machine's CPUs and memory nodes as the kernel lists them, and that list syntax.

A list is what ``/sys/devices/system/cpu/online`` and ``cpuset.cpus`` hold: numbers
and ranges separated by commas, ``0-3,6``.
"""

import os

__all__ = ["format_list", "online_cpus", "online_memory_nodes", "parse_list"]


def parse_list(text: str) -> set[int]:
    """``"0-2,5"`` -> ``{0, 1, 2, 5}``; ``""`` is the empty set; ValueError if malformed."""
    out: set[int] = set()
    if not text.strip():
        return out
    for part in text.strip().split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"invalid format: {text}")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(f"invalid format: {text}")
        out.update(range(first, last + 1))
    return out


def format_list(numbers: set[int]) -> str:
    """The shortest list of ``numbers``: ``{0, 1, 2, 5}`` -> ``"0-2,5"``."""
    parts: list[str] = []
    ordered = sorted(numbers)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def _read_list(path: str) -> set[int] | None:
    try:
        with open(path) as f:
            return parse_list(f.read())
    except (OSError, ValueError):
        return None


def online_cpus(root: str = "/") -> set[int]:
    """The CPUs that are online (what a cpuset may name); this process's affinity if the
    kernel does not say."""
    found = _read_list(os.path.join(root, "sys/devices/system/cpu/online"))
    return found if found else set(os.sched_getaffinity(0))


def online_memory_nodes(root: str = "/") -> set[int]:
    """The memory (NUMA) nodes that are online; ``{0}`` on a kernel without NUMA."""
    found = _read_list(os.path.join(root, "sys/devices/system/node/online"))
    return found if found else {0}
