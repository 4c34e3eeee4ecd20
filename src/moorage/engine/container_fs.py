"""A container's file system seen from the daemon: ``diff``, ``cp``, ``export``, ``commit``.

What is inside a container's root is hostile: any process in the container may have
replaced a directory by a symlink to ``/etc`` of the host, or planted ``..`` tricks.
Nothing here ever joins a container path to a host path and opens the result.

Roots
    Every operation works on a :class:`RootView`: an open descriptor of the
    container's ``/``.

    - A running container is seen through ``/proc/<init pid>/root``
      (:func:`open_running`): the container's own mount namespace, so its volumes,
      bind mounts and ``/etc/hosts`` are where the container sees them. The pid is
      pinned with a pidfd while the root is opened, so a recycled pid is refused.
    - A stopped container (:func:`open_snapshot`): its snapshot, mounted on a private
      temporary directory. For reading, the mount is read-only and made of lower
      layers only (the snapshot's upper directory joins the lower ones), so it never
      competes with a start of the container for the upper directory; for an upload
      it is the snapshot's read-write mount. The container's volumes and bind mounts
      (``binds``) are then bound at their destinations, resolved inside the root as
      the runtime resolves them, and skipped when the destination does not exist.
      Volumes with driver options (a tmpfs or NFS volume) are bound as their plain
      ``_data`` directory, without the driver's mount.

Resolution
    A path from the API is cleaned lexically as Docker does (``/a/../b`` is ``/b``),
    then opened with ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` on the root
    descriptor: a symlink in the way is followed as the container would follow it,
    inside the root, and ``/proc/<pid>/root``-style magic links are refused. As in
    Docker, the last component of a path is not followed for ``stat`` and ``GET``
    (a symlink is archived as a symlink) unless the path ends in ``/``; it is followed
    for ``PUT`` (extracting into a symlink to a directory extracts into the
    directory). Trees are walked by descriptors, one component at a time, with
    ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS``; a walk descends into another mount
    only for the container's volumes and bind mounts (never ``/proc`` or ``/sys``).

Uploads
    The tar is extracted by the store's extractor (:mod:`moorage.store.archive_apply`)
    with its descriptor-relative, ``RESOLVE_IN_ROOT`` rules, rooted at the target
    directory: ``..`` that climbs out is refused, absolute names are taken relative to
    the target, symlinks (planted by the archive or already there) are resolved inside
    the target, and nothing is written outside it. Layer semantics are off: a name
    starting with ``.wh.`` is refused instead of being taken for a whiteout. Owners are
    kept from the archive; ``copy_uid_gid`` gives every entry the container user's
    uid and gid instead (looked up in the container's ``/etc/passwd``).

Changes
    :func:`changes` compares an overlay upper directory with its lower layers mounted
    read-only, with Docker's rules (``docker diff``): whiteouts are deletions, an
    entry the lower layers have is a modification, a new one an addition, and the
    parent directory of an addition or a deletion is reported as modified. The
    placeholders the runtime creates for its own mounts (``/etc/hosts``,
    ``/etc/hostname``, ``/etc/resolv.conf``, ``/dev``, ``/proc``, ``/sys``), which
    Docker hides in its init layer, are left out.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import errno
import json
import logging
import os
import posixpath
import signal
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Final, NamedTuple

from moorage.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    MoorageError,
    NotFound,
    NotSupported,
    PermissionDenied,
)
from moorage.store.archive_apply import (
    OVERLAY_OPAQUE_XATTR,
    PAX_XATTR_PREFIX,
    extract_files,
    keep_xattr,
)
from moorage.store.archive_diff import DiffStats, write_diff
from moorage.store.snapshots.mount import Mount, mount_all, mounted, unmount
from moorage.sys import fsops, libc

if TYPE_CHECKING:
    from moorage.oci.image import ContainerConfig
    from moorage.store.snapshots.base import Snapshotter

__all__ = [
    "PATH_STAT_HEADER",
    "RUNTIME_PLACEHOLDERS",
    "Bind",
    "RootView",
    "archive_path",
    "changes",
    "commit_config",
    "commit_container",
    "encode_path_stat",
    "export_tree",
    "extract_archive",
    "go_file_mode",
    "go_time",
    "open_running",
    "open_snapshot",
    "read_only_mounts",
    "resolve_in_root",
    "snapshot_changes",
    "snapshot_diff",
    "stat_path",
]

log = logging.getLogger(__name__)

_IN_ROOT: Final = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS
_ONE: Final = libc.RESOLVE_BENEATH | libc.RESOLVE_NO_SYMLINKS | libc.RESOLVE_NO_MAGICLINKS
_CHUNK: Final = 1 << 20
_MAX_LINKS: Final = 255  # symlinks followed in one resolve_in_root (a loop ends there)
# errnos that mean an entry went away or changed while a tree was walked: skipped, as
# Docker's tar writer skips what it cannot stat
_VANISHED: Final = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ESTALE})

# Go's os.FileMode bits (io/fs), as Docker's API sends a mode
GO_MODE_DIR: Final = 1 << 31
GO_MODE_SYMLINK: Final = 1 << 27
GO_MODE_DEVICE: Final = 1 << 26
GO_MODE_NAMED_PIPE: Final = 1 << 25
GO_MODE_SOCKET: Final = 1 << 24
GO_MODE_SETUID: Final = 1 << 23
GO_MODE_SETGID: Final = 1 << 22
GO_MODE_CHAR_DEVICE: Final = 1 << 21
GO_MODE_STICKY: Final = 1 << 20

# Mount targets the runtime creates in a container's root when the image lacks them;
# Docker keeps them in a hidden init layer, so `docker diff` never shows them.
RUNTIME_PLACEHOLDERS: Final = frozenset(
    {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev", "/proc", "/sys"}
)

PATH_STAT_HEADER: Final = "X-Docker-Container-Path-Stat"


# --- Docker's encodings -------------------------------------------------------------------


def go_file_mode(st_mode: int) -> int:
    """``st_mode`` as Go's ``os.FileMode`` (what ``os.Lstat(...).Mode()`` gives)."""
    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    if kind == stat.S_IFBLK:
        mode |= GO_MODE_DEVICE
    elif kind == stat.S_IFCHR:
        mode |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE
    elif kind == stat.S_IFDIR:
        mode |= GO_MODE_DIR
    elif kind == stat.S_IFIFO:
        mode |= GO_MODE_NAMED_PIPE
    elif kind == stat.S_IFLNK:
        mode |= GO_MODE_SYMLINK
    elif kind == stat.S_IFSOCK:
        mode |= GO_MODE_SOCKET
    if st_mode & stat.S_ISGID:
        mode |= GO_MODE_SETGID
    if st_mode & stat.S_ISUID:
        mode |= GO_MODE_SETUID
    if st_mode & stat.S_ISVTX:
        mode |= GO_MODE_STICKY
    return mode


def go_time(ns: int) -> str:
    """A UTC time as Go's ``time.Time`` marshals to JSON (RFC 3339, trailing zeros cut)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def encode_path_stat(path_stat: dict[str, Any]) -> str:
    """The value of the ``X-Docker-Container-Path-Stat`` header."""
    raw = json.dumps(path_stat, separators=(",", ":")).encode()
    return base64.b64encode(raw).decode()


# --- roots --------------------------------------------------------------------------------


class Bind(NamedTuple):
    """A volume or bind mount of a container: host ``source`` at ``destination``."""

    source: str
    destination: str
    read_only: bool = False


@dataclass
class RootView:
    """An open ``O_PATH`` descriptor of a container's ``/``, and how to let it go.

    ``crossable`` lists the container paths of the mounts a tree walk descends into
    (volumes and bind mounts); any other mount (``/proc``, ``/sys``, ``/dev``) is
    archived as an empty directory, as Docker's daemon-side copy shows it.
    """

    fd: int
    crossable: frozenset[str] = frozenset()
    _cleanup: Callable[[], None] | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        try:
            os.close(fd)
        finally:
            if self._cleanup is not None:
                self._cleanup()

    def __enter__(self) -> RootView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clean_destinations(paths: Collection[str]) -> frozenset[str]:
    return frozenset(posixpath.normpath("/" + p.lstrip("/")) for p in paths)


def open_running(pid: int, *, crossable: Collection[str] = ()) -> RootView:
    """The root of the running process ``pid`` (a container's init), in its mount namespace.

    Raises :class:`Conflict` when the process is gone (the container stopped).
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError as exc:
        raise Conflict(f"process {pid} is not running") from exc
    try:
        try:
            fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise Conflict(f"process {pid} is not running: {exc.strerror}") from exc
        try:
            # The pidfd pins the process that had this pid before the open: if it is
            # still alive now, the root we opened is its root, not a successor's.
            signal.pidfd_send_signal(pidfd, 0)
        except ProcessLookupError as exc:
            os.close(fd)
            raise Conflict(f"process {pid} is not running") from exc
    finally:
        os.close(pidfd)
    return RootView(fd, _clean_destinations(crossable))


def read_only_mounts(mounts: Sequence[Mount]) -> list[Mount]:
    """The mounts of a snapshot, read-only, without touching its upper directory.

    An overlay's upper directory becomes its topmost lower layer (an overlay of lower
    layers only is read-only and needs no work directory, so it can coexist with the
    snapshot's own read-write mount); a bind mount is remounted ``ro``.
    """
    out: list[Mount] = []
    for m in mounts:
        if m.type != "overlay":
            out.append(Mount(m.type, m.source, (*(o for o in m.options if o != "rw"), "ro")))
            continue
        lowers: list[str] = []
        upper: str | None = None
        rest: list[str] = []
        for option in m.options:
            key, _, value = option.partition("=")
            if key == "lowerdir":
                lowers = value.split(":")
            elif key == "upperdir":
                upper = value
            elif key != "workdir" and option != "rw":
                rest.append(option)
        if upper is not None:
            lowers.insert(0, upper)
        if len(lowers) == 1:  # overlay wants two lower layers at least without an upper
            out.append(Mount("bind", lowers[0], ("rbind", "ro")))
            continue
        out.append(Mount("overlay", m.source, (f"lowerdir={':'.join(lowers)}", *rest)))
    return out


def open_snapshot(
    snapshots: Snapshotter, key: str, *, writable: bool = False, binds: Sequence[Bind] = ()
) -> RootView:
    """The root of a stopped container: snapshot ``key`` mounted on a private directory,
    with ``binds`` bound at their destinations. Closing the view unmounts it all."""
    mounts = snapshots.mounts(key)
    if not writable:
        mounts = read_only_mounts(mounts)
    target = tempfile.mkdtemp(prefix="moorage-container-")  # 0700: private to root

    def cleanup() -> None:
        unmount(target)  # lazily detaches the binds below it too
        with contextlib.suppress(OSError):
            os.rmdir(target)

    try:
        mount_all(mounts, target)
    except BaseException:
        os.rmdir(target)
        raise
    try:
        fd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _bind_all(fd, binds)
        except BaseException:
            os.close(fd)
            raise
    except BaseException:
        cleanup()
        raise
    return RootView(fd, _clean_destinations([b.destination for b in binds]), cleanup)


def _bind_all(root_fd: int, binds: Sequence[Bind]) -> None:
    for bind in sorted(binds, key=lambda b: posixpath.normpath("/" + b.destination).count("/")):
        rel = _rel(posixpath.normpath("/" + bind.destination.lstrip("/")))
        try:
            source = os.open(bind.source, os.O_PATH | os.O_CLOEXEC)
        except OSError as exc:
            log.info("not mounting %s at %s: %s", bind.source, bind.destination, exc.strerror)
            continue
        try:
            try:
                dest = libc.openat2(root_fd, rel, os.O_PATH, _IN_ROOT)
            except OSError as exc:
                log.info("not mounting %s: destination %s", bind.source, exc.strerror)
                continue
            try:
                if stat.S_ISDIR(os.fstat(source).st_mode) != stat.S_ISDIR(os.fstat(dest).st_mode):
                    log.info("not mounting %s: %s is of another type", bind.source, rel)
                    continue
                # Through the descriptors: the kernel mounts on the inode that was
                # resolved inside the root, whatever has been renamed since.
                libc.mount(
                    f"/proc/self/fd/{source}",
                    f"/proc/self/fd/{dest}",
                    None,
                    libc.MS_BIND | libc.MS_REC,
                )
            finally:
                os.close(dest)
            if bind.read_only:
                mounted_fd = libc.openat2(root_fd, rel, os.O_PATH, _IN_ROOT)
                try:
                    libc.mount(
                        None,
                        f"/proc/self/fd/{mounted_fd}",
                        None,
                        libc.MS_REMOUNT | libc.MS_BIND | libc.MS_RDONLY,
                    )
                finally:
                    os.close(mounted_fd)
        finally:
            os.close(source)


# --- resolution -------------------------------------------------------------------------


class _Target(NamedTuple):
    abs_path: str  # cleaned, with Docker's trailing "/" or "/." kept
    parent: str  # relative to the root, "." for the root
    base: str  # last component; "" or "." when the path names a directory itself


def _abs(path: str) -> str:
    """Docker's ``PreserveTrailingDotOrSeparator(filepath.Join("/", path), path)``."""
    if "\0" in path:
        raise InvalidArgument(f"path contains a NUL byte: {path!r}")
    cleaned = posixpath.normpath("/" + path.lstrip("/"))
    if posixpath.basename(path) == "." and posixpath.basename(cleaned) != ".":
        cleaned = cleaned.rstrip("/") + "/."
    if path.endswith("/") and not cleaned.endswith("/"):
        cleaned += "/"
    return cleaned


def _rel(abs_path: str) -> str:
    return abs_path.strip("/") or "."


def _target(path: str) -> _Target:
    abs_path = _abs(path)
    parent, _, base = abs_path.rpartition("/")
    return _Target(abs_path, _rel(parent), base)


def _not_found(path: str, container: str) -> NotFound:
    where = f" in container {container}" if container else ""
    return NotFound(f"Could not find the file {path}{where}")


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def resolve_in_root(root_fd: int, path: str) -> str:
    """The container path ``path`` leads to once every symlink on it is followed inside
    the root (Docker's ``FollowSymlinkInScope``); what does not exist stays as written.
    Informational (a stat's ``linkTarget``): files are opened by :func:`libc.openat2`.
    """
    pending = collections.deque(_components(path))
    done: list[str] = []
    links = 0
    missing = False
    while pending:
        part = pending.popleft()
        if part == "..":
            if done:
                done.pop()
            continue
        if missing:
            done.append(part)
            continue
        try:
            parent = libc.openat2(root_fd, "/".join(done) or ".", os.O_PATH | os.O_DIRECTORY, _ONE)
        except OSError:
            missing = True
            done.append(part)
            continue
        try:
            st = fsops.lstatat(parent, part)
            if not stat.S_ISLNK(st.st_mode):
                done.append(part)
                continue
            links += 1
            if links > _MAX_LINKS:
                raise InvalidArgument(f"too many levels of symbolic links: {path}")
            link = os.readlink(part, dir_fd=parent)
        except OSError:
            missing = True
            done.append(part)
            continue
        finally:
            os.close(parent)
        if link.startswith("/"):
            done = []
        pending.extendleft(reversed(_components(link)))
    return "/" + "/".join(done)


def _lookup(root_fd: int, target: _Target, container: str) -> tuple[int, str, os.stat_result]:
    """``(parent O_PATH fd, base name, lstat)`` of a target; base "" when the target is
    the parent itself (a path ending in "/" or "/."), whose stat follows it."""
    try:
        parent = libc.openat2(root_fd, target.parent, os.O_PATH | os.O_DIRECTORY, _IN_ROOT)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise _not_found(target.abs_path, container) from exc
        raise _os_error(target.abs_path, exc) from exc
    base = "" if target.base in ("", ".") else target.base
    try:
        st = os.fstat(parent) if not base else fsops.lstatat(parent, base)
    except OSError as exc:
        os.close(parent)
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise _not_found(target.abs_path, container) from exc
        raise _os_error(target.abs_path, exc) from exc
    return parent, base, st


def _os_error(what: str, exc: OSError) -> MoorageError:
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f"{what}: {reason}")
    return FailedPrecondition(f"{what}: {reason}")


def _stat_dict(root_fd: int, target: _Target, st: os.stat_result) -> dict[str, Any]:
    link_target = ""
    if stat.S_ISLNK(st.st_mode):
        link_target = resolve_in_root(root_fd, target.abs_path)
    stripped = target.abs_path.rstrip("/")
    return {
        "name": posixpath.basename(stripped) if stripped else "/",
        "size": st.st_size,
        "mode": go_file_mode(st.st_mode),
        "mtime": go_time(st.st_mtime_ns),
        "linkTarget": link_target,
    }


def stat_path(root: RootView, path: str, *, container: str = "") -> dict[str, Any]:
    """``HEAD /containers/{id}/archive``: Docker's ``ContainerPathStat`` of ``path``."""
    target = _target(path)
    parent, _, st = _lookup(root.fd, target, container)
    os.close(parent)
    return _stat_dict(root.fd, target, st)


# --- tar out ------------------------------------------------------------------------------


def _xattrs(fd: int) -> dict[str, str]:
    """The extended attributes that travel in a tar, as PAX records."""
    try:
        names = fsops.flistxattr(fd)
    except OSError:
        return {}
    out: dict[str, str] = {}
    for name in sorted(names):
        if not keep_xattr(name):
            continue
        try:
            value = fsops.fgetxattr(fd, name)
        except OSError:
            continue
        if value is not None:
            out[PAX_XATTR_PREFIX + name] = value.decode("utf-8", "surrogateescape")
    return out


class _TarOut:
    """Tar members as chunks of bytes; hard links written once, as Docker writes them."""

    def __init__(self) -> None:
        self.links: dict[tuple[int, int], str] = {}

    @staticmethod
    def info(name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid = st.st_uid
        info.gid = st.st_gid
        info.uname = info.gname = ""
        info.mtime = st.st_mtime_ns // 1_000_000_000
        return info

    @staticmethod
    def header(info: tarfile.TarInfo) -> bytes:
        return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")

    def directory(self, name: str, fd: int) -> bytes:
        info = self.info(name if name.endswith("/") else name + "/", os.fstat(fd), tarfile.DIRTYPE)
        info.pax_headers = _xattrs(fd)
        return self.header(info)

    def regular(self, name: str, fd: int) -> Iterator[bytes]:
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1:
            first = self.links.get(key)
            if first is not None:
                info = self.info(name, st, tarfile.LNKTYPE)
                info.linkname = first
                yield self.header(info)
                return
            self.links[key] = name
        info = self.info(name, st, tarfile.REGTYPE)
        info.size = st.st_size
        info.pax_headers = _xattrs(fd)
        yield self.header(info)
        left = st.st_size
        while left:
            chunk = os.read(fd, min(_CHUNK, left))
            if not chunk:
                raise Conflict(f"{name}: file shrank while it was being archived")
            left -= len(chunk)
            yield chunk
        padding = -st.st_size % tarfile.BLOCKSIZE
        if padding:
            yield b"\0" * padding

    def other(self, name: str, st: os.stat_result, link: str = "") -> bytes | None:
        """A symlink, device or fifo; None for a socket, which tar cannot hold."""
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            info = self.info(name, st, tarfile.SYMTYPE)
            info.linkname = link
        elif stat.S_ISFIFO(mode):
            info = self.info(name, st, tarfile.FIFOTYPE)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info = self.info(name, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
            info.devmajor = os.major(st.st_rdev)
            info.devminor = os.minor(st.st_rdev)
        else:
            return None
        return self.header(info)

    @staticmethod
    def end() -> bytes:
        return b"\0" * (2 * tarfile.BLOCKSIZE)


def _open_one(dir_fd: int, name: str, flags: int, *, same_mount: bool = False) -> int:
    resolve = _ONE | (libc.RESOLVE_NO_XDEV if same_mount else 0)
    return libc.openat2(dir_fd, name, flags | os.O_NOFOLLOW, resolve)


_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_Listing = list[tuple[str, os.stat_result]]
_Item = tuple[str, os.stat_result | None]


@dataclass
class _Frame:
    """A directory being archived: where it is, and the entries still to write.

    Only the bases (the walk's top and each mount it descended into) stay open for
    the whole walk; a directory is reached again from its base by a relative path,
    so a deep tree costs no descriptors and no recursion.
    """

    base: int  # descriptor the relative path starts from
    owns_base: bool  # opened for this frame (a mount descended into): closed with it
    rel: str  # from base; "" for the base itself
    member: str  # tar name prefix of its entries ("etc/")
    cpath: str  # its path in the container
    items: Iterator[tuple[str, os.stat_result]]
    ident: tuple[int, int]  # (st_dev, st_ino): a directory reached again must be the same
    fd: int = -1  # open while its entries are written

    def open(self) -> int:
        if self.fd < 0:
            fd = libc.openat2(self.base, self.rel or ".", _DIR_FLAGS, _ONE | libc.RESOLVE_NO_XDEV)
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self.ident:
                os.close(fd)
                raise OSError(errno.ESTALE, "replaced while being archived", self.rel)
            self.fd = fd
        return self.fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        self.release()
        if self.owns_base:
            os.close(self.base)


@dataclass
class _Walk:
    """A depth-first walk of a directory tree, names sorted bytewise, every component
    opened with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` from a descriptor."""

    out: _TarOut
    crossable: frozenset[str]

    def tree(self, top_fd: int, prefix: str, cpath: str) -> Iterator[bytes]:
        """Every entry below the directory ``top_fd`` (not itself), named ``prefix + rel``;
        ``cpath`` is the directory's path in the container."""
        base = os.dup(top_fd)
        try:
            st = os.fstat(base)
            items = iter(_listing(base))
        except BaseException:
            os.close(base)
            raise
        stack = [_Frame(base, True, "", prefix, cpath, items, (st.st_dev, st.st_ino))]
        try:
            while stack:
                frame = stack[-1]
                item = next(frame.items, None)
                if item is None:
                    stack.pop().close()
                    continue
                name, st = item
                try:
                    yield from self.entry(frame, name, st, stack)
                except OSError as exc:
                    if exc.errno not in _VANISHED:
                        raise _os_error(posixpath.join(frame.cpath, name), exc) from exc
                    log.debug("%s changed while being archived: skipped", name)
        finally:
            for frame in stack:
                frame.close()

    def entry(
        self, frame: _Frame, name: str, st: os.stat_result, stack: list[_Frame]
    ) -> Iterator[bytes]:
        member = frame.member + name
        cpath = posixpath.join(frame.cpath, name)
        mode = st.st_mode
        fd = frame.open()
        if stat.S_ISDIR(mode):
            yield from self.directory(frame, fd, name, member, cpath, st, stack)
        elif stat.S_ISREG(mode):
            # O_NONBLOCK: should a fifo have taken the file's place, do not hang on it.
            file_fd = _open_one(fd, name, os.O_RDONLY | os.O_NONBLOCK)
            try:
                if not stat.S_ISREG(os.fstat(file_fd).st_mode):
                    raise OSError(errno.ESTALE, "replaced while being read", name)
                yield from self.out.regular(member, file_fd)
            finally:
                os.close(file_fd)
        else:
            link = os.readlink(name, dir_fd=fd) if stat.S_ISLNK(mode) else ""
            header = self.out.other(member, st, link)
            if header is not None:
                yield header

    def directory(
        self,
        frame: _Frame,
        fd: int,
        name: str,
        member: str,
        cpath: str,
        st: os.stat_result,
        stack: list[_Frame],
    ) -> Iterator[bytes]:
        crossing = False
        try:
            child = _open_one(fd, name, os.O_RDONLY | os.O_DIRECTORY, same_mount=True)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            if cpath not in self.crossable:  # another mount: the directory, not its content
                yield self.out.header(self.out.info(member + "/", st, tarfile.DIRTYPE))
                return
            child = _open_one(fd, name, os.O_RDONLY | os.O_DIRECTORY)
            crossing = True
        try:
            header = self.out.directory(member, child)
            listing = iter(_listing(child))
            cst = os.fstat(child)
        except BaseException:
            os.close(child)
            raise
        ident = (cst.st_dev, cst.st_ino)
        if crossing:  # the mount's root is the base of everything below it
            sub = _Frame(child, True, "", member + "/", cpath, listing, ident)
        else:
            os.close(child)
            rel = f"{frame.rel}/{name}" if frame.rel else name
            sub = _Frame(frame.base, False, rel, member + "/", cpath, listing, ident)
        frame.release()  # reopened by its path when the walk comes back to it
        stack.append(sub)
        yield header


def _listing(fd: int) -> list[tuple[str, os.stat_result]]:
    with os.scandir(fd) as it:
        entries = []
        for e in it:
            try:
                entries.append((e.name, e.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue
    entries.sort(key=lambda e: os.fsencode(e[0]))
    return entries


def archive_path(
    root: RootView, path: str, *, container: str = ""
) -> tuple[dict[str, Any], Iterator[bytes]]:
    """``GET /containers/{id}/archive``: the stat of ``path`` and a tar of it, as Docker
    makes it: a file as one entry named by its base name, a directory with its base
    name as the prefix of every entry, ``dir/.`` as its contents under ``./``.

    The stat is taken (and :class:`NotFound` raised) before the first chunk; the
    descriptors the tar needs are open by then, so the path cannot be swapped after.
    """
    target = _target(path)
    parent, base, st = _lookup(root.fd, target, container)
    fd = -1
    link = ""
    try:
        path_stat = _stat_dict(root.fd, target, st)
        if stat.S_ISDIR(st.st_mode):
            flags = os.O_RDONLY | os.O_DIRECTORY
            fd = _open_one(parent, base, flags) if base else libc.openat2(parent, ".", flags, _ONE)
        elif stat.S_ISREG(st.st_mode):
            fd = _open_one(parent, base, os.O_RDONLY | os.O_NONBLOCK)
        elif stat.S_ISLNK(st.st_mode):
            link = os.readlink(base, dir_fd=parent)
    except OSError as exc:
        if exc.errno in _VANISHED:
            raise _not_found(target.abs_path, container) from exc
        raise _os_error(target.abs_path, exc) from exc
    finally:
        os.close(parent)
    # Docker names the entries after the path as asked, not after what it resolved to.
    rebase = path_stat["name"]
    return path_stat, _Chunks(_archive_chunks(root, target, rebase, st, fd, link), fd)


class _Chunks(Iterator[bytes]):
    """A tar being produced; :meth:`close` releases its descriptor even if it never ran."""

    def __init__(self, chunks: Iterator[bytes], fd: int) -> None:
        self._chunks = chunks
        self._fd = fd

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


def _archive_chunks(
    root: RootView, target: _Target, rebase: str, st: os.stat_result, fd: int, link: str
) -> Iterator[bytes]:
    # Docker's entry names: "etc/", "etc/passwd"; "./", "./passwd"; "/", "//bin".
    out = _TarOut()
    if stat.S_ISDIR(st.st_mode):
        cpath = resolve_in_root(root.fd, target.abs_path)
        yield out.directory(rebase, fd)
        if _descends(root, fd, cpath):
            yield from _Walk(out, root.crossable).tree(fd, rebase + "/", cpath)
    elif stat.S_ISREG(st.st_mode):
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Conflict(f"{target.abs_path}: replaced while being archived")
        yield from out.regular(rebase, fd)
    else:
        header = out.other(rebase, st, link)
        if header is not None:
            yield header
    yield out.end()


def _descends(root: RootView, fd: int, cpath: str) -> bool:
    """Whether an archive of directory ``fd`` includes its content: not when it is on
    a mount other than the root's and the container's volumes (``/proc``, ``/dev``),
    which Docker's copy of a running container does not see either."""
    if os.fstat(fd).st_dev == os.fstat(root.fd).st_dev:
        return True
    return any(cpath == m or cpath.startswith(m.rstrip("/") + "/") for m in root.crossable)


def export_tree(root: RootView) -> Iterator[bytes]:
    """``GET /containers/{id}/export``: the container's root file system as a tar,
    entries named relative to ``/`` (``bin/``, ``bin/sh``), without the content of
    the mounts on it (``/proc``, ``/sys``, volumes), as ``docker export`` makes it."""
    fd = libc.openat2(root.fd, ".", os.O_RDONLY | os.O_DIRECTORY, _ONE)
    out = _TarOut()
    try:
        yield from _Walk(out, frozenset()).tree(fd, "", "/")
        yield out.end()
    finally:
        os.close(fd)


# --- tar in -------------------------------------------------------------------------------


def extract_archive(
    root: RootView,
    path: str,
    stream: BinaryIO | IO[bytes],
    *,
    no_overwrite_dir_non_dir: bool = False,
    copy_uid_gid: bool = False,
    user: str = "",
    container: str = "",
) -> None:
    """``PUT /containers/{id}/archive``: extract the tar ``stream`` into the directory
    ``path`` (symlinks followed inside the root). :class:`NotFound` if ``path`` does not
    exist, :class:`InvalidArgument` if it is not a directory, :class:`PermissionDenied`
    if it is on a read-only mount. ``user`` (the container's ``Config.User``) owns
    everything when ``copy_uid_gid``; otherwise the archive's owners are kept (as
    dockerd keeps them)."""
    abs_path = _abs(path)
    try:
        where = libc.openat2(root.fd, _rel(abs_path), os.O_PATH, _IN_ROOT)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            raise _not_found(abs_path, container) from exc
        if exc.errno == errno.ENOTDIR:
            raise InvalidArgument("extraction point is not a directory") from exc
        raise _os_error(abs_path, exc) from exc
    try:
        if not stat.S_ISDIR(os.fstat(where).st_mode):
            raise InvalidArgument("extraction point is not a directory")
        target = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=where)
    finally:
        os.close(where)
    try:
        if os.fstatvfs(target).f_flag & os.ST_RDONLY:
            on_root = os.fstat(target).st_dev == os.fstat(root.fd).st_dev
            raise PermissionDenied(
                "container rootfs is marked read-only"
                if on_root
                else "mounted volume is marked read-only"
            )
        owner = None
        if copy_uid_gid and user:
            from moorage.engine.etcfiles import lookup_user

            uid, gid, _ = lookup_user(f"/proc/self/fd/{root.fd}", user)
            owner = (uid, gid)
        extract_files(
            stream,
            target,
            owner=owner,
            no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
            private=True,  # a container's root is no host user's business
        )
    finally:
        os.close(target)


# --- changes ------------------------------------------------------------------------------

CHANGE_MODIFY: Final = 0
CHANGE_ADD: Final = 1
CHANGE_DELETE: Final = 2


def _same_fs_time(a: int, b: int) -> bool:
    """Docker's ``sameFsTime``: equal, or equal seconds where one side has no nanoseconds."""
    if a == b:
        return True
    return a // 10**9 == b // 10**9 and (a % 10**9 == 0 or b % 10**9 == 0)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(fd: int) -> bool:
    for key in (OVERLAY_OPAQUE_XATTR, "user.overlay.opaque"):
        try:
            if fsops.fgetxattr(fd, key) == b"y":
                return True
        except OSError:
            continue
    return False


@dataclass
class _Changes:
    upper_fd: int
    lower_fd: int | None
    ignore: frozenset[str]
    out: list[dict[str, Any]] = field(default_factory=list)
    changed_dirs: set[str] = field(default_factory=set)

    def lower_stat(self, rel: str) -> os.stat_result | None:
        if self.lower_fd is None:
            return None
        parent, _, name = rel.rpartition("/")
        try:
            fd = libc.openat2(self.lower_fd, parent or ".", os.O_PATH | os.O_DIRECTORY, _ONE)
        except OSError:
            return None
        try:
            return fsops.lstatat(fd, name)
        except OSError:
            return None
        finally:
            os.close(fd)

    def lower_names(self, rel: str) -> list[str]:
        if self.lower_fd is None:
            return []
        try:
            fd = libc.openat2(self.lower_fd, rel, os.O_RDONLY | os.O_DIRECTORY, _ONE)
        except OSError:
            return []
        try:
            return [name for name, _ in _listing(fd)]
        finally:
            os.close(fd)

    def record(self, path: str, kind: int) -> None:
        if kind in (CHANGE_ADD, CHANGE_DELETE):
            parent = posixpath.dirname(path)
            if parent != "/" and parent not in self.changed_dirs:
                self.out.append({"Path": parent, "Kind": CHANGE_MODIFY})
                self.changed_dirs.add(parent)
        self.out.append({"Path": path, "Kind": kind})

    @staticmethod
    def items(listing: _Listing, hidden_lower: list[str]) -> Iterator[_Item]:
        """A directory's upper entries and (None) the lower ones an opaque one hides."""
        names = {name for name, _ in listing}
        items: list[_Item] = list(listing)
        items += [(name, None) for name in hidden_lower if name not in names]
        items.sort(key=lambda e: os.fsencode(e[0]))
        return iter(items)

    def run(self) -> None:
        """Depth first, each directory reached by its path from the upper directory's
        descriptor (no descriptor held per level, no recursion)."""
        stack: list[tuple[str, Iterator[_Item]]] = [("", self.items(_listing(self.upper_fd), []))]
        while stack:
            rel, items = stack[-1]
            item = next(items, None)
            if item is None:
                stack.pop()
                continue
            name, st = item
            child_rel = f"{rel}/{name}" if rel else name
            path = "/" + child_rel
            if st is None:  # in a lower layer, hidden by an opaque directory
                self.record(path, CHANGE_DELETE)
                continue
            if path in self.ignore:
                continue
            if _is_whiteout(st):
                self.record(path, CHANGE_DELETE)
                continue
            lower = self.lower_stat(child_rel)
            if not stat.S_ISDIR(st.st_mode):
                self.record(path, CHANGE_ADD if lower is None else CHANGE_MODIFY)
                continue
            try:
                child = libc.openat2(self.upper_fd, child_rel, _DIR_FLAGS, _ONE)
            except OSError as exc:
                if exc.errno in _VANISHED:
                    continue
                raise _os_error(path, exc) from exc
            try:
                opaque = _opaque(child)
                listing = _listing(child)
            finally:
                os.close(child)
            hidden = self.lower_names(child_rel) if opaque and lower is not None else []
            if lower is None:
                self.record(path, CHANGE_ADD)
                self.changed_dirs.add(path)
            elif opaque or not self.unchanged_dir(listing, path, st, lower):
                self.record(path, CHANGE_MODIFY)
                self.changed_dirs.add(path)
            stack.append((child_rel, self.items(listing, hidden)))

    def unchanged_dir(
        self, listing: _Listing, path: str, st: os.stat_result, lower: os.stat_result
    ) -> bool:
        if not stat.S_ISDIR(lower.st_mode):
            return False
        if (st.st_mode, st.st_uid, st.st_gid) != (lower.st_mode, lower.st_uid, lower.st_gid):
            return False
        if st.st_size == lower.st_size and _same_fs_time(st.st_mtime_ns, lower.st_mtime_ns):
            return True  # Docker's test: same size, mode and mtime
        # Copied up only because the runtime made its mount placeholders in it: Docker
        # has those in an init layer below the container's, where /etc stays unchanged.
        return bool(listing) and all(posixpath.join(path, n) in self.ignore for n, _ in listing)


def changes(
    upper: str, lower: str | None, *, ignore: Collection[str] = RUNTIME_PLACEHOLDERS
) -> list[dict[str, Any]]:
    """``GET /containers/{id}/changes`` of an overlay upper directory over ``lower`` (the
    merged lower layers, None for none): ``[{"Path": "/tmp/x", "Kind": 0|1|2}]`` with
    0 modified, 1 added, 2 deleted, in Docker's order (depth first, names sorted,
    a parent reported before its first added or deleted child)."""
    upper_fd = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        lower_fd = (
            None if lower is None else os.open(lower, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        )
        try:
            walk = _Changes(upper_fd, lower_fd, _clean_destinations(ignore))
            walk.run()
            return walk.out
        finally:
            if lower_fd is not None:
                os.close(lower_fd)
    finally:
        os.close(upper_fd)


def snapshot_changes(
    snapshots: Snapshotter, key: str, *, ignore: Collection[str] = RUNTIME_PLACEHOLDERS
) -> list[dict[str, Any]]:
    """:func:`changes` of active snapshot ``key`` (running or not): its upper directory
    against its parent layers, mounted read-only for the comparison."""
    if snapshots.whiteout_mode != "overlay":
        raise NotSupported(
            f"container changes need the overlay snapshotter (this store uses {snapshots.name})"
        )
    upper = snapshots.writable_dir(key)
    parents = snapshots.parent_mounts(key)
    if not parents:
        return changes(upper, None, ignore=ignore)
    with mounted(parents) as lower:
        return changes(upper, lower, ignore=ignore)


# --- commit -------------------------------------------------------------------------------


def snapshot_diff(snapshots: Snapshotter, key: str, out: BinaryIO) -> DiffStats:
    """Write the changes of active snapshot ``key`` to ``out`` as an uncompressed layer."""
    upper = snapshots.writable_dir(key)
    if snapshots.whiteout_mode == "overlay":
        return write_diff(out, upper)
    parents = snapshots.parent_mounts(key)
    if parents:
        with mounted(parents) as lower:
            return write_diff(out, upper, lower=lower)
    empty = tempfile.mkdtemp(prefix="moorage-empty-")
    try:
        return write_diff(out, upper, lower=empty)
    finally:
        os.rmdir(empty)


def _strings(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{where}: must be an array of strings")
    return tuple(value)


def _keys(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}: must be an object")
    return tuple(str(k) for k in value)


def _image_config(docker: dict[str, Any], where: str) -> ContainerConfig:
    """A Docker ``Config`` object as an image's container config."""
    from moorage.oci.image import ContainerConfig, Healthcheck

    if not isinstance(docker, dict):
        raise InvalidArgument(f"{where}: must be an object")
    health = None
    hc = docker.get("Healthcheck")
    if isinstance(hc, dict) and hc.get("Test"):
        health = Healthcheck(
            test=_strings(hc.get("Test"), f"{where}.Healthcheck.Test") or (),
            interval=int(hc.get("Interval") or 0),
            timeout=int(hc.get("Timeout") or 0),
            start_period=int(hc.get("StartPeriod") or 0),
            start_interval=int(hc.get("StartInterval") or 0),
            retries=int(hc.get("Retries") or 0),
        )
    labels = docker.get("Labels") or {}
    if not isinstance(labels, dict):
        raise InvalidArgument(f"{where}.Labels: must be an object")
    return ContainerConfig(
        user=docker.get("User") or None,
        exposed_ports=_keys(docker.get("ExposedPorts"), f"{where}.ExposedPorts"),
        env=_strings(docker.get("Env"), f"{where}.Env") or (),
        entrypoint=_strings(docker.get("Entrypoint"), f"{where}.Entrypoint"),
        cmd=_strings(docker.get("Cmd"), f"{where}.Cmd"),
        volumes=_keys(docker.get("Volumes"), f"{where}.Volumes"),
        working_dir=docker.get("WorkingDir") or None,
        labels={str(k): str(v) for k, v in labels.items()},
        stop_signal=docker.get("StopSignal") or None,
        healthcheck=health,
        on_build=_strings(docker.get("OnBuild"), f"{where}.OnBuild") or (),
        shell=_strings(docker.get("Shell"), f"{where}.Shell") or (),
    )


def _merge(user: ContainerConfig, container: ContainerConfig) -> ContainerConfig:
    """dockerd's ``merge``: what the commit's config leaves unset comes from the container."""
    env = list(user.env)
    keys = {e.partition("=")[0] for e in env}
    env += [e for e in container.env if e.partition("=")[0] not in keys]
    entrypoint, cmd = user.entrypoint, user.cmd
    if not entrypoint:
        if not cmd:
            cmd = container.cmd
        if entrypoint is None:
            entrypoint = container.entrypoint
    return user._replace(
        user=user.user or container.user,
        exposed_ports=(
            *user.exposed_ports,
            *(p for p in container.exposed_ports if p not in user.exposed_ports),
        ),
        env=tuple(env) if user.env else container.env,
        labels={**dict(container.labels), **dict(user.labels)},
        entrypoint=entrypoint,
        cmd=cmd,
        healthcheck=user.healthcheck or container.healthcheck,
        working_dir=user.working_dir or container.working_dir,
        volumes=(*user.volumes, *(v for v in container.volumes if v not in user.volumes)),
        stop_signal=user.stop_signal or container.stop_signal,
    )


def commit_config(
    container_config: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    changes: Sequence[str] = (),
) -> ContainerConfig:
    """The config of a committed image, as dockerd makes it: ``overrides`` (the request's
    body) or else the container's ``Config``, with the ``--change`` instructions applied,
    then whatever is still unset taken from the container's ``Config``."""
    from moorage.engine.changes import apply_changes

    container = _image_config(container_config, "container config")
    user = container if overrides is None else _image_config(overrides, "config")
    changed = apply_changes(user, changes)
    verbs = {c.strip().partition(" ")[0].upper() for c in changes}
    if "ENTRYPOINT" in verbs and "CMD" not in verbs:
        changed = changed._replace(cmd=None)  # a Dockerfile's ENTRYPOINT resets CMD
    return _merge(changed, container)


def commit_container(
    images: Any,
    *,
    key: str,
    image_id: str,
    config: ContainerConfig,
    created_by: str = "",
    comment: str = "",
    author: str = "",
    repo: str | None = None,
    tag: str | None = None,
    frozen: contextlib.AbstractContextManager[object] | None = None,
) -> str:
    """``POST /commit``: the changes of snapshot ``key`` become a layer on top of image
    ``image_id``, with ``config``; returns the new image's id.

    ``frozen`` is held while the changes are read (the container paused): they are
    spooled to a private file first, so the container runs again before the layer is
    compressed and stored. No changes at all make an image without a new layer (its
    history entry is an empty layer), as Docker does.
    """
    staging = os.path.join(images.root, "staging")
    os.makedirs(staging, mode=0o700, exist_ok=True)
    with tempfile.TemporaryFile(dir=staging) as spool:
        with frozen if frozen is not None else contextlib.nullcontext():
            stats = snapshot_diff(images.snapshots, key, spool)
        spool.seek(0)
        empty = stats.files == 0 and stats.whiteouts == 0
        image: str = images.commit_layer(
            image_id,
            None if empty else spool,
            config=config,
            created_by=created_by,
            comment=comment,
            author=author,
            repo=repo,
            tag=tag,
        )
        return image
