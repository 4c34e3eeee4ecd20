"""The cgroup manager interface, the rules that turn a config's ``linux.cgroupsPath`` into
cgroup directories, and :func:`new_manager`, which picks the v1 or v2 implementation.

Path rules (``cgroups_path`` as in config.json ``linux.cgroupsPath``):

- None or empty: ``/moorage/<container id>``.
- Starting with ``/``: relative to the root of each hierarchy as this process's mount
  shows it: ``/a/b`` is ``/sys/fs/cgroup/memory/a/b`` on v1 and ``/sys/fs/cgroup/a/b``
  on v2.
- Otherwise relative to the calling process's own cgroup in each hierarchy, as
  /proc/self/cgroup lists it: ``a/b`` for a process in ``memory:/user/1`` is
  ``/sys/fs/cgroup/memory/user/1/a/b``. On v1 each hierarchy may give a different base.
- The systemd form ``slice:prefix:name`` raises NotSupported; there is no systemd driver.
- ``..`` anywhere raises InvalidArgument, and so does a path that names the hierarchy
  root or the caller's own cgroup (``/``, ``.``): a container never owns those.

Mode: ``v2`` gives a :class:`~moorage.runtime.cgroups.v2.V2Manager`; ``v1`` and
``hybrid`` give a :class:`~moorage.runtime.cgroups.v1.V1Manager`, which in hybrid mode
also keeps a directory in the unified hierarchy (``paths()[""]``) for the processes, the
``unified`` settings and any controller only v2 has (hugetlb on some machines).
"""

import abc
import signal
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

from moorage.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotSupported,
)
from moorage.runtime.cgroups._log import LazyLogger
from moorage.runtime.cgroups.resources import CgroupResources
from moorage.sys.cgroupfs import CgroupFS, CgroupMode, CgroupMount

__all__ = [
    "DEFAULT_TIMEOUT",
    "CgroupManager",
    "CgroupStats",
    "HierarchyDir",
    "new_manager",
    "normalize_cgroups_path",
]

log = LazyLogger(__name__)

# How long freeze, thaw and destroy wait for the kernel before giving up, in seconds.
DEFAULT_TIMEOUT = 5.0

# Values at or above this are the kernel's "no limit" (v1 prints PAGE_COUNTER_MAX pages).
UNLIMITED_THRESHOLD = 1 << 62


class CgroupStats(NamedTuple):
    """A snapshot of a cgroup's usage; None where the kernel does not offer the number.

    ``memory_limit`` and ``pids_limit`` are None also when there is no limit.
    """

    memory_usage: int | None = None  # bytes
    memory_max_usage: int | None = None  # bytes, the high-water mark
    memory_limit: int | None = None  # bytes
    cpu_usage_ns: int | None = None
    pids_current: int | None = None
    pids_limit: int | None = None


class CgroupManager(abc.ABC):
    """The cgroup of one container, across every hierarchy it lives in.

    A manager is cheap and holds no kernel state: two managers for the same path see the
    same cgroup, so a runtime command can build one from the saved state and act.

    Life cycle::

        m = new_manager("/moorage/web", "web")
        m.create()                  # mkdir in each hierarchy (cpuset inherits its cpus/mems)
        m.apply(CgroupResources.from_oci({"memory": {"limit": 268435456},
                                          "pids": {"limit": 100}}))
        m.join(pid)                 # the process and its future children are limited
        m.paths()["memory"]         # "/sys/fs/cgroup/memory/moorage/web" on v1
        m.freeze(); m.is_frozen()   # True: every process is stopped
        m.thaw()
        m.pids()                    # [pid, ...], including child cgroups
        m.kill_all(signal.SIGKILL)
        m.destroy()                 # waits, bounded, for the processes to leave
        m.exists()                  # False

    ``apply`` may come before or after ``join`` and may be called again to update; it
    writes only what the resources set. Errors name the file or setting at fault:
    a refused value is InvalidArgument, a controller the machine lacks is
    FailedPrecondition, a cgroup that does not exist is NotFound.
    """

    @abc.abstractmethod
    def create(self) -> None:
        """Create the cgroup (and missing parents) in every hierarchy; a no-op if it exists."""

    @abc.abstractmethod
    def join(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the cgroup in every hierarchy."""

    @abc.abstractmethod
    def apply(self, resources: CgroupResources) -> None:
        """Write the limits ``resources`` sets; settings it leaves None are not touched."""

    @abc.abstractmethod
    def freeze(self) -> None:
        """Stop every process in the cgroup and return once the kernel reports it frozen."""

    @abc.abstractmethod
    def thaw(self) -> None:
        """Resume the processes and return once the kernel reports them thawed."""

    @abc.abstractmethod
    def is_frozen(self) -> bool:
        """Whether the cgroup is frozen; False when there is no freezer."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """The processes in the cgroup and its descendants, sorted; NotFound if it is gone."""

    @abc.abstractmethod
    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to every process, freezing first so none escapes by forking.

        A cgroup frozen before the call stays frozen, unless ``sig`` is SIGKILL, which
        needs the processes thawed to take effect.
        """

    @abc.abstractmethod
    def destroy(self) -> None:
        """Remove the cgroup and its descendants everywhere; a no-op if already gone.

        Processes that are still exiting are waited for by re-reading cgroup.procs, for at
        most the manager's timeout; live processes make it raise Conflict (kill first).
        """

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether the cgroup directory exists in any of its hierarchies."""

    @abc.abstractmethod
    def paths(self) -> dict[str, str]:
        """Controller -> cgroup directory; ``""`` is the v2 (unified) directory."""

    @abc.abstractmethod
    def oom_kill_count(self) -> int:
        """How many processes the OOM killer has killed in the cgroup."""

    @abc.abstractmethod
    def stats(self) -> CgroupStats:
        """Current usage: memory, cpu time, process count; whatever the kernel offers."""


class HierarchyDir(NamedTuple):
    """A cgroup in one mounted hierarchy: ``mountpoint`` + ``cgroup`` is its directory."""

    mountpoint: str  # host path of the hierarchy's mount
    cgroup: str  # "/a/b": the cgroup's path below the mountpoint

    @property
    def path(self) -> str:
        return self.mountpoint.rstrip("/") + self.cgroup

    def lineage(self) -> list[str]:
        """Directories from the mountpoint down to the cgroup itself, both included."""
        dirs = [self.mountpoint.rstrip("/") or "/"]
        current = self.mountpoint.rstrip("/")
        for part in self.cgroup.strip("/").split("/"):
            current = f"{current}/{part}"
            dirs.append(current)
        return dirs


def normalize_cgroups_path(cgroups_path: str | None, container_id: str) -> str:
    """Apply the path rules of the module docstring; the result is ``/a/b`` or ``a/b``."""
    if not cgroups_path:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise InvalidArgument(f'container id cannot name a cgroup: "{container_id}"')
        return f"/moorage/{container_id}"
    absolute = cgroups_path.startswith("/")
    if not absolute and cgroups_path.count(":") == 2:
        raise NotSupported(f"systemd cgroup driver is not supported: {cgroups_path}")
    if "\0" in cgroups_path:
        raise InvalidArgument(f"cgroup path contains a nul byte: {cgroups_path!r}")
    parts = cgroups_path.split("/")
    if ".." in parts:
        raise InvalidArgument(f'cgroup path must not contain "..": {cgroups_path}')
    clean = [p for p in parts if p not in ("", ".")]
    if not clean:
        raise InvalidArgument(f"cgroup path names no cgroup of its own: {cgroups_path}")
    return ("/" if absolute else "") + "/".join(clean)


def resolve_dir(mount: CgroupMount, own: str | None, path: str) -> HierarchyDir:
    """Where ``path`` (normalized) lives in ``mount``, given the caller's own cgroup there."""
    if path.startswith("/"):
        return HierarchyDir(mount.mountpoint, path)
    base = own or "/"
    # /proc/self/cgroup paths start at the hierarchy root; a mount of a subtree (as in a
    # container) shows mount.root at its mountpoint, so that part is already there.
    if mount.root != "/" and (base == mount.root or base.startswith(mount.root + "/")):
        base = base[len(mount.root) :] or "/"
    return HierarchyDir(mount.mountpoint, base.rstrip("/") + "/" + path)


def _own_cgroups(fs: CgroupFS) -> dict[str, str]:
    own: dict[str, str] = {}
    for entry in fs.proc_cgroups("self"):
        if entry.hierarchy_id == 0 and not entry.controllers:
            own[""] = entry.path
        for controller in entry.controllers:
            own[controller] = entry.path
    return own


def new_manager(
    cgroups_path: str | None,
    container_id: str,
    *,
    mode: CgroupMode | None = None,
    root: str | CgroupFS = "/",
    timeout: float = DEFAULT_TIMEOUT,
) -> CgroupManager:
    """The manager for a container's cgroup; ``mode`` None detects it from the mounts.

    ``root`` is a filesystem prefix (tests pass a fake tree) or a ready
    :class:`~moorage.sys.cgroupfs.CgroupFS`, such as a recording one.
    """
    # v1 and v2 subclass CgroupManager from this module, so they are imported late.
    from moorage.runtime.cgroups.v1 import V1_CONTROLLERS, V1Manager
    from moorage.runtime.cgroups.v2 import V2Manager

    if mode not in (None, "v1", "v2", "hybrid"):
        raise InvalidArgument(f'cgroup mode must be "v1", "v2" or "hybrid", got "{mode}"')
    fs = root if isinstance(root, CgroupFS) else CgroupFS(root)
    path = normalize_cgroups_path(cgroups_path, container_id)
    mounts = fs.mounts()
    chosen = mode or mounts.mode
    own = {} if path.startswith("/") else _own_cgroups(fs)
    unified: V2Manager | None = None
    if chosen in ("v2", "hybrid"):
        if mounts.v2 is None:
            raise FailedPrecondition("cgroup v2 is not mounted")
        where = resolve_dir(mounts.v2, own.get(""), path)
        if chosen == "v2":
            return V2Manager(fs, where, timeout=timeout)
        # In hybrid mode v1 owns the controllers; the unified part enables only what a
        # setting needs, so creating a container changes nothing else in that tree.
        unified = V2Manager(fs, where, controllers=(), timeout=timeout)
    dirs = {
        name: resolve_dir(m, own.get(name), path)
        for name, m in mounts.v1.items()
        if name in V1_CONTROLLERS
    }
    if not any(not name.startswith("name=") for name in dirs):
        raise FailedPrecondition("no cgroup v1 controller is mounted")
    return V1Manager(fs, dirs, unified=unified, timeout=timeout)


# --- helpers shared by the implementations ----------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Re-check ``condition`` with a growing pause (1 ms to 50 ms) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        if condition():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.05)


def _subtree(fs: CgroupFS, top: str) -> Iterator[str]:
    """``top`` and its descendant cgroups, children before parents."""
    try:
        children = fs.subdirs(top)
    except NotFound:
        return
    for child in children:
        yield from _subtree(fs, child)
    yield top


def _procs(fs: CgroupFS, directory: str) -> list[int]:
    try:
        return fs.read_pids(f"{directory}/cgroup.procs")
    except NotFound:
        return []


def collect_pids(fs: CgroupFS, top: str) -> list[int]:
    """Every process in ``top`` and its descendants, sorted."""
    if not fs.is_dir(top):
        raise NotFound(f"no such cgroup: {top}")
    found: set[int] = set()
    for directory in _subtree(fs, top):
        found.update(_procs(fs, directory))
    return sorted(found)


def remove_tree(fs: CgroupFS, top: str, timeout: float) -> None:
    """Remove ``top`` and its descendants, waiting for exiting processes to leave."""
    busy: str | None = None

    def removed() -> bool:
        nonlocal busy
        # Processes that were just killed leave cgroup.procs when they finish exiting;
        # rmdir is refused until then, so re-read it rather than hammer rmdir.
        if busy is not None and _procs(fs, busy):
            return False
        busy = next((d for d in _subtree(fs, top) if not fs.try_rmdir(d)), None)
        return busy is None

    if wait_until(removed, timeout):
        return
    assert busy is not None
    left = _procs(fs, busy)
    if left:
        listed = ", ".join(str(p) for p in left)
        raise Conflict(f"cannot remove cgroup {busy}: processes still in it: {listed}")
    raise FailedPrecondition(f"cannot remove cgroup {busy}: device or resource busy")


def signal_all(manager: CgroupManager, fs: CgroupFS, sig: int, *, can_freeze: bool) -> None:
    """Freeze (when possible), signal every process, thaw: the body of kill_all."""
    was_frozen = can_freeze and manager.is_frozen()
    froze = False
    if can_freeze and not was_frozen:
        try:
            manager.freeze()
            froze = True
        except FailedPrecondition as exc:
            # Signalling unfrozen races with forks, but beats not signalling at all.
            log.warning("signalling without freezing: %s", exc)
    try:
        for pid in manager.pids():
            fs.signal(pid, sig)
    finally:
        if froze or (was_frozen and sig == signal.SIGKILL):
            manager.thaw()


def parse_limit(text: str) -> int | None:
    """A limit file's value: None for "max" or the kernel's huge no-limit numbers."""
    if text == "max":
        return None
    value = int(text)
    return None if value >= UNLIMITED_THRESHOLD or value < 0 else value


def read_optional(fs: CgroupFS, path: str, parse: Callable[[str], int | None]) -> int | None:
    """A number from ``path``, or None when the file is absent or unreadable as one."""
    try:
        return parse(fs.read(path))
    except (NotFound, ValueError):
        return None
