"""The cgroup v2 manager: one directory in the unified hierarchy.

It owns the v2 rules: a controller works in a cgroup only when every ancestor has it in
cgroup.subtree_control, and only controllers listed in an ancestor's cgroup.controllers
can be enabled there; settings are translated from the OCI (v1-shaped) values: cpu
shares to cpu.weight, memory+swap to swap alone, blkio weight to io.weight. Freezing goes
through cgroup.freeze and is confirmed by cgroup.events; SIGKILL through cgroup.kill.

Device rules are not enforced here: v2 needs an eBPF program for them, which Moorage does
not load yet; they are logged and skipped so a default Docker-style config still runs.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable

from moorage.errors import FailedPrecondition, InvalidArgument, NotFound, NotSupported
from moorage.runtime.cgroups._log import LazyLogger
from moorage.runtime.cgroups.manager import (
    DEFAULT_TIMEOUT,
    CgroupManager,
    CgroupStats,
    HierarchyDir,
    collect_pids,
    parse_limit,
    read_optional,
    remove_tree,
    signal_all,
    wait_until,
)
from moorage.runtime.cgroups.resources import (
    CgroupResources,
    CpuResources,
    HugepageLimit,
    MemoryResources,
)
from moorage.sys.cgroupfs import CgroupFS

__all__ = [
    "MANAGED_CONTROLLERS",
    "V2Manager",
    "blkio_weight_to_io_weight",
    "shares_to_weight",
    "swap_to_v2",
]

log = LazyLogger(__name__)

# The controllers a container's cgroup gets by default, when the machine has them.
MANAGED_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids", "hugetlb")

# File-name prefixes of the controllers a `unified` key may need enabled.
_CONTROLLER_PREFIXES = frozenset(MANAGED_CONTROLLERS) | {"rdma", "misc"}


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144, default 1024) to cpu.weight (1..10000, default 100), linearly."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) to io.weight (1..10000), linearly."""
    weight = min(max(weight, 10), 1000)
    return 1 + ((weight - 10) * 9999) // 990


def swap_to_v2(memory: MemoryResources) -> str | None:
    """memory.swap.max for the OCI memory+swap total: ``swap - limit``; None leaves it.

    v2 limits swap on its own, so the total only converts when the memory limit is known.
    """
    if memory.swap is None:
        return None
    if memory.swap == -1:
        return "max"
    if memory.limit is None:
        raise InvalidArgument(
            "linux.resources.memory.swap needs linux.resources.memory.limit on cgroup v2"
        )
    # MemoryResources guarantees swap >= limit > 0 here.
    return str(memory.swap - memory.limit)


def _needed_controllers(r: CgroupResources) -> list[str]:
    needed: list[str] = []
    m = r.memory
    if m is not None and (m.limit, m.reservation, m.swap) != (None, None, None):
        needed.append("memory")
    if r.cpu is not None and r.cpu.wants_cpu():
        needed.append("cpu")
    if r.cpu is not None and r.cpu.wants_cpuset():
        needed.append("cpuset")
    if r.pids is not None:
        needed.append("pids")
    if r.block_io is not None and r.block_io.weight is not None:
        needed.append("io")
    if r.hugepage_limits:
        needed.append("hugetlb")
    for key in r.unified:
        prefix = key.split(".", 1)[0]
        if prefix in _CONTROLLER_PREFIXES and prefix not in needed:
            needed.append(prefix)
    return needed


class V2Manager(CgroupManager):
    """A container's cgroup at ``where`` in the unified hierarchy.

    ``controllers`` are enabled on the way down at :meth:`create` (those the machine lacks
    are skipped); None means :data:`MANAGED_CONTROLLERS`. :meth:`apply` enables whatever
    else its settings need, and fails if the machine lacks it.
    """

    def __init__(
        self,
        fs: CgroupFS,
        where: HierarchyDir,
        *,
        controllers: Iterable[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._fs = fs
        self._where = where
        self._path = where.path
        self._create_with = MANAGED_CONTROLLERS if controllers is None else tuple(controllers)
        self._timeout = timeout

    def _file(self, name: str) -> str:
        return f"{self._path}/{name}"

    # --- controllers -----------------------------------------------------------------------

    def _enable(self, controllers: Iterable[str], *, required: bool) -> None:
        """Enable ``controllers`` in each ancestor's subtree_control, creating ancestors."""
        wanted = list(controllers)
        for ancestor in self._where.lineage()[:-1]:
            self._fs.mkdir(ancestor)
            available = set(self._fs.read(f"{ancestor}/cgroup.controllers").split())
            missing = [c for c in wanted if c not in available]
            if missing and required:
                raise FailedPrecondition(f'cgroup v2 controller "{missing[0]}" is not available')
            wanted = [c for c in wanted if c in available]
            enabled = set(self._fs.read(f"{ancestor}/cgroup.subtree_control").split())
            todo = [c for c in wanted if c not in enabled]
            if todo:
                self._write_subtree_control(ancestor, todo)

    def _write_subtree_control(self, directory: str, controllers: list[str]) -> None:
        path = f"{directory}/cgroup.subtree_control"
        try:
            self._fs.write(path, " ".join(f"+{c}" for c in controllers))
        except InvalidArgument as exc:
            # "No internal processes": a non-root cgroup with processes of its own cannot
            # hand controllers to children, which is the usual cause of EBUSY here.
            if self._fs.read(f"{directory}/cgroup.procs"):
                raise FailedPrecondition(
                    f"cannot enable {', '.join(controllers)} in {directory}: it has "
                    "processes of its own, so cgroup v2 lets it give no controllers to children"
                ) from exc
            raise

    def _ensure(self, controllers: list[str]) -> None:
        try:
            present = set(self._fs.read(self._file("cgroup.controllers")).split())
        except NotFound:
            present = set()
        if not set(controllers) <= present:
            self._enable(controllers, required=True)

    # --- life cycle ------------------------------------------------------------------------

    def create(self) -> None:
        self._enable(self._create_with, required=False)
        self._fs.mkdir(self._path)

    def join(self, pid: int) -> None:
        self._fs.write(self._file("cgroup.procs"), str(pid))

    def exists(self) -> bool:
        return self._fs.is_dir(self._path)

    def paths(self) -> dict[str, str]:
        return {"": self._path}

    def destroy(self) -> None:
        remove_tree(self._fs, self._path, self._timeout)

    # --- limits ----------------------------------------------------------------------------

    def apply(self, resources: CgroupResources) -> None:
        needed = _needed_controllers(resources)
        if needed:
            self._ensure(needed)
        if resources.memory is not None:
            self._apply_memory(resources.memory)
        if resources.cpu is not None:
            self._apply_cpu(resources.cpu)
        if resources.pids is not None:
            limit = resources.pids.limit
            self._fs.write(self._file("pids.max"), str(limit) if limit > 0 else "max")
        if resources.devices:
            log.warning(
                "linux.resources.devices is not enforced on cgroup v2 (needs eBPF): %s",
                self._path,
            )
        if resources.block_io is not None and resources.block_io.weight is not None:
            self._apply_io_weight(resources.block_io.weight)
        if resources.hugepage_limits:
            self._apply_hugepages(resources.hugepage_limits)
        # Last, so that a verbatim value wins over the same setting converted above.
        for key, value in resources.unified.items():
            path = self._file(key)
            if not self._fs.exists(path):
                raise InvalidArgument(
                    f'linux.resources.unified: no cgroup file "{key}" in {self._path}'
                )
            self._fs.write(path, value)

    def _apply_memory(self, m: MemoryResources) -> None:
        if m.limit is not None:
            self._fs.write(self._file("memory.max"), "max" if m.limit == -1 else str(m.limit))
        if m.reservation is not None:
            value = "max" if m.reservation == -1 else str(m.reservation)
            self._fs.write(self._file("memory.low"), value)
        swap = swap_to_v2(m)
        if swap is not None:
            if self._fs.exists(self._file("memory.swap.max")):
                self._fs.write(self._file("memory.swap.max"), swap)
            else:
                log.debug("swap accounting is off: ignoring linux.resources.memory.swap")
        if m.swappiness is not None:
            log.debug("cgroup v2 has no per-cgroup swappiness: ignoring it")
        if m.disable_oom_killer:
            log.warning("cgroup v2 cannot disable the oom killer: ignoring disableOOMKiller")

    def _apply_cpu(self, cpu: CpuResources) -> None:
        if cpu.shares is not None:
            self._fs.write(self._file("cpu.weight"), str(shares_to_weight(cpu.shares)))
        if cpu.quota is not None or cpu.period is not None:
            path = self._file("cpu.max")
            current = self._fs.read(path).split()  # "max 100000"
            if cpu.quota is None:
                quota = current[0]
            else:
                quota = "max" if cpu.quota == -1 else str(cpu.quota)
            period = current[1] if cpu.period is None else str(cpu.period)
            self._fs.write(path, f"{quota} {period}")
        if cpu.idle is not None:
            if not self._fs.exists(self._file("cpu.idle")):
                raise NotSupported("linux.resources.cpu.idle: this kernel has no cpu.idle")
            self._fs.write(self._file("cpu.idle"), str(cpu.idle))
        if cpu.cpus is not None:
            self._fs.write(self._file("cpuset.cpus"), cpu.cpus)
        if cpu.mems is not None:
            self._fs.write(self._file("cpuset.mems"), cpu.mems)

    def _apply_io_weight(self, weight: int) -> None:
        # BFQ's weight keeps the blkio scale; io.weight (io.cost) has its own.
        if self._fs.exists(self._file("io.bfq.weight")):
            self._fs.write(self._file("io.bfq.weight"), str(weight))
        else:
            self._fs.write(self._file("io.weight"), str(blkio_weight_to_io_weight(weight)))

    def _apply_hugepages(self, limits: tuple[HugepageLimit, ...]) -> None:
        for limit in limits:
            path = self._file(f"hugetlb.{limit.page_size}.max")
            if not self._fs.exists(path):
                raise InvalidArgument(
                    f'linux.resources.hugepageLimits: unsupported page size "{limit.page_size}"'
                )
            self._fs.write(path, str(limit.limit))

    # --- freezer and processes -------------------------------------------------------------

    def _frozen_flag(self) -> str | None:
        try:
            return self._fs.read_keyed(self._file("cgroup.events")).get("frozen")
        except NotFound:
            return None

    def _set_frozen(self, frozen: bool) -> None:
        want = "1" if frozen else "0"
        self._fs.write(self._file("cgroup.freeze"), want)
        if wait_until(lambda: self._frozen_flag() == want, self._timeout):
            return
        if frozen:
            self._fs.write(self._file("cgroup.freeze"), "0")
        state = "frozen" if frozen else "thawed"
        raise FailedPrecondition(f"timed out waiting for {self._path} to be {state}")

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def is_frozen(self) -> bool:
        return self._frozen_flag() == "1"

    def pids(self) -> list[int]:
        return collect_pids(self._fs, self._path)

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        if sig == signal.SIGKILL and self._fs.exists(self._file("cgroup.kill")):
            # One write kills the whole subtree, forks included, without freezing.
            self._fs.write(self._file("cgroup.kill"), "1")
            return
        signal_all(self, self._fs, sig, can_freeze=self._fs.exists(self._file("cgroup.freeze")))

    # --- accounting ------------------------------------------------------------------------

    def oom_kill_count(self) -> int:
        if not self._fs.is_dir(self._path):
            raise NotFound(f"no such cgroup: {self._path}")
        path = self._file("memory.events")
        if not self._fs.exists(path):
            raise FailedPrecondition(
                f'cgroup v2 controller "memory" is not available in {self._path}'
            )
        return int(self._fs.read_keyed(path).get("oom_kill", "0"))

    def stats(self) -> CgroupStats:
        def number(name: str, parse: Callable[[str], int | None] = parse_limit) -> int | None:
            return read_optional(self._fs, self._file(name), parse)

        cpu_usage: int | None = None
        try:
            usec = self._fs.read_keyed(self._file("cpu.stat")).get("usage_usec")
            cpu_usage = None if usec is None else int(usec) * 1000
        except NotFound:
            pass
        return CgroupStats(
            memory_usage=number("memory.current", int),
            memory_max_usage=number("memory.peak", int),
            memory_limit=number("memory.max"),
            cpu_usage_ns=cpu_usage,
            pids_current=number("pids.current", int),
            pids_limit=number("pids.max"),
        )
