"""Reading /proc: process stat and status, mount tables, open descriptors."""

import os
from typing import NamedTuple

__all__ = ["MountInfo", "ProcStat", "mountinfo", "open_fds", "stat", "status"]


class ProcStat(NamedTuple):
    pid: int
    comm: str
    state: str
    ppid: int
    start_time: int  # clock ticks since boot; with pid, identifies a process


def stat(pid: int) -> ProcStat | None:
    """Parse /proc/<pid>/stat, or None when the process does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm is in parentheses and may itself contain spaces and parentheses.
    lpar, rpar = raw.index("("), raw.rindex(")")
    rest = raw[rpar + 2 :].split()
    return ProcStat(
        pid=int(raw[:lpar]),
        comm=raw[lpar + 1 : rpar],
        state=rest[0],
        ppid=int(rest[1]),
        start_time=int(rest[19]),
    )


def status(pid: int | str = "self") -> dict[str, str]:
    """/proc/<pid>/status as a dict of field -> raw value."""
    fields: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


class MountInfo(NamedTuple):
    mount_id: int
    parent_id: int
    root: str
    mount_point: str
    options: str
    optional: tuple[str, ...]
    fstype: str
    source: str
    super_options: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mountinfo(pid: int | str = "self") -> list[MountInfo]:
    mounts: list[MountInfo] = []
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            mounts.append(
                MountInfo(
                    mount_id=int(parts[0]),
                    parent_id=int(parts[1]),
                    root=_unescape(parts[3]),
                    mount_point=_unescape(parts[4]),
                    options=parts[5],
                    optional=tuple(parts[6:sep]),
                    fstype=parts[sep + 1],
                    source=_unescape(parts[sep + 2]),
                    super_options=parts[sep + 3] if len(parts) > sep + 3 else "",
                )
            )
    return mounts


def open_fds(pid: int | str = "self") -> list[int]:
    return sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))
