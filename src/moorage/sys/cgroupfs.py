"""The cgroup filesystems: where they are mounted, which mode the machine runs in, which
cgroups a process belongs to, and reading and writing cgroup files.

This module knows the kernel's files and nothing of containers; the managers in
``moorage.runtime.cgroups`` decide what to write. Every path goes through a
:class:`CgroupFS`, whose ``root`` prefix (``/`` on a real machine) lets unit tests point it at
a fake tree in a temporary directory: ``<root>/proc/self/mountinfo``,
``<root>/proc/self/cgroup`` and ``<root>/sys/fs/cgroup/...``. :class:`RecordingCgroupFS`
additionally records every change it makes and never signals a real process.

Modes, as :func:`cgroup_mode` names them:

- ``v1``: only v1 hierarchies with controllers are mounted (one per controller or per
  comounted group such as ``cpu,cpuacct``; ``name=systemd`` has no controller).
- ``v2``: the unified hierarchy is mounted and no v1 hierarchy has a controller.
- ``hybrid``: both; typically v1 controllers under ``/sys/fs/cgroup/<controller>`` and
  cgroup2 at ``/sys/fs/cgroup/unified`` with whatever controllers v1 did not take.

OS errors become Moorage errors that name the file: a missing file is ``NotFound``, a
rejected value (EINVAL, EBUSY, ERANGE) is ``InvalidArgument``
(``/sys/fs/cgroup/memory/x/memory.limit_in_bytes: invalid argument writing "1"``),
EACCES/EPERM is ``PermissionDenied`` and anything else is ``FailedPrecondition``.
"""

import errno
import os
import signal
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal, NamedTuple

from moorage.errors import (
    FailedPrecondition,
    InvalidArgument,
    MoorageError,
    NotFound,
    PermissionDenied,
)

__all__ = [
    "CgroupFS",
    "CgroupMode",
    "CgroupMount",
    "CgroupMounts",
    "ProcCgroup",
    "RecordingCgroupFS",
    "cgroup_mode",
    "find_mounts",
    "parse_mountinfo",
    "parse_proc_cgroup",
    "prime_attach",
    "read_proc_cgroup",
]

CgroupMode = Literal["v1", "v2", "hybrid"]

# Mount options of a v1 cgroup mount that are not controller names.
_V1_NON_CONTROLLER_OPTIONS = frozenset(
    {
        "rw",
        "ro",
        "all",
        "none",
        "noprefix",
        "clone_children",
        "xattr",
        "cpuset_v2_mode",
        "favordynmods",
        "nofavordynmods",
    }
)

# Write errors that mean "the kernel refused this value" rather than "this file or machine
# is broken", so the caller's input is what to fix.
_REJECTED_VALUE = frozenset({errno.EINVAL, errno.EBUSY, errno.ERANGE, errno.EOVERFLOW})


class CgroupMount(NamedTuple):
    """One mounted cgroup hierarchy."""

    mountpoint: str  # host path, with the CgroupFS root prefix applied
    root: str  # the cgroup shown at the mountpoint (mountinfo field 4), "/" normally
    version: Literal[1, 2]
    controllers: tuple[str, ...] = ()  # v1 only: ("cpu", "cpuacct"), ("name=systemd")


class CgroupMounts(NamedTuple):
    """Every cgroup hierarchy a process sees: v1 by controller, and the v2 mount."""

    v1: Mapping[str, CgroupMount] = MappingProxyType({})  # controller -> mount
    v2: CgroupMount | None = None

    @property
    def mode(self) -> CgroupMode:
        has_v1 = any(not name.startswith("name=") for name in self.v1)
        if has_v1 and self.v2 is not None:
            return "hybrid"
        if has_v1:
            return "v1"
        if self.v2 is not None:
            return "v2"
        raise FailedPrecondition("no cgroup hierarchy is mounted")


class ProcCgroup(NamedTuple):
    """One line of /proc/<pid>/cgroup: ``hierarchy-id:controllers:path``."""

    hierarchy_id: int  # 0 for the v2 hierarchy
    controllers: tuple[str, ...]  # empty for v2
    path: str  # relative to the hierarchy's root (or the cgroup namespace's root)


def _unescape(text: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo octal escapes.
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        chunk = text[i + 1 : i + 4]
        if text[i] == "\\" and len(chunk) == 3 and all(c in "01234567" for c in chunk):
            out.append(chr(int(chunk, 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _host_join(root: str, path: str) -> str:
    if root == "/":
        return path
    return os.path.join(root, path.lstrip("/"))


def parse_mountinfo(text: str, root: str = "/") -> CgroupMounts:
    """The cgroup mounts in a /proc/<pid>/mountinfo text; mountpoints get ``root`` prefixed.

    When a hierarchy is mounted more than once the first mount of its whole tree (mount
    root ``/``) wins, else the first mount seen.
    """
    v1: dict[str, CgroupMount] = {}
    v2: CgroupMount | None = None
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 5 or len(fields) < sep + 3:
            continue
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mount_root = _unescape(fields[3])
        mountpoint = _host_join(root, _unescape(fields[4]))
        if fstype == "cgroup2":
            mount = CgroupMount(mountpoint=mountpoint, root=mount_root, version=2)
            if v2 is None or (v2.root != "/" and mount_root == "/"):
                v2 = mount
            continue
        super_options = fields[sep + 3].split(",") if len(fields) > sep + 3 else []
        controllers = tuple(
            opt
            for opt in super_options
            if opt.startswith("name=") or ("=" not in opt and opt not in _V1_NON_CONTROLLER_OPTIONS)
        )
        if not controllers:
            continue
        mount = CgroupMount(
            mountpoint=mountpoint, root=mount_root, version=1, controllers=controllers
        )
        for name in controllers:
            seen = v1.get(name)
            if seen is None or (seen.root != "/" and mount_root == "/"):
                v1[name] = mount
    return CgroupMounts(v1=v1, v2=v2)


def parse_proc_cgroup(text: str) -> list[ProcCgroup]:
    """The lines of a /proc/<pid>/cgroup text."""
    entries: list[ProcCgroup] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit():
            raise InvalidArgument(f"malformed /proc/<pid>/cgroup line: {line!r}")
        controllers = tuple(c for c in parts[1].split(",") if c)
        entries.append(ProcCgroup(int(parts[0]), controllers, parts[2] or "/"))
    return entries


def _write_error(exc: OSError, path: str, value: str) -> MoorageError:
    reason = os.strerror(exc.errno or 0).lower()
    if exc.errno == errno.ENOENT:
        return NotFound(f"no such cgroup file: {path}")
    if exc.errno in _REJECTED_VALUE:
        return InvalidArgument(f'{path}: {reason} writing "{value}"')
    if exc.errno == errno.ESRCH:
        return NotFound(f'{path}: no such process writing "{value}"')
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f'{path}: permission denied writing "{value}"')
    return FailedPrecondition(f'{path}: {reason} writing "{value}"')


def _read_error(exc: OSError, path: str) -> MoorageError:
    if exc.errno == errno.ENOENT:
        return NotFound(f"no such cgroup file: {path}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f"{path}: permission denied reading")
    return FailedPrecondition(f"{path}: {os.strerror(exc.errno or 0).lower()} reading")


class CgroupFS:
    """Cgroup filesystems seen through a root prefix (``/`` on a real machine).

    Paths given to the file methods are host paths as :meth:`mounts` returns them (the
    prefix is already in them); :meth:`host` applies the prefix to a kernel path.

    Example, with a fake tree::

        fs = CgroupFS(tmp_path)   # reads tmp_path/proc/self/mountinfo
        memory = fs.mounts().v1["memory"].mountpoint  # tmp_path/sys/fs/cgroup/memory
        fs.write(f"{memory}/x/memory.limit_in_bytes", "1048576")
    """

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = os.fspath(root)

    def host(self, path: str) -> str:
        """The host path of a kernel path such as ``/proc/self/cgroup``."""
        return _host_join(self.root, path)

    # --- discovery -------------------------------------------------------------------

    def mounts(self) -> CgroupMounts:
        """The cgroup hierarchies mounted in this process's mount namespace."""
        return parse_mountinfo(self.read(self.host("/proc/self/mountinfo")), self.root)

    def mode(self) -> CgroupMode:
        return self.mounts().mode

    def proc_cgroups(self, pid: int | Literal["self"] = "self") -> list[ProcCgroup]:
        """The cgroups of a process, as /proc/<pid>/cgroup lists them."""
        path = self.host(f"/proc/{pid}/cgroup")
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError as exc:
            raise NotFound(f"no such process: {pid}") from exc
        except OSError as exc:
            raise _read_error(exc, path) from exc
        return parse_proc_cgroup(text)

    # --- files -----------------------------------------------------------------------

    def read(self, path: str) -> str:
        """A file's whole text, stripped of surrounding whitespace."""
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError as exc:
            raise _read_error(exc, path) from exc

    def read_int(self, path: str) -> int:
        """A file holding one integer."""
        text = self.read(path)
        try:
            return int(text)
        except ValueError as exc:
            raise FailedPrecondition(f"{path}: expected an integer, got {text!r}") from exc

    def read_keyed(self, path: str) -> dict[str, str]:
        """A flat keyed file (``key value`` per line), such as memory.events or cpu.stat."""
        values: dict[str, str] = {}
        for line in self.read(path).splitlines():
            key, _, value = line.strip().partition(" ")
            if key:
                values[key] = value.strip()
        return values

    def read_pids(self, path: str) -> list[int]:
        """A cgroup.procs or tasks file."""
        return [int(word) for word in self.read(path).split()]

    def write(self, path: str, value: str) -> None:
        """Write ``value`` with a single write(2), as the kernel parses one write per command.

        The file is never created: on cgroupfs a missing file means a missing feature, and a
        fake tree must say so too.
        """
        data = value.encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
            try:
                written = os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _write_error(exc, path, value) from exc
        if written != len(data):
            raise FailedPrecondition(f'{path}: short write of "{value}"')

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def subdirs(self, path: str) -> list[str]:
        """The child cgroups of a cgroup directory, sorted by name."""
        try:
            with os.scandir(path) as it:
                return sorted(e.path for e in it if e.is_dir(follow_symlinks=False))
        except OSError as exc:
            raise _read_error(exc, path) from exc

    def mkdir(self, path: str) -> bool:
        """Create one cgroup directory; False when it exists already."""
        try:
            os.mkdir(path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise NotFound(f"no such cgroup directory: {os.path.dirname(path)}") from exc
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise PermissionDenied(f"{path}: permission denied creating") from exc
            reason = os.strerror(exc.errno or 0).lower()
            raise FailedPrecondition(f"{path}: {reason} creating") from exc
        return True

    def try_rmdir(self, path: str) -> bool:
        """Remove one empty cgroup directory.

        True when it is gone (or never existed); False when the kernel says it is busy,
        which means processes or child cgroups are still in it.
        """
        try:
            os.rmdir(path)
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                return False
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise PermissionDenied(f"{path}: permission denied removing") from exc
            reason = os.strerror(exc.errno or 0).lower()
            raise FailedPrecondition(f"{path}: {reason} removing") from exc
        return True

    # --- processes -------------------------------------------------------------------

    def signal(self, pid: int, sig: int) -> bool:
        """Send ``sig`` to ``pid``; False when the process is already gone."""
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        except PermissionError as exc:
            raise PermissionDenied(f"permission denied signalling process {pid}") from exc
        return True


class RecordingCgroupFS(CgroupFS):
    """A :class:`CgroupFS` that records every change and never signals a process.

    For tests against a fake tree: writes, mkdirs and rmdirs still happen on the tree (so
    reads see them) and are appended to :attr:`calls` in order; :meth:`signal` only records
    and reports the process as alive. Hooks emulate the kernel:

    - :attr:`on_mkdir` hooks get each new directory and may fill it with the files a
      kernel would show there;
    - :attr:`on_write` hooks get ``(path, value)`` before the write; one may raise to refuse
      it (nothing is stored or recorded), or return the text the file should show
      afterwards, as the kernel normalises (``+memory`` written to cgroup.subtree_control
      reads back as ``memory``); None stores the value as written.
    - :meth:`try_rmdir` refuses while the directory has child directories or a non-empty
      cgroup.procs, as the kernel does.
    """

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        super().__init__(root)
        self.calls: list[tuple[str, ...]] = []
        self.on_write: list[Callable[[str, str], str | None]] = []
        self.on_mkdir: list[Callable[[str], None]] = []

    def write(self, path: str, value: str) -> None:
        shown = value
        for hook in self.on_write:
            replacement = hook(path, value)
            if replacement is not None:
                shown = replacement
        super().write(path, shown)
        self.calls.append(("write", path, value))

    def writes(self) -> list[tuple[str, str]]:
        """(path, value) of every successful write, in order."""
        return [(c[1], c[2]) for c in self.calls if c[0] == "write"]

    def written(self, path: str) -> list[str]:
        """The values written to one file, in order."""
        return [value for p, value in self.writes() if p == path]

    def mkdir(self, path: str) -> bool:
        created = super().mkdir(path)
        if created:
            self.calls.append(("mkdir", path))
            for hook in self.on_mkdir:
                hook(path)
        return created

    def try_rmdir(self, path: str) -> bool:
        if not os.path.isdir(path):
            return True
        # A fake tree's directories hold ordinary files, which go with the directory.
        procs = os.path.join(path, "cgroup.procs")
        if self.subdirs(path) or (os.path.exists(procs) and self.read(procs)):
            self.calls.append(("rmdir-busy", path))
            return False
        for entry in os.scandir(path):
            os.unlink(entry.path)
        super().try_rmdir(path)
        self.calls.append(("rmdir", path))
        return True

    def signal(self, pid: int, sig: int) -> bool:
        self.calls.append(("signal", str(pid), signal.Signals(sig).name))
        return True


def find_mounts(root: str | os.PathLike[str] = "/") -> CgroupMounts:
    """The cgroup hierarchies this process sees."""
    return CgroupFS(root).mounts()


def cgroup_mode(root: str | os.PathLike[str] = "/") -> CgroupMode:
    """``v1``, ``v2`` or ``hybrid``: see the module docstring."""
    return CgroupFS(root).mode()


def read_proc_cgroup(pid: int | Literal["self"] = "self", root: str = "/") -> list[ProcCgroup]:
    """The cgroups of a process, from /proc/<pid>/cgroup."""
    return CgroupFS(root).proc_cgroups(pid)


def prime_attach(root: str | os.PathLike[str] = "/") -> bool:
    """Move this process into the cgroup it is already in: a move that changes nothing
    but takes the kernel's attach path, so that real moves soon after are fast.

    Why: a process move takes ``cgroup_threadgroup_rwsem`` for writing, and while that
    lock is in its reader-biased mode, switching it costs the writer an RCU grace
    period (about 10 ms on our VMs); the lock stays switched for about a grace period
    after the last writer. A container start calls this in a thread as it begins, so
    the grace period passes while it mounts the root filesystem and forks its monitor,
    and the runtime's moves of the container, milliseconds later, find the lock
    switched. A process moving itself by writing ``0`` to a v1 ``tasks`` file skips
    the lock altogether, but the v2 hierarchy has no such path.

    False when there is no hierarchy to write to or the write fails; never raises.
    """
    fs = CgroupFS(root)
    try:
        mounts = fs.mounts()
        mount = mounts.v2 or next(iter(mounts.v1.values()), None)
        if mount is None:
            return False
        wanted = () if mount.version == 2 else mount.controllers
        own = next((c for c in fs.proc_cgroups() if c.controllers == wanted), None)
        if own is None:
            return False
        relative = os.path.relpath(own.path, mount.root)
        if relative.startswith(".."):  # a cgroup namespace hides where we are
            return False
        directory = os.path.normpath(os.path.join(mount.mountpoint, relative))
        fs.write(f"{directory}/cgroup.procs", str(os.getpid()))
    except (MoorageError, OSError):
        return False
    return True
