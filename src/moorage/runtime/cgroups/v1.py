"""The cgroup v1 manager: one directory per mounted hierarchy, one file per setting.

It owns the v1 quirks: cpuset directories start empty and must inherit cpus and mems
before a process can join; memory and memory+swap limits must be written in the order
that keeps ``memsw >= limit`` at every step; the devices controller takes a deny-all
followed by the allowed rules; the freezer reports FREEZING until every task has stopped.
In hybrid mode a :class:`~moorage.runtime.cgroups.v2.V2Manager` handles the unified
hierarchy's directory alongside.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping

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
    DeviceRule,
    HugepageLimit,
    MemoryResources,
)
from moorage.runtime.cgroups.v2 import V2Manager
from moorage.sys.cgroupfs import CgroupFS

__all__ = ["V1_CONTROLLERS", "V1Manager"]

log = LazyLogger(__name__)

# The v1 hierarchies a container gets a directory in, when they are mounted.
V1_CONTROLLERS = frozenset(
    {
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "blkio",
        "pids",
        "hugetlb",
        "net_cls",
        "net_prio",
        "perf_event",
        "name=systemd",
    }
)

# Where pids() looks: any hierarchy holds every process, these are the likeliest mounted.
_PIDS_FROM = ("pids", "freezer", "memory", "cpu", "cpuacct", "devices", "blkio", "cpuset")


class V1Manager(CgroupManager):
    """A container's cgroup in the v1 hierarchies ``dirs`` (controller -> directory)."""

    def __init__(
        self,
        fs: CgroupFS,
        dirs: Mapping[str, HierarchyDir],
        *,
        unified: V2Manager | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._fs = fs
        self._dirs = dict(dirs)
        self._unified = unified
        self._timeout = timeout

    # --- helpers ---------------------------------------------------------------------------

    def _unique(self) -> list[HierarchyDir]:
        # Comounted controllers (cpu,cpuacct) share one directory.
        seen: dict[str, HierarchyDir] = {}
        for d in self._dirs.values():
            seen.setdefault(d.path, d)
        return list(seen.values())

    def _dir(self, controller: str) -> str:
        d = self._dirs.get(controller)
        if d is None:
            raise FailedPrecondition(f'cgroup v1 controller "{controller}" is not mounted')
        return d.path

    # --- life cycle ------------------------------------------------------------------------

    def create(self) -> None:
        for d in self._unique():
            for directory in d.lineage()[1:]:
                self._fs.mkdir(directory)
        cpuset = self._dirs.get("cpuset")
        if cpuset is not None:
            self._inherit_cpuset(cpuset)
        if self._unified is not None:
            self._unified.create()

    def _inherit_cpuset(self, d: HierarchyDir) -> None:
        # A new cpuset cgroup has empty cpus and mems (unless clone_children is set), and
        # the kernel refuses to put a process in it; fill each empty level from its parent.
        lineage = d.lineage()
        for parent, child in zip(lineage, lineage[1:], strict=False):
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not self._fs.read(f"{child}/{name}"):
                    self._fs.write(f"{child}/{name}", self._fs.read(f"{parent}/{name}"))

    def join(self, pid: int) -> None:
        for d in self._unique():
            self._fs.write(f"{d.path}/cgroup.procs", str(pid))
        if self._unified is not None:
            self._unified.join(pid)

    def exists(self) -> bool:
        dirs = [d.path for d in self._unique()]
        if self._unified is not None:
            dirs.extend(self._unified.paths().values())
        return any(self._fs.is_dir(p) for p in dirs)

    def paths(self) -> dict[str, str]:
        out = {name: d.path for name, d in self._dirs.items()}
        if self._unified is not None:
            out.update(self._unified.paths())
        return out

    def destroy(self) -> None:
        for d in self._unique():
            remove_tree(self._fs, d.path, self._timeout)
        if self._unified is not None:
            self._unified.destroy()

    # --- limits ----------------------------------------------------------------------------

    def apply(self, resources: CgroupResources) -> None:
        if resources.memory is not None and not resources.memory.is_empty():
            self._apply_memory(resources.memory)
        if resources.cpu is not None:
            self._apply_cpu(resources.cpu)
        if resources.pids is not None:
            limit = resources.pids.limit
            self._fs.write(f"{self._dir('pids')}/pids.max", str(limit) if limit > 0 else "max")
        if resources.devices:
            self._apply_devices(resources.devices)
        if resources.block_io is not None and resources.block_io.weight is not None:
            self._apply_blkio_weight(resources.block_io.weight)
        if resources.hugepage_limits:
            self._apply_hugepages(resources.hugepage_limits)
        if resources.unified:
            if self._unified is None:
                raise NotSupported("linux.resources.unified needs cgroup v2, which is not mounted")
            self._unified.apply(CgroupResources(unified=resources.unified))

    def _apply_memory(self, m: MemoryResources) -> None:
        d = self._dir("memory")
        limit_file = f"{d}/memory.limit_in_bytes"
        memsw_file = f"{d}/memory.memsw.limit_in_bytes"
        swap = m.swap
        if swap is not None and not self._fs.exists(memsw_file):
            # Swap accounting is off (or the kernel has no swap support): there is no
            # memory+swap limit to set, and the memory limit still holds.
            log.debug("swap accounting is off: ignoring linux.resources.memory.swap")
            swap = None
        if m.limit is not None and swap is not None:
            current = parse_limit(self._fs.read(limit_file))  # None: unlimited now
            raising = current is not None and (m.limit == -1 or m.limit > current)
            # The kernel keeps memsw >= limit at every step: raise the memsw ceiling before
            # the limit, and lower the limit before the memsw ceiling.
            if raising:
                self._fs.write(memsw_file, str(swap))
                self._fs.write(limit_file, str(m.limit))
            else:
                self._fs.write(limit_file, str(m.limit))
                self._fs.write(memsw_file, str(swap))
        elif m.limit is not None:
            self._fs.write(limit_file, str(m.limit))
        elif swap is not None:
            self._fs.write(memsw_file, str(swap))
        if m.reservation is not None:
            self._fs.write(f"{d}/memory.soft_limit_in_bytes", str(m.reservation))
        if m.swappiness is not None:
            self._fs.write(f"{d}/memory.swappiness", str(m.swappiness))
        if m.disable_oom_killer is not None:
            self._fs.write(f"{d}/memory.oom_control", "1" if m.disable_oom_killer else "0")

    def _apply_cpu(self, cpu: CpuResources) -> None:
        if cpu.wants_cpu():
            d = self._dir("cpu")
            if cpu.shares is not None:
                self._fs.write(f"{d}/cpu.shares", str(cpu.shares))
            # The period first: a quota is checked against the period in force.
            if cpu.period is not None:
                self._fs.write(f"{d}/cpu.cfs_period_us", str(cpu.period))
            if cpu.quota is not None:
                self._fs.write(f"{d}/cpu.cfs_quota_us", str(cpu.quota))
            if cpu.idle is not None:
                if not self._fs.exists(f"{d}/cpu.idle"):
                    raise NotSupported("linux.resources.cpu.idle: this kernel has no cpu.idle")
                self._fs.write(f"{d}/cpu.idle", str(cpu.idle))
        if cpu.wants_cpuset():
            d = self._dir("cpuset")
            if cpu.cpus is not None:
                self._fs.write(f"{d}/cpuset.cpus", cpu.cpus)
            if cpu.mems is not None:
                self._fs.write(f"{d}/cpuset.mems", cpu.mems)

    def _apply_devices(self, rules: tuple[DeviceRule, ...]) -> None:
        # Default deny, then each rule in order: allow rules open, deny rules close again,
        # and an allow-all rule switches back to default allow, as the spec's list reads.
        d = self._dir("devices")
        self._fs.write(f"{d}/devices.deny", "a")
        for i, rule in enumerate(rules):
            if i == 0 and not rule.allow and rule.v1_line() == "a":
                continue  # the usual leading deny-all was just written
            target = "devices.allow" if rule.allow else "devices.deny"
            self._fs.write(f"{d}/{target}", rule.v1_line())

    def _apply_blkio_weight(self, weight: int) -> None:
        d = self._dir("blkio")
        # blkio.weight belongs to CFQ (gone from current kernels); BFQ has its own file
        # on the same 10..1000 scale.
        for name in ("blkio.weight", "blkio.bfq.weight"):
            if self._fs.exists(f"{d}/{name}"):
                self._fs.write(f"{d}/{name}", str(weight))
                return
        raise FailedPrecondition(
            f"linux.resources.blockIO.weight: no blkio.weight or blkio.bfq.weight in {d}"
        )

    def _apply_hugepages(self, limits: tuple[HugepageLimit, ...]) -> None:
        if "hugetlb" not in self._dirs and self._unified is not None:
            # Hybrid machines may leave hugetlb to the unified hierarchy.
            self._unified.apply(CgroupResources(hugepage_limits=limits))
            return
        d = self._dir("hugetlb")
        for limit in limits:
            path = f"{d}/hugetlb.{limit.page_size}.limit_in_bytes"
            if not self._fs.exists(path):
                raise InvalidArgument(
                    f'linux.resources.hugepageLimits: unsupported page size "{limit.page_size}"'
                )
            self._fs.write(path, str(limit.limit))

    # --- freezer and processes -------------------------------------------------------------

    def _freezer_state(self) -> str:
        return self._fs.read(f"{self._dir('freezer')}/freezer.state")

    def _set_freezer(self, state: str) -> None:
        path = f"{self._dir('freezer')}/freezer.state"
        self._fs.write(path, state)
        polls = 0

        def reached() -> bool:
            nonlocal polls
            polls += 1
            if self._fs.read(path) == state:
                return True
            # A task that was busy in the kernel can miss one freeze request; asking
            # again now and then lets FREEZING finish instead of waiting forever.
            if state == "FROZEN" and polls % 10 == 0:
                self._fs.write(path, state)
            return False

        if wait_until(reached, self._timeout):
            return
        if state == "FROZEN":
            self._fs.write(path, "THAWED")
        raise FailedPrecondition(f"timed out waiting for {path} to become {state}")

    def freeze(self) -> None:
        self._set_freezer("FROZEN")

    def thaw(self) -> None:
        self._set_freezer("THAWED")

    def is_frozen(self) -> bool:
        if "freezer" not in self._dirs:
            return False
        try:
            return self._freezer_state() == "FROZEN"
        except NotFound:
            return False

    def _pids_dir(self) -> str:
        for name in _PIDS_FROM:
            if name in self._dirs:
                return self._dirs[name].path
        if self._unified is not None:
            return self._unified.paths()[""]
        return self._unique()[0].path

    def pids(self) -> list[int]:
        return collect_pids(self._fs, self._pids_dir())

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        signal_all(self, self._fs, sig, can_freeze="freezer" in self._dirs)

    # --- accounting ------------------------------------------------------------------------

    def oom_kill_count(self) -> int:
        path = f"{self._dir('memory')}/memory.oom_control"
        value = self._fs.read_keyed(path).get("oom_kill")
        if value is None:
            raise NotSupported(f"this kernel does not count oom kills in {path}")
        return int(value)

    def stats(self) -> CgroupStats:
        def number(
            controller: str, name: str, parse: Callable[[str], int | None] = parse_limit
        ) -> int | None:
            d = self._dirs.get(controller)
            if d is None:
                return None
            return read_optional(self._fs, f"{d.path}/{name}", parse)

        return CgroupStats(
            memory_usage=number("memory", "memory.usage_in_bytes", int),
            memory_max_usage=number("memory", "memory.max_usage_in_bytes", int),
            memory_limit=number("memory", "memory.limit_in_bytes"),
            cpu_usage_ns=number("cpuacct", "cpuacct.usage", int),
            pids_current=number("pids", "pids.current", int),
            pids_limit=number("pids", "pids.max"),
        )
