"""``docker top`` and ``docker stats``: a running container's processes and usage.

Top runs the host's ``ps`` (procps) with the caller's arguments and keeps the rows
whose PID is in the container's cgroup, as dockerd does: the PID column must be
there, and the arguments may not rename it.

Stats reads the container's cgroup (v1 or v2, through the runtime's cgroup manager
for the directories) and its init's ``/proc/<pid>/net/dev``, and shapes the numbers
as dockerd's ``StatsJSON``: CPU time in nanoseconds with the host's total
(``system_cpu_usage``, from ``/proc/stat``) so a client can compute a percentage
against the previous sample (``precpu_stats``), memory with its limit (the host's
memory when there is none), process count, block I/O and network counters.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from moorage.errors import Conflict, FailedPrecondition, InvalidArgument, MoorageError, NotFound

__all__ = [
    "Sample",
    "container_top",
    "parse_ps_output",
    "read_sample",
    "sample_container",
    "stats_json",
    "stats_once",
    "stats_stream",
    "top",
    "zero_stats",
]

ZERO_TIME: Final = "0001-01-01T00:00:00Z"
NS_PER_SECOND: Final = 1_000_000_000
# A ps argument that renames a column to PID ("-o user=PID") would fool the PID lookup.
_PS_RENAME: Final = re.compile(r"\s+([^\s]*)=\s*(PID[^\s]*)")
_V2_MEMORY_KEYS: Final = (
    "anon",
    "file",
    "kernel_stack",
    "slab",
    "sock",
    "shmem",
    "file_mapped",
    "file_dirty",
    "file_writeback",
    "anon_thp",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "slab_reclaimable",
    "slab_unreclaimable",
    "pgfault",
    "pgmajfault",
    "workingset_refault",
    "workingset_activate",
    "workingset_nodereclaim",
    "pgrefill",
    "pgscan",
    "pgsteal",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pglazyfreed",
    "thp_fault_alloc",
    "thp_collapse_alloc",
)
_BLKIO_V1: Final = (
    ("io_service_bytes_recursive", "blkio.throttle.io_service_bytes_recursive"),
    ("io_serviced_recursive", "blkio.throttle.io_serviced_recursive"),
    ("io_queue_recursive", "blkio.io_queued_recursive"),
    ("io_service_time_recursive", "blkio.io_service_time_recursive"),
    ("io_wait_time_recursive", "blkio.io_wait_time_recursive"),
    ("io_merged_recursive", "blkio.io_merged_recursive"),
    ("io_time_recursive", "blkio.time_recursive"),
    ("sectors_recursive", "blkio.sectors_recursive"),
)
_BLKIO_KEYS: Final = tuple(key for key, _ in _BLKIO_V1)


# --- top ----------------------------------------------------------------------------------


def _check_ps_args(ps_args: str) -> None:
    for key, value in _PS_RENAME.findall(ps_args):
        if key != "pid":
            raise InvalidArgument(f'specifying "{key}={value}" is not allowed')


def parse_ps_output(output: str, pids: Sequence[int]) -> dict[str, Any]:
    """dockerd's ``parsePSOutput``: the header's titles, and the rows of ``pids``.

    A row with ``-`` as its PID (a thread, with ``ps -m``) belongs to the process
    above it. The last column takes the rest of the line (a command with spaces).
    """
    lines = output.split("\n")
    titles = lines[0].split()
    if "PID" not in titles:
        raise FailedPrecondition("Couldn't find PID field in ps output")
    index = titles.index("PID")
    wanted = set(pids)
    processes: list[list[str]] = []
    previous_kept = False
    for line in lines[1:]:
        if not line:
            continue
        fields = line.split()
        if len(fields) <= index:
            continue
        if fields[index] == "-":
            if previous_kept:
                processes.append(_row(fields, len(titles)))
            continue
        try:
            pid = int(fields[index])
        except ValueError:
            raise FailedPrecondition(f"Unexpected pid '{fields[index]}'") from None
        previous_kept = pid in wanted
        if previous_kept:
            processes.append(_row(fields, len(titles)))
    return {"Titles": titles, "Processes": processes}


def _row(fields: list[str], columns: int) -> list[str]:
    return [*fields[: columns - 1], " ".join(fields[columns - 1 :])]


def top(pids: Sequence[int], ps_args: str = "", *, ps: str = "ps") -> dict[str, Any]:
    """``GET /containers/{id}/top``: ``ps ps_args`` (default ``-ef``), rows of ``pids``."""
    ps_args = ps_args or "-ef"
    _check_ps_args(ps_args)
    try:
        args = shlex.split(ps_args)
    except ValueError as exc:
        raise InvalidArgument(f"invalid ps_args: {exc}") from exc
    # As dockerd: ask ps for the container's processes only (-q); some options (f)
    # do not go with -q, so on failure ask for every process and filter here.
    attempts = [[ps, *args, "-q" + ",".join(str(p) for p in pids)]] if pids else []
    attempts.append([ps, *args])
    result: subprocess.CompletedProcess[bytes] | None = None
    for argv in attempts:
        try:
            result = subprocess.run(argv, capture_output=True, check=False, timeout=30)
        except FileNotFoundError as exc:
            raise FailedPrecondition(f"ps: {ps} is not installed (procps)") from exc
        except subprocess.TimeoutExpired as exc:
            raise FailedPrecondition("ps: timed out") from exc
        if result.returncode == 0:
            break
    assert result is not None
    if result.returncode != 0:
        first = result.stderr.decode(errors="replace").strip().split("\n", 1)[0]
        raise InvalidArgument(first or f"ps {ps_args}: exit status {result.returncode}")
    return parse_ps_output(result.stdout.decode(errors="replace"), pids)


def container_top(runtime_root: str, container_id: str, ps_args: str = "") -> dict[str, Any]:
    """:func:`top` of a container of the runtime at ``runtime_root``; :class:`Conflict`
    when it is not running (its runtime state or cgroup is gone)."""
    from moorage.runtime import api

    _check_ps_args(ps_args)
    try:
        pids = api.container_pids(runtime_root, container_id)
    except NotFound as exc:
        raise Conflict(f"Container {container_id} is not running") from exc
    return top(pids, ps_args)


# --- reading a sample ---------------------------------------------------------------------


@dataclass
class Sample:
    """What the kernel says about a container at one moment; None: not offered."""

    read_ns: int
    cpu_total: int = 0
    cpu_percpu: list[int] | None = None
    cpu_user: int = 0
    cpu_kernel: int = 0
    throttling: dict[str, int] = field(
        default_factory=lambda: {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
    )
    system_cpu: int = 0
    online_cpus: int = 0
    memory_usage: int | None = None
    memory_max_usage: int | None = None
    memory_limit: int | None = None
    memory_failcnt: int | None = None
    memory_stats: dict[str, int] = field(default_factory=dict)
    pids_current: int | None = None
    pids_limit: int | None = None
    blkio: dict[str, list[dict[str, Any]] | None] = field(default_factory=dict)
    networks: dict[str, dict[str, int]] | None = None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.EINVAL):  # a file the controller refuses
            return None
        raise


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _keyed(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                out[parts[0]] = int(parts[1])
    return out


def _limit(value: int | None) -> int | None:
    """None for no limit: "max" on v2, the kernel's page-counter maximum on v1."""
    if value is None or value >= 1 << 62 or value < 0:
        return None
    return value


def _blkio_v1(text: str | None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, _, minor = parts[0].partition(":")
            with contextlib.suppress(ValueError):
                entries.append(
                    {
                        "major": int(major),
                        "minor": int(minor),
                        "op": parts[1],
                        "value": int(parts[2]),
                    }
                )
        elif len(parts) == 2 and ":" in parts[0]:  # blkio.time_recursive, sectors
            major, _, minor = parts[0].partition(":")
            with contextlib.suppress(ValueError):
                entries.append(
                    {"major": int(major), "minor": int(minor), "op": "", "value": int(parts[1])}
                )
    return entries


def _io_stat_v2(text: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    service_bytes: list[dict[str, Any]] = []
    serviced: list[dict[str, Any]] = []
    for line in (text or "").splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, _, minor = parts[0].partition(":")
        values = dict(p.partition("=")[::2] for p in parts[1:])
        try:
            dev = {"major": int(major), "minor": int(minor)}
            service_bytes += [
                {**dev, "op": "read", "value": int(values.get("rbytes", 0))},
                {**dev, "op": "write", "value": int(values.get("wbytes", 0))},
            ]
            serviced += [
                {**dev, "op": "read", "value": int(values.get("rios", 0))},
                {**dev, "op": "write", "value": int(values.get("wios", 0))},
            ]
        except ValueError:
            continue
    return service_bytes, serviced


def read_proc_stat(text: str, clock_ticks: int) -> tuple[int, int]:
    """``(system_cpu_usage ns, online cpus)`` from ``/proc/stat``, as dockerd sums it:
    the first seven fields of the ``cpu`` line, and one cpu per ``cpuN`` line."""
    total = 0
    cpus = 0
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "cpu" and len(parts) >= 8:
            total = sum(int(v) for v in parts[1:8]) * NS_PER_SECOND // clock_ticks
        elif parts[0].startswith("cpu") and parts[0][3:].isdigit():
            cpus += 1
    return total, cpus


def read_net_dev(text: str) -> dict[str, dict[str, int]]:
    """``/proc/<pid>/net/dev`` as Docker's ``networks`` (loopback left out)."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        name = name.strip()
        values = rest.split()
        if not sep or name == "lo" or len(values) < 16:
            continue
        try:
            v = [int(x) for x in values[:16]]
        except ValueError:
            continue
        out[name] = {
            "rx_bytes": v[0],
            "rx_packets": v[1],
            "rx_errors": v[2],
            "rx_dropped": v[3],
            "tx_bytes": v[8],
            "tx_packets": v[9],
            "tx_errors": v[10],
            "tx_dropped": v[11],
        }
    return out


def _read_v1(paths: Mapping[str, str], s: Sample, clock_ticks: int) -> None:
    def f(controller: str, name: str) -> str | None:
        d = paths.get(controller)
        return None if d is None else _read(os.path.join(d, name))

    s.cpu_total = _int(f("cpuacct", "cpuacct.usage")) or 0
    percpu = f("cpuacct", "cpuacct.usage_percpu")
    if percpu is not None:
        s.cpu_percpu = [int(v) for v in percpu.split() if v.isdigit()]
    acct = _keyed(f("cpuacct", "cpuacct.stat"))
    s.cpu_user = acct.get("user", 0) * NS_PER_SECOND // clock_ticks
    s.cpu_kernel = acct.get("system", 0) * NS_PER_SECOND // clock_ticks
    cpu = _keyed(f("cpu", "cpu.stat"))
    s.throttling = {
        "periods": cpu.get("nr_periods", 0),
        "throttled_periods": cpu.get("nr_throttled", 0),
        "throttled_time": cpu.get("throttled_time", 0),
    }
    s.memory_usage = _int(f("memory", "memory.usage_in_bytes"))
    s.memory_max_usage = _int(f("memory", "memory.max_usage_in_bytes"))
    s.memory_limit = _limit(_int(f("memory", "memory.limit_in_bytes")))
    s.memory_failcnt = _int(f("memory", "memory.failcnt"))
    s.memory_stats = _keyed(f("memory", "memory.stat"))
    s.pids_current = _int(f("pids", "pids.current"))
    s.pids_limit = _limit(_int(f("pids", "pids.max")))
    s.blkio = {key: _blkio_v1(f("blkio", name)) for key, name in _BLKIO_V1}


def _read_v2(directory: str, s: Sample) -> None:
    def f(name: str) -> str | None:
        return _read(os.path.join(directory, name))

    cpu = _keyed(f("cpu.stat"))
    s.cpu_total = cpu.get("usage_usec", 0) * 1000
    s.cpu_user = cpu.get("user_usec", 0) * 1000
    s.cpu_kernel = cpu.get("system_usec", 0) * 1000
    s.throttling = {
        "periods": cpu.get("nr_periods", 0),
        "throttled_periods": cpu.get("nr_throttled", 0),
        "throttled_time": cpu.get("throttled_usec", 0) * 1000,
    }
    s.memory_usage = _int(f("memory.current"))
    s.memory_limit = _limit(_int(f("memory.max")))
    stat = _keyed(f("memory.stat"))
    s.memory_stats = {k: stat[k] for k in _V2_MEMORY_KEYS if k in stat}
    events = _keyed(f("memory.events"))
    s.memory_failcnt = events.get("oom")
    s.pids_current = _int(f("pids.current"))
    s.pids_limit = _limit(_int(f("pids.max")))
    service_bytes, serviced = _io_stat_v2(f("io.stat"))
    s.blkio = {
        "io_service_bytes_recursive": service_bytes or None,
        "io_serviced_recursive": serviced or None,
    }


def read_sample(
    paths: Mapping[str, str],
    *,
    pid: int | None = None,
    proc: str = "/proc",
    clock_ticks: int | None = None,
    now_ns: int | None = None,
) -> Sample:
    """One sample of the cgroup whose directories are ``paths`` (controller -> directory,
    ``""`` for the v2 one, as ``CgroupManager.paths()`` gives them), and of the network
    namespace of process ``pid``. ``proc`` and ``clock_ticks`` are for tests."""
    ticks = clock_ticks or os.sysconf("SC_CLK_TCK")
    s = Sample(read_ns=time.time_ns() if now_ns is None else now_ns)
    if any(c in paths for c in ("memory", "cpuacct", "pids", "cpu")):
        _read_v1(paths, s, ticks)
    elif "" in paths:
        _read_v2(paths[""], s)
    s.system_cpu, s.online_cpus = read_proc_stat(_read(f"{proc}/stat") or "", ticks)
    if pid:
        s.networks = _networks(proc, pid)
    return s


def _networks(proc: str, pid: int) -> dict[str, dict[str, int]] | None:
    """The init's interfaces; None when it shares the daemon's network namespace (as
    with ``--network host``, where Docker reports no networks)."""
    try:
        if os.stat(f"{proc}/{pid}/ns/net").st_ino == os.stat(f"{proc}/self/ns/net").st_ino:
            return None
    except OSError:
        pass
    text = _read(f"{proc}/{pid}/net/dev")
    if text is None:
        return None
    return read_net_dev(text) or None


def sample_container(runtime_root: str, container_id: str, pid: int | None) -> Sample | None:
    """A sample of a container of the runtime at ``runtime_root``; None once it is gone."""
    from moorage.runtime.cgroups import new_manager
    from moorage.runtime.container import ContainerDir

    try:
        record = ContainerDir(runtime_root, container_id).read()
        manager = new_manager(record.cgroups_path or None, container_id)
        if not manager.exists():
            return None
        paths = manager.paths()
    except NotFound:
        return None
    return read_sample(paths, pid=pid or record.pid or None)


# --- Docker's shape -----------------------------------------------------------------------


def _go_time(ns: int) -> str:
    from moorage.engine.container_fs import go_time

    return go_time(ns)


def mem_total(meminfo: str = "/proc/meminfo") -> int:
    text = _read(meminfo) or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu_stats(s: Sample | None) -> dict[str, Any]:
    if s is None:
        return {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        }
    usage: dict[str, Any] = {"total_usage": s.cpu_total}
    if s.cpu_percpu:
        usage["percpu_usage"] = s.cpu_percpu
    usage["usage_in_kernelmode"] = s.cpu_kernel
    usage["usage_in_usermode"] = s.cpu_user
    out: dict[str, Any] = {"cpu_usage": usage}
    if s.system_cpu:
        out["system_cpu_usage"] = s.system_cpu
    if s.online_cpus:
        out["online_cpus"] = s.online_cpus
    out["throttling_data"] = dict(s.throttling)
    return out


def _empty_blkio() -> dict[str, Any]:
    return dict.fromkeys(_BLKIO_KEYS)


def zero_stats(name: str, container_id: str) -> dict[str, Any]:
    """What dockerd answers ``stream=false`` for a container that is not running."""
    return {
        "read": ZERO_TIME,
        "preread": ZERO_TIME,
        "pids_stats": {},
        "blkio_stats": _empty_blkio(),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu_stats(None),
        "precpu_stats": _cpu_stats(None),
        "memory_stats": {},
        "name": "/" + name.removeprefix("/"),
        "id": container_id,
    }


def stats_json(
    s: Sample,
    previous: Sample | None,
    *,
    name: str,
    container_id: str,
    host_memory: int | None = None,
) -> dict[str, Any]:
    """Docker's ``StatsJSON`` of sample ``s``, ``previous`` as ``precpu_stats``."""
    machine = mem_total() if host_memory is None else host_memory
    memory: dict[str, Any] = {}
    if s.memory_usage is not None:
        memory["usage"] = s.memory_usage
        if s.memory_max_usage:
            memory["max_usage"] = s.memory_max_usage
        memory["stats"] = dict(s.memory_stats)
        if s.memory_failcnt:
            memory["failcnt"] = s.memory_failcnt
        limit = s.memory_limit
        if limit is None or (machine and limit > machine):
            limit = machine
        memory["limit"] = limit
    pids: dict[str, int] = {}
    if s.pids_current is not None:
        pids["current"] = s.pids_current
        if s.pids_limit:
            pids["limit"] = s.pids_limit
    out: dict[str, Any] = {
        "read": _go_time(s.read_ns),
        "preread": _go_time(previous.read_ns) if previous is not None else ZERO_TIME,
        "pids_stats": pids,
        "blkio_stats": {**_empty_blkio(), **s.blkio},
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu_stats(s),
        "precpu_stats": _cpu_stats(previous),
        "memory_stats": memory,
        "name": "/" + name.removeprefix("/"),
        "id": container_id,
    }
    if s.networks:
        out["networks"] = s.networks
    return out


Sampler = Callable[[], "Sample | None"]


def stats_once(
    sampler: Sampler,
    *,
    name: str,
    container_id: str,
    one_shot: bool = False,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """``stream=false``: two samples ``interval`` apart (so ``precpu_stats`` is filled),
    or one with ``one_shot``; zeroed stats when the container is (or goes) away."""
    first = sampler()
    if first is None:
        return zero_stats(name, container_id)
    if one_shot:
        return stats_json(first, None, name=name, container_id=container_id)
    sleep(interval)
    second = sampler()
    if second is None:
        return stats_json(first, None, name=name, container_id=container_id)
    return stats_json(second, first, name=name, container_id=container_id)


def stats_stream(
    sampler: Sampler,
    *,
    name: str,
    container_id: str,
    running: Callable[[], bool],
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, Any]]:
    """``stream=true``: a sample every ``interval`` seconds until the container stops
    (``running()`` false, or its cgroup gone). Each object's ``precpu_stats`` is the
    one before; the first has none, as with dockerd."""
    previous: Sample | None = None
    while running():
        try:
            current = sampler()
        except MoorageError:
            return
        if current is None:
            return
        yield stats_json(current, previous, name=name, container_id=container_id)
        previous = current
        sleep(interval)
