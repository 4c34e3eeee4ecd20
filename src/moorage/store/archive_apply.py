"""Extracting a layer into a directory: the one place a layer tar touches the disk.

A layer comes from a registry, a ``docker load`` or a build step: it is not trusted.
:func:`apply_layer` writes one into ``target`` and nowhere else, whatever its entries
say. The rules it reads a layer by, which :mod:`moorage.store.archive_diff` writes by:

Paths
    Every entry name is split into components and cleaned lexically: a leading ``/``
    is dropped (absolute names are taken relative to the target, as tar and Docker
    do), ``.`` and empty components vanish, and a ``..`` that would climb above the
    target refuses the whole layer (:class:`InvalidArgument` ``layer entry escapes
    the target: ...``). The parent directory is then opened with
    ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` on a descriptor of the target,
    so a symlink in the way, planted by an earlier entry or already in the target,
    is followed as the container would see it, inside the target, and the last
    component is created relative to that descriptor without following anything
    (``O_NOFOLLOW | O_EXCL``, ``*at`` calls with ``AT_SYMLINK_NOFOLLOW``). No path is
    ever joined to the target and opened. A later entry with a name already present
    replaces it (a directory over a directory merges), by removing it first, never
    by writing through it.

Whiteouts (OCI image spec)
    ``.wh.<name>`` hides ``<name>`` of a lower layer; ``.wh..wh..opq`` hides every
    lower entry of its directory. ``whiteouts="delete"``, for a target that is a full
    copy of the parent layers, removes them; ``"overlay"``, for a target that is an
    overlayfs upper directory, writes what overlayfs reads: a 0:0 character device,
    and ``trusted.overlay.opaque=y``. A whiteout never hides an entry of its own layer,
    wherever it sits in the archive: the extractor remembers the paths this layer
    wrote, so an opaque marker that comes after its siblings still keeps them.
    Whiteout entries themselves are never extracted, nor is aufs bookkeeping
    (``.wh..wh.*`` at the top); a ``.wh.`` name used as a directory is refused.

Owners, modes, times
    uid/gid as numbers when ``same_owner`` (needs root for other owners), the mode
    after the owner (chown clears set-id bits), mtime last; directories get their
    mode and mtime after all entries, deepest first, so extracting children does not
    undo them and a read-only directory can still be filled.

Set-id files, file capabilities, device nodes
    Images legitimately carry setuid binaries (``passwd``, ``su``), file capabilities
    (``ping``) and sometimes device nodes. They are kept only when the target is
    private: some directory above it is closed to other users (the store keeps its
    snapshots under a 0700 root directory), so no host user can run or open them;
    inside a container the runtime's device cgroup, capability set and no_new_privs
    decide. Extracting into a directory host users can reach strips setuid/setgid
    from files, drops ``security.capability`` and skips device nodes, with a warning.
    Device nodes also need root; without it they are skipped. Fifos are always made.

Extended attributes
    From PAX ``SCHILY.xattr.*`` records, only ``user.*`` (except ``user.overlay.*``,
    which overlayfs mounted with ``userxattr`` would obey) and
    ``security.capability``. ``trusted.*`` is refused, ``trusted.overlay.*`` above all
    (an archive must not forge overlayfs redirects, opaque dirs or metacopy files),
    as are ``security.selinux`` and friends (labels are the runtime's business) and
    ``system.*`` ACLs. They are set on regular files and directories only (Linux
    allows no ``user.*`` attribute on a symlink or a device node). A file system
    without xattr support gets a warning, not a failure.

Errors
    A stream that is not a tar: :class:`InvalidArgument` ``not a tar archive: ...``;
    one that ends inside an entry or a header: ``layer is truncated: <entry>``; a
    corrupt header mid-way: ``layer is corrupt: ...``. Entries the file system cannot
    take (a name too long, a file where a directory is needed) are
    :class:`InvalidArgument` naming the entry.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Final, Literal

from moorage.errors import (
    FailedPrecondition,
    InvalidArgument,
    MoorageError,
    NotFound,
    PermissionDenied,
)
from moorage.sys import fsops, libc

__all__ = [
    "OPAQUE_MARKER",
    "OVERLAY_OPAQUE_XATTR",
    "PAX_XATTR_PREFIX",
    "WHITEOUT_PREFIX",
    "ApplyStats",
    "Whiteouts",
    "apply_layer",
    "copy_tree_entries",
    "extract_files",
    "is_private",
    "keep_xattr",
    "split_entry_name",
]

log = logging.getLogger(__name__)

Whiteouts = Literal["delete", "overlay"]

WHITEOUT_PREFIX: Final = ".wh."
OPAQUE_MARKER: Final = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR: Final = "trusted.overlay.opaque"
PAX_XATTR_PREFIX: Final = "SCHILY.xattr."
CAPABILITY_XATTR: Final = "security.capability"
_AUFS_META: Final = WHITEOUT_PREFIX + WHITEOUT_PREFIX

_IN_ROOT: Final = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS
_CHUNK: Final = 1 << 20
# tarfile's stream mode keeps what it read ahead in one bytes object and copies the
# rest of it each time it hands out a header: a large read-ahead made every entry cost
# a copy of up to that much. File data still comes in _CHUNK reads.
_TAR_BUFSIZE: Final = 64 << 10
_SETID: Final = stat.S_ISUID | stat.S_ISGID
# errnos that say the archive asked for something impossible rather than that the
# host failed (no space, I/O error, read-only file system).
_INPUT_ERRNOS: Final = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.EEXIST,
        errno.ENAMETOOLONG,
        errno.EINVAL,
        errno.EMLINK,
        errno.ENOTEMPTY,
        errno.EXDEV,
    }
)
_NO_XATTR_ERRNOS: Final = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM})


def keep_xattr(key: str) -> bool:
    """Whether an extended attribute may travel in a layer (both directions)."""
    if key == CAPABILITY_XATTR:
        return True
    return key.startswith("user.") and not key.startswith("user.overlay.")


def split_entry_name(name: str) -> list[str]:
    """The components of an entry name, relative to the target, cleaned lexically.

    ``/etc/passwd`` and ``./etc//passwd`` give ``["etc", "passwd"]``; ``a/../b`` gives
    ``["b"]``; the root (``.``, ``/``) gives ``[]``. A ``..`` that would leave the
    target raises :class:`InvalidArgument`; so does a NUL byte.
    """
    if "\x00" in name:
        raise InvalidArgument(f"layer entry name contains a NUL byte: {name!r}")
    parts: list[str] = []
    for component in name.split("/"):
        if component in ("", "."):
            continue
        if component == "..":
            if not parts:
                raise InvalidArgument(f"layer entry escapes the target: {name}")
            parts.pop()
        else:
            parts.append(component)
    return parts


def is_private(path: str) -> bool:
    """Whether users other than root (and the caller) cannot reach ``path``.

    True when some directory strictly above it, owned by root or the caller, denies
    other users search permission (group search allowed only for group 0).
    """
    euid = os.geteuid()
    current = os.path.dirname(os.path.realpath(path))
    while True:
        st = os.stat(current)
        mode = st.st_mode
        if (
            st.st_uid in (0, euid)
            and not mode & stat.S_IXOTH
            and (not mode & stat.S_IXGRP or st.st_gid == 0)
        ):
            return True
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent


class LinkBelowLayer(InvalidArgument):
    """A hardlink whose target is not in the layer, extracted into a bare upper dir.

    Legitimate when the target comes from a lower layer: the caller can extract
    the layer through the mounted overlay instead, where the kernel copies the
    target up.
    """


@dataclass(frozen=True)
class ApplyStats:
    """What :func:`apply_layer` wrote: entries made (whiteouts excluded), file bytes."""

    files: int
    bytes: int


class _Member(tarfile.TarInfo):
    """A TarInfo that tells its reader why the member list ended."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> _Member:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.HeaderError as exc:
            # tarfile ends the archive quietly on a bad or short header after the
            # first one; keep the reason so a cut or corrupt layer is not taken
            # for a shorter one.
            if isinstance(tarfile_, _TarReader):
                tarfile_.stopped_by = exc
            raise


class _TarReader(tarfile.TarFile):
    tarinfo = _Member
    members: list[tarfile.TarInfo]  # set by TarFile.__init__; typeshed leaves it out
    stopped_by: tarfile.HeaderError | None = None


# How tarfile says an archive ended well: end-of-archive zero blocks, or the end of
# the stream exactly at a header boundary (accepted, as Go's archive/tar does).
_CLEAN_ENDS: Final = ("EOFHeaderError", "EmptyHeaderError")


def _mtime_ns(member: tarfile.TarInfo) -> int:
    mtime = member.mtime
    if isinstance(mtime, int):
        return mtime * 1_000_000_000
    return int(mtime * 1_000_000_000)


def _translate(name: str, exc: OSError) -> MoorageError:
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    if exc.errno in _INPUT_ERRNOS:
        return InvalidArgument(f"layer entry {name}: {reason}")
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PermissionDenied(f"cannot extract {name}: {reason}")
    return FailedPrecondition(f"cannot extract {name}: {reason}")


@dataclass
class _Extractor:
    root_fd: int
    whiteouts: Whiteouts
    same_owner: bool
    private: bool
    is_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    # Paths (components joined by "/") this layer wrote, and all their ancestors:
    # what a whiteout or an opaque marker of the same layer must leave alone.
    touched: set[str] = field(default_factory=set)
    # Device nodes not made (no root, or a public target): hardlinks to them follow suit.
    skipped: set[str] = field(default_factory=set)
    # directory -> (mode, mtime ns), applied once every entry is in
    dirs: dict[str, tuple[int, int]] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    last: str = ""
    warned: set[str] = field(default_factory=set)

    # --- the archive ------------------------------------------------------------

    def run(self, tar: _TarReader) -> None:
        while True:
            try:
                member = tar.next()
            except tarfile.ReadError as exc:
                raise self._broken(str(exc)) from exc
            if member is None:
                break
            self.last = member.name
            self.entry(tar, member)
            # Stream mode appends every member to this list; a layer may have 10^5 or more.
            tar.members.clear()
        stop = tar.stopped_by
        if stop is not None and type(stop).__name__ not in _CLEAN_ENDS:
            raise self._broken(str(stop))  # a short header ("truncated header") or a bad one

    def _broken(self, reason: str) -> InvalidArgument:
        where = f"after {self.last}" if self.last else "at its start"
        if "end of data" in reason or "truncated" in reason:
            return InvalidArgument(f"layer is truncated: {where}")
        return InvalidArgument(f"layer is corrupt: {reason} {where}")

    def entry(self, tar: _TarReader, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = split_entry_name(name)
        if "\x00" in member.linkname:
            raise InvalidArgument(f"layer entry link name contains a NUL byte: {name!r}")
        if parts and parts[0].startswith(_AUFS_META):
            # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs) that old Docker layers carry
            log.debug("ignoring aufs metadata entry %s", name)
            self.skipped.add("/".join(parts))
            return
        if any(p.startswith(WHITEOUT_PREFIX) for p in parts[:-1]):
            raise InvalidArgument(f"layer entry {name}: a whiteout name used as a directory")
        try:
            if parts and parts[-1].startswith(WHITEOUT_PREFIX):
                self._whiteout(parts, name)
            elif not parts:
                if not member.isdir():
                    raise InvalidArgument(f"layer entry {name!r}: the root must be a directory")
                self._root(member)
                self.files += 1
            else:
                self._touch(parts)
                if self._materialize(tar, member, parts):
                    self.files += 1
        except OSError as exc:
            raise _translate(name, exc) from exc

    def _materialize(self, tar: _TarReader, member: tarfile.TarInfo, parts: list[str]) -> bool:
        """Make one entry that is not a whiteout; False when it is skipped."""
        if member.isreg():
            self._file(tar, member, parts)
        elif member.isdir():
            self._dir(member, parts)
        elif member.issym():
            self._symlink(member, parts)
        elif member.islnk():
            return self._hardlink(member, parts)
        elif member.ischr() or member.isblk():
            return self._device(member, parts)
        elif member.isfifo():
            self._special(member, parts, stat.S_IFIFO, 0)
        else:
            log.debug("skipping layer entry %s of tar type %r", member.name, member.type)
            return False
        return True

    def finish(self) -> None:
        """Directory modes and times, deepest first."""

        def depth(item: tuple[str, tuple[int, int]]) -> int:
            return item[0].count("/") + (1 if item[0] else 0)

        for rel, (mode, mtime_ns) in sorted(self.dirs.items(), key=depth, reverse=True):
            try:
                fd = libc.openat2(
                    self.root_fd,
                    rel or ".",
                    os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                    _IN_ROOT,
                )
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    continue  # replaced by a later entry or whited out
                raise _translate(rel, exc) from exc
            try:
                os.fchmod(fd, mode)
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            except OSError as exc:
                raise _translate(rel, exc) from exc
            finally:
                os.close(fd)

    # --- resolution -------------------------------------------------------------

    def _touch(self, parts: list[str]) -> None:
        for i in range(len(parts), 0, -1):
            key = "/".join(parts[:i])
            if key in self.touched:
                break  # its ancestors went in with it
            self.touched.add(key)

    def _open_dir(self, dparts: list[str], flags: int = os.O_PATH) -> int:
        return libc.openat2(self.root_fd, "/".join(dparts) or ".", flags | os.O_DIRECTORY, _IN_ROOT)

    def _make_dirs(self, dparts: list[str]) -> int:
        """An O_PATH descriptor of the directory ``dparts``, made (0755) where missing."""
        try:
            return self._open_dir(dparts)
        except FileNotFoundError:
            pass
        for i in range(1, len(dparts) + 1):
            try:
                os.close(self._open_dir(dparts[:i]))
                continue
            except FileNotFoundError:
                pass
            parent = self._open_dir(dparts[: i - 1])
            try:
                # EEXIST here means a dangling symlink is in the way: an error.
                os.mkdir(dparts[i - 1], 0o755, dir_fd=parent)
                fsops.lchmodat(parent, dparts[i - 1], 0o755)  # whatever the umask
            finally:
                os.close(parent)
        return self._open_dir(dparts)

    def _clear(self, dirfd: int, name: str, *, keep_dir: bool = False) -> str | None:
        """Remove ``name`` from ``dirfd`` unless it is a directory to keep.

        Returns what was there: ``"dir"`` (kept), ``"whiteout"``, ``"other"`` or None.
        """
        try:
            st = fsops.lstatat(dirfd, name)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return "dir"
            # By descriptors, never following a symlink, at any depth.
            fsops.remove_tree(dirfd, name)
            return "other"
        os.unlink(name, dir_fd=dirfd)
        is_whiteout = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        return "whiteout" if is_whiteout else "other"

    # --- metadata ---------------------------------------------------------------

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning(message, *args)

    def _chown_fd(self, fd: int, member: tarfile.TarInfo) -> None:
        if not self.same_owner:
            return
        try:
            os.fchown(fd, member.uid, member.gid)
        except PermissionError as exc:
            raise self._owner_denied(member) from exc

    def _chown_at(self, dirfd: int, name: str, member: tarfile.TarInfo) -> None:
        if not self.same_owner:
            return
        try:
            fsops.lchownat(dirfd, name, member.uid, member.gid)
        except PermissionError as exc:
            raise self._owner_denied(member) from exc

    @staticmethod
    def _owner_denied(member: tarfile.TarInfo) -> PermissionDenied:
        return PermissionDenied(
            f"cannot give {member.name} owner {member.uid}:{member.gid}: "
            "keeping owners needs root (same_owner=False extracts as the caller)"
        )

    def _xattrs(self, fd: int, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith(PAX_XATTR_PREFIX):
                continue
            attr = key[len(PAX_XATTR_PREFIX) :]
            if not keep_xattr(attr):
                log.debug("layer entry %s: not applying xattr %s", member.name, attr)
                continue
            if attr == CAPABILITY_XATTR and not self.private:
                self._warn_public()
                continue
            try:
                # tarfile hands binary values over as surrogate-escaped text.
                fsops.fsetxattr(fd, attr, value.encode("utf-8", "surrogateescape"))
            except OSError as exc:
                if exc.errno not in _NO_XATTR_ERRNOS:
                    raise
                self._warn_once(
                    "xattr:" + attr.partition(".")[0],
                    "layer entry %s: cannot set xattr %s (%s); it is left out",
                    member.name,
                    attr,
                    os.strerror(exc.errno or 0),
                )

    def _warn_public(self) -> None:
        self._warn_once(
            "public",
            "extracting a layer where other users can reach it: setuid/setgid bits, "
            "file capabilities and device nodes are left out",
        )

    def _times_at(self, dirfd: int, name: str, member: tarfile.TarInfo) -> None:
        ns = _mtime_ns(member)
        fsops.lutimensat(dirfd, name, ns, ns)

    # --- entry types ------------------------------------------------------------

    def _file(self, tar: _TarReader, member: tarfile.TarInfo, parts: list[str]) -> None:
        parent = self._make_dirs(parts[:-1])
        try:
            self._clear(parent, parts[-1])
            fd = os.open(
                parts[-1],
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=parent,
            )
            try:
                self.bytes += self._copy(tar, member, fd)
                self._chown_fd(fd, member)
                # After chown (which clears them) and after the data (writes drop
                # security.capability): the xattrs, then the mode with its set-id bits.
                self._xattrs(fd, member)
                mode = member.mode & 0o7777
                if not self.private and mode & _SETID:
                    self._warn_public()
                    mode &= ~_SETID
                os.fchmod(fd, mode)
                ns = _mtime_ns(member)
                os.utime(fd, ns=(ns, ns))
            finally:
                os.close(fd)
        finally:
            os.close(parent)

    def _copy(self, tar: _TarReader, member: tarfile.TarInfo, fd: int) -> int:
        source = tar.extractfile(member)
        remaining = member.size
        copied = 0
        try:
            while remaining > 0 and source is not None:
                chunk = source.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                copied += len(chunk)
                remaining -= len(chunk)
        except tarfile.ReadError as exc:
            raise InvalidArgument(f"layer is truncated: {member.name}") from exc
        if copied != member.size:
            raise InvalidArgument(f"layer is truncated: {member.name}")
        return copied

    def _dir(self, member: tarfile.TarInfo, parts: list[str]) -> None:
        parent = self._make_dirs(parts[:-1])
        try:
            was = self._clear(parent, parts[-1], keep_dir=True)
            if was != "dir":
                os.mkdir(parts[-1], 0o700, dir_fd=parent)
            fd = os.open(
                parts[-1],
                os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                dir_fd=parent,
            )
            try:
                self._chown_fd(fd, member)
                self._xattrs(fd, member)
                if was == "whiteout" and self.whiteouts == "overlay":
                    # A directory made over a whiteout must not show the lower one
                    # through it: overlayfs itself makes such directories opaque.
                    fsops.fsetxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)
        finally:
            os.close(parent)
        self.dirs["/".join(parts)] = (member.mode & 0o7777, _mtime_ns(member))

    def _root(self, member: tarfile.TarInfo) -> None:
        self._chown_fd(self.root_fd, member)
        self._xattrs(self.root_fd, member)
        self.dirs[""] = (member.mode & 0o7777, _mtime_ns(member))

    def _symlink(self, member: tarfile.TarInfo, parts: list[str]) -> None:
        parent = self._make_dirs(parts[:-1])
        try:
            self._clear(parent, parts[-1])
            # The target is stored as is: it is only ever resolved inside the root.
            os.symlink(member.linkname, parts[-1], dir_fd=parent)
            self._chown_at(parent, parts[-1], member)
            self._times_at(parent, parts[-1], member)
        finally:
            os.close(parent)

    def _hardlink(self, member: tarfile.TarInfo, parts: list[str]) -> bool:
        link_parts = split_entry_name(member.linkname)
        if not link_parts:
            raise InvalidArgument(f"layer entry {member.name}: hardlink to the root")
        if link_parts == parts:
            return False  # a link to itself: nothing to do; clearing would lose the file
        if "/".join(link_parts) in self.skipped:
            self.skipped.add("/".join(parts))
            return False
        try:
            source_dir = self._open_dir(link_parts[:-1])
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise self._no_link_target(member) from exc
        try:
            try:
                st = fsops.lstatat(source_dir, link_parts[-1])
            except FileNotFoundError as exc:
                raise self._no_link_target(member) from exc
            if stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(
                    f"layer entry {member.name}: hardlink to a directory: {member.linkname}"
                )
            parent = self._make_dirs(parts[:-1])
            try:
                self._clear(parent, parts[-1])
                # linkat without AT_SYMLINK_FOLLOW: a symlink source is linked itself,
                # so a link can never reach a file through one.
                os.link(
                    link_parts[-1],
                    parts[-1],
                    src_dir_fd=source_dir,
                    dst_dir_fd=parent,
                    follow_symlinks=False,
                )
            finally:
                os.close(parent)
        finally:
            os.close(source_dir)
        return True

    def _no_link_target(self, member: tarfile.TarInfo) -> InvalidArgument:
        if self.whiteouts == "overlay":
            # An upper dir holds only this layer: the target may be in a lower one.
            return LinkBelowLayer(
                f"layer entry {member.name}: hardlink target not found in this layer: "
                f"{member.linkname}"
            )
        return InvalidArgument(
            f"layer entry {member.name}: hardlink target not found: {member.linkname}"
        )

    def _device(self, member: tarfile.TarInfo, parts: list[str]) -> bool:
        if not self.is_root or not self.private:
            if self.is_root:
                self._warn_public()
            log.debug("skipping device node %s", member.name)
            self.skipped.add("/".join(parts))
            return False
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        self._special(member, parts, kind, os.makedev(member.devmajor, member.devminor))
        return True

    def _special(self, member: tarfile.TarInfo, parts: list[str], kind: int, device: int) -> None:
        parent = self._make_dirs(parts[:-1])
        try:
            self._clear(parent, parts[-1])
            fsops.mknodat(parent, parts[-1], kind | 0o600, device)
            self._chown_at(parent, parts[-1], member)
            fsops.lchmodat(parent, parts[-1], member.mode & 0o7777 & ~_SETID)
            self._times_at(parent, parts[-1], member)
        finally:
            os.close(parent)

    # --- whiteouts --------------------------------------------------------------

    def _whiteout(self, parts: list[str], name: str) -> None:
        base, dparts = parts[-1], parts[:-1]
        if base == OPAQUE_MARKER:
            self._opaque(dparts, create=True)
            return
        if base.startswith(_AUFS_META):
            log.debug("ignoring aufs metadata entry %s", name)
            return
        victim = base[len(WHITEOUT_PREFIX) :]
        if victim in ("", ".", ".."):
            raise InvalidArgument(f"invalid whiteout entry: {name}")
        vparts = [*dparts, victim]
        if "/".join(vparts) in self.touched:
            # Entries of this layer stay; if it is a directory this layer filled,
            # what lower layers had in it goes, as with an opaque marker.
            self._opaque(vparts, create=False)
            return
        if self.whiteouts == "delete":
            try:
                parent = self._open_dir(dparts)
            except (FileNotFoundError, NotADirectoryError):
                return  # nothing there to hide
            try:
                self._clear(parent, victim)
            finally:
                os.close(parent)
            return
        self._touch(dparts)
        parent = self._make_dirs(dparts)
        try:
            self._clear(parent, victim)
            fsops.mknodat(parent, victim, stat.S_IFCHR, 0)
        finally:
            os.close(parent)

    def _opaque(self, dparts: list[str], *, create: bool) -> None:
        if create:
            self._touch(dparts)
            os.close(self._make_dirs(dparts))
        flags = os.O_RDONLY if create else os.O_RDONLY | os.O_NOFOLLOW
        try:
            fd = self._open_dir(dparts, flags)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return  # not a directory: nothing below it to hide
            raise
        try:
            if self.whiteouts == "overlay":
                fsops.fsetxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
        finally:
            os.close(fd)
        if self.whiteouts == "delete":
            self._prune(dparts)

    def _prune(self, dparts: list[str]) -> None:
        """Remove everything under ``dparts`` that this layer did not write."""
        stack = [dparts]
        while stack:
            current = stack.pop()
            rel = "/".join(current)
            try:
                fd = self._open_dir(current, os.O_RDONLY)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                with os.scandir(fd) as it:
                    children = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
                for child, is_dir in children:
                    child_rel = f"{rel}/{child}" if rel else child
                    if child_rel not in self.touched:
                        self._clear(fd, child)
                    elif is_dir:
                        stack.append([*current, child])
            finally:
                os.close(fd)


def apply_layer(
    tar_stream: BinaryIO,
    target: str,
    *,
    whiteouts: Literal["delete", "overlay"] = "delete",
    same_owner: bool = True,
) -> ApplyStats:
    """Extract the uncompressed layer tar ``tar_stream`` into the directory ``target``.

    ``whiteouts="delete"`` when ``target`` holds a copy of the parent layers (the
    copying snapshotter), ``"overlay"`` when it is an overlayfs upper directory.
    ``same_owner`` keeps the archive's uid/gid (root only). Reads the stream once, in
    chunks (decompress with :func:`moorage.store.compression.open_decompressed` or
    :class:`~moorage.store.compression.LayerStream` first). Nothing is ever written
    outside ``target``; see the module docstring for the rules. On an error the
    target is left partly extracted: the caller discards it.
    """
    if whiteouts not in ("delete", "overlay"):
        raise InvalidArgument(f"invalid whiteout mode: {whiteouts!r}")
    try:
        root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NotFound(f"no such directory: {target}") from exc
    except NotADirectoryError as exc:
        raise InvalidArgument(f"not a directory: {target}") from exc
    try:
        extractor = _Extractor(root_fd, whiteouts, same_owner, private=is_private(target))
        try:
            tar = _TarReader.open(
                fileobj=tar_stream, mode="r|", bufsize=_TAR_BUFSIZE, encoding="utf-8"
            )
        except tarfile.ReadError as exc:
            raise InvalidArgument(f"not a tar archive: {exc}") from exc
        assert isinstance(tar, _TarReader)
        with tar:
            extractor.run(tar)
        extractor.finish()
        return ApplyStats(files=extractor.files, bytes=extractor.bytes)
    finally:
        os.close(root_fd)


@dataclass
class _FileExtractor(_Extractor):
    """Plain files into a directory (``docker cp``, a build's COPY): no whiteouts, so
    names that would be one are refused, with Docker's overwrite checks on demand and
    one owner for everything when asked."""

    no_overwrite_dir_non_dir: bool = False
    owner: tuple[int, int] | None = None

    def entry(self, tar: Any, member: tarfile.TarInfo) -> None:
        parts = split_entry_name(member.name)
        if any(p.startswith(WHITEOUT_PREFIX) for p in parts):
            raise InvalidArgument(
                f"cannot copy {member.name}: names starting with {WHITEOUT_PREFIX} are reserved"
            )
        if parts and self.no_overwrite_dir_non_dir:
            self._check_overwrite(parts, member)
        if self.owner is not None:
            member.uid, member.gid = self.owner
        super().entry(tar, member)

    def _check_overwrite(self, parts: list[str], member: tarfile.TarInfo) -> None:
        try:
            parent = libc.openat2(
                self.root_fd, "/".join(parts[:-1]) or ".", os.O_PATH | os.O_DIRECTORY, _IN_ROOT
            )
        except OSError:
            return
        try:
            existing = fsops.lstatat(parent, parts[-1])
        except OSError:
            return
        finally:
            os.close(parent)
        path = "/".join(parts)
        if stat.S_ISDIR(existing.st_mode) and not member.isdir():
            raise InvalidArgument(f'cannot overwrite directory "{path}" with non-directory')
        if not stat.S_ISDIR(existing.st_mode) and member.isdir():
            raise InvalidArgument(f'cannot overwrite non-directory "{path}" with directory')


def extract_files(
    tar_stream: BinaryIO | IO[bytes],
    target_fd: int,
    *,
    owner: tuple[int, int] | None = None,
    no_overwrite_dir_non_dir: bool = False,
    private: bool = True,
) -> ApplyStats:
    """Extract the tar ``tar_stream`` into the open directory ``target_fd``, with the
    rules of :func:`apply_layer` (nothing written outside it, symlinks resolved inside
    it), but as files rather than a layer: whiteout names are refused. The archive's
    owners are kept unless ``owner`` (uid, gid) is given for everything."""
    extractor = _FileExtractor(
        target_fd,
        "delete",
        True,
        private,
        no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
        owner=owner,
    )
    try:
        tar = _TarReader.open(fileobj=tar_stream, mode="r|", bufsize=_TAR_BUFSIZE, encoding="utf-8")
    except tarfile.ReadError as exc:
        raise InvalidArgument(f"not a tar archive: {exc}") from exc
    with tar:
        extractor.run(tar)
    extractor.finish()
    return ApplyStats(files=extractor.files, bytes=extractor.bytes)


# --------------------------------------------------------------------------- tree copies


class _SourcedInfo(tarfile.TarInfo):
    """An entry of a tree copy: a tar header made from a host file, and that file."""

    __slots__ = ("source",)
    source: str


@dataclass
class _TreeCopier(_FileExtractor):
    """A build's COPY without a tar in between: entries are made from host files with
    every rule of :class:`_FileExtractor` (resolved inside the target, existing entries
    replaced as an extraction would), and file data goes from file to file in the
    kernel (sendfile)."""

    keep_xattrs: bool = False
    links: dict[tuple[int, int], str] = field(default_factory=dict)

    def member_of(self, source: str, target: str, mode: int | None) -> _SourcedInfo | None:
        st = os.lstat(source)
        member = _SourcedInfo(target)
        member.source = source
        member.mode = stat.S_IMODE(st.st_mode) if mode is None else mode
        member.uid, member.gid = st.st_uid, st.st_gid
        member.mtime = st.st_mtime_ns / 1_000_000_000
        if stat.S_ISREG(st.st_mode):
            first = self.links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
            if first is not None:
                member.type, member.linkname = tarfile.LNKTYPE, first
                return member
            if st.st_nlink > 1:
                self.links[st.st_dev, st.st_ino] = target
            member.type, member.size = tarfile.REGTYPE, st.st_size
        elif stat.S_ISDIR(st.st_mode):
            member.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(st.st_mode):
            member.type, member.linkname = tarfile.SYMTYPE, os.readlink(source)
        else:
            return None  # sockets, fifos and devices are not copied (Docker's COPY)
        if self.keep_xattrs and member.type != tarfile.SYMTYPE:
            self._read_xattrs(member)
        return member

    @staticmethod
    def _read_xattrs(member: _SourcedInfo) -> None:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(member.source, flags)
        headers: dict[str, str] = {}
        try:
            for key in fsops.flistxattr(fd):
                value = fsops.fgetxattr(fd, key)
                if value is not None and keep_xattr(key):
                    headers[PAX_XATTR_PREFIX + key] = value.decode("utf-8", "surrogateescape")
        finally:
            os.close(fd)
        member.pax_headers = headers

    def _copy(self, tar: Any, member: tarfile.TarInfo, fd: int) -> int:
        assert isinstance(member, _SourcedInfo)
        source = os.open(member.source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            copied = 0
            while copied < member.size:
                sent = os.sendfile(fd, source, None, min(member.size - copied, 1 << 30))
                if sent == 0:
                    break
                copied += sent
            if copied != member.size or os.read(source, 1):
                raise FailedPrecondition(f"{member.source}: changed while being copied")
        finally:
            os.close(source)
        return copied


def copy_tree_entries(
    entries: Iterable[tuple[str, str]],
    target_fd: int,
    *,
    owner: tuple[int, int] | None = None,
    mode: int | None = None,
    keep_xattrs: bool = False,
    private: bool = True,
) -> ApplyStats:
    """Copy host files into the open directory ``target_fd``: each ``(source, target)``
    pair puts the file, directory or symlink ``source`` (never followed) at ``target``,
    a path relative to the directory, which is resolved inside it. The rules are
    :func:`extract_files`'s, as if the entries had come in a tar: ``owner`` (uid, gid)
    and ``mode`` override the sources' for every entry; files hard-linked to each other
    stay linked; sockets, fifos and devices are left out; extended attributes are
    copied only with ``keep_xattrs``."""
    copier = _TreeCopier(target_fd, "delete", True, private, owner=owner, keep_xattrs=keep_xattrs)
    for source, target in entries:
        try:
            member = copier.member_of(source, target, mode)
        except OSError as exc:
            raise _translate(target, exc) from exc
        if member is not None:
            copier.entry(None, member)
    copier.finish()
    return ApplyStats(files=copier.files, bytes=copier.bytes)
