"""Writing layers: the changes a container or a build step made, or a whole tree, as tar.

Three producers, one tar writer:

- :func:`write_diff` with ``lower=None`` reads an overlayfs upper directory: a 0:0
  character device (overlayfs's whiteout) becomes a ``.wh.<name>`` entry, a directory
  with ``trusted.overlay.opaque=y`` (``user.overlay.opaque`` for a ``userxattr``
  mount) is followed by a ``.wh..wh..opq`` entry, the rest goes in as it is. Only
  root (CAP_SYS_ADMIN) can see ``trusted.*`` attributes, so only root can read the
  upper directory of an ordinary overlay mount correctly;
- :func:`write_diff` with ``lower`` compares two trees (the copying snapshotter):
  entries added or changed in ``upper`` go in, with their parent directories, and
  every entry ``upper`` lost becomes a ``.wh.<name>``. Changed means a different
  type, mode, owner, size, mtime, symlink target, device number or extended
  attributes, or, for regular files alike in all of those, different content;
- :func:`tar_directory` puts a whole tree in one layer (``moor import`` of a root
  file system, the builder's base).

The output is reproducible: the same tree gives the same bytes. Entries come in
depth-first order with each directory's names sorted bytewise (parents before
children; a whiteout sorts by its ``.wh.`` name), except that an opaque marker comes
right after its directory, before the directory's other entries; PAX format; owners
as numbers only (no user or group names); mtimes in whole seconds, clamped to
``source_date_epoch`` when given; no atime or ctime; a regular file met again through
another hard link is written as a link to the first path. The root directory itself
is not an entry. Extended attributes travel under the policy of
:func:`moorage.store.archive_apply.keep_xattr`. Whiteout entries are empty regular
files with mode 0, owner 0:0 and mtime 0.

The trees are read without ever following a symlink: every lookup is
``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` from a descriptor of the tree's
root, so a container that swaps a directory for a symlink while its upper directory
is being read gets an error (:class:`Conflict`), never a host file into the layer.
An upper directory written by overlayfs with ``redirect_dir`` or ``metacopy`` cannot
be exported by copying it and is refused (:class:`NotSupported`); the snapshotter
mounts without them.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Final, cast

from moorage.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound, NotSupported
from moorage.store.archive_apply import (
    OPAQUE_MARKER,
    PAX_XATTR_PREFIX,
    WHITEOUT_PREFIX,
    keep_xattr,
)
from moorage.sys import fsops, libc

__all__ = ["DiffStats", "tar_directory", "write_diff"]

log = logging.getLogger(__name__)

_CHUNK: Final = 1 << 20
_BENEATH: Final = libc.RESOLVE_BENEATH | libc.RESOLVE_NO_SYMLINKS | libc.RESOLVE_NO_MAGICLINKS
# overlayfs keeps its metadata under trusted.overlay.*, or user.overlay.* when mounted
# with userxattr (unprivileged). Reading trusted.* needs CAP_SYS_ADMIN.
_OVERLAY_PREFIXES: Final = ("trusted.overlay.", "user.overlay.")
_OVERLAY_OPAQUE: Final = tuple(p + "opaque" for p in _OVERLAY_PREFIXES)
# features whose upper directories do not hold whole files or directories
_OVERLAY_PARTIAL: Final = tuple(
    p + feature for p in _OVERLAY_PREFIXES for feature in ("redirect", "metacopy")
)

_Listing = list[tuple[str, os.stat_result]]


@dataclass(frozen=True)
class DiffStats:
    """What a layer writer wrote: entries (whiteouts aside), file bytes, whiteouts."""

    files: int
    bytes: int
    whiteouts: int


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class _Tree:
    """A directory tree read through descriptors, never through a symlink."""

    def __init__(self, root: str) -> None:
        self.root = root
        try:
            self.fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise NotFound(f"no such directory: {root}") from exc
        except NotADirectoryError as exc:
            raise InvalidArgument(f"not a directory: {root}") from exc

    def close(self) -> None:
        os.close(self.fd)

    def where(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def open(self, rel: str, flags: int) -> int:
        return libc.openat2(self.fd, rel or ".", flags, _BENEATH)

    def listdir(self, rel: str) -> _Listing:
        fd = self.open(rel, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with os.scandir(fd) as it:
                entries = [(e.name, e.stat(follow_symlinks=False)) for e in it]
        finally:
            os.close(fd)
        entries.sort(key=lambda e: os.fsencode(e[0]))
        return entries

    def open_file(self, rel: str, listed: os.stat_result) -> tuple[int, os.stat_result]:
        """A read descriptor of the regular file ``rel``, with its fstat."""
        # O_NONBLOCK: should a fifo have taken the file's place, do not hang on it.
        fd = self.open(rel, os.O_RDONLY | os.O_NONBLOCK)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_ino != listed.st_ino:
            os.close(fd)
            raise OSError(errno.ESTALE, "replaced while being read", rel)
        return fd, st

    def readlink(self, rel: str) -> str:
        parent, _, name = rel.rpartition("/")
        fd = self.open(parent, os.O_PATH | os.O_DIRECTORY)
        try:
            return os.readlink(name, dir_fd=fd)
        finally:
            os.close(fd)


def _xattrs(fd: int) -> dict[str, bytes]:
    """Every extended attribute of an open file or directory the caller can read."""
    try:
        names = fsops.flistxattr(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    found: dict[str, bytes] = {}
    for name in names:
        value = fsops.fgetxattr(fd, name)
        if value is not None:
            found[name] = value
    return found


def _kept(xattrs: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in xattrs.items() if keep_xattr(k)}


def _same_content(a: int, b: int) -> bool:
    while True:
        x = os.read(a, _CHUNK)
        y = os.read(b, _CHUNK)
        if x != y:
            return False
        if not x:
            return True


class _TarWriter(tarfile.TarFile):
    copybufsize: int | None  # set by TarFile.__init__; typeshed leaves it out


class _Sink:
    """``out`` with the ``tell`` tarfile's plain write mode asks for, counted here so
    that ``out`` may be a pipe or a compressor. Why not tarfile's stream mode: it
    gathers output in one bytes object that it copies on every write, which was most
    of the cost of a layer of many small files."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset


class _Writer:
    """The tar side: entries in, reproducible PAX out."""

    def __init__(self, out: BinaryIO, source_date_epoch: int | None) -> None:
        # Stream mode: ``out`` need not be seekable (a pipe, a compressor). Closed by close().
        self.tar = _TarWriter(
            fileobj=cast(BinaryIO, _Sink(out)),
            mode="w",
            format=tarfile.PAX_FORMAT,
            encoding="utf-8",
        )
        self.tar.copybufsize = _CHUNK
        self.sde = source_date_epoch
        self.links: dict[tuple[int, int], str] = {}
        self.files = 0
        self.bytes = 0
        self.whiteouts = 0

    def close(self) -> DiffStats:
        self.tar.close()
        return DiffStats(files=self.files, bytes=self.bytes, whiteouts=self.whiteouts)

    def _info(self, rel: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
        info = tarfile.TarInfo(rel)
        info.type = kind
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid = st.st_uid
        info.gid = st.st_gid
        info.uname = info.gname = ""
        mtime = st.st_mtime_ns // 1_000_000_000
        info.mtime = mtime if self.sde is None else min(mtime, self.sde)
        return info

    @staticmethod
    def _pax_xattrs(info: tarfile.TarInfo, xattrs: dict[str, bytes]) -> None:
        # Binary values (file capabilities) go through tarfile as surrogate escapes;
        # it then marks the header hdrcharset=BINARY and writes the bytes unchanged.
        info.pax_headers = {
            PAX_XATTR_PREFIX + key: xattrs[key].decode("utf-8", "surrogateescape")
            for key in sorted(xattrs)
        }

    def directory(self, rel: str, st: os.stat_result, xattrs: dict[str, bytes]) -> None:
        info = self._info(rel, st, tarfile.DIRTYPE)
        self._pax_xattrs(info, xattrs)
        self.tar.addfile(info)
        self.files += 1

    def regular(self, rel: str, st: os.stat_result, fd: int, xattrs: dict[str, bytes]) -> None:
        key = (st.st_dev, st.st_ino)
        first = self.links.get(key) if st.st_nlink > 1 else None
        if first is not None:
            info = self._info(rel, st, tarfile.LNKTYPE)
            info.linkname = first
            self.tar.addfile(info)
            self.files += 1
            return
        if st.st_nlink > 1:
            self.links[key] = rel
        info = self._info(rel, st, tarfile.REGTYPE)
        info.size = st.st_size
        self._pax_xattrs(info, xattrs)
        with io.FileIO(fd, "rb", closefd=False) as data:
            self.tar.addfile(info, data)
        self.files += 1
        self.bytes += st.st_size

    def symlink(self, rel: str, st: os.stat_result, target: str) -> None:
        info = self._info(rel, st, tarfile.SYMTYPE)
        info.linkname = target
        self.tar.addfile(info)
        self.files += 1

    def special(self, rel: str, st: os.stat_result) -> None:
        if stat.S_ISFIFO(st.st_mode):
            info = self._info(rel, st, tarfile.FIFOTYPE)
        else:
            kind = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            info = self._info(rel, st, kind)
            info.devmajor = os.major(st.st_rdev)
            info.devminor = os.minor(st.st_rdev)
        self.tar.addfile(info)
        self.files += 1

    def whiteout(self, parent: str, name: str) -> None:
        info = tarfile.TarInfo(_join(parent, name))
        info.mode = 0
        info.uname = info.gname = ""
        self.tar.addfile(info)
        self.whiteouts += 1


@dataclass
class _Frame:
    """One directory being walked: its merged listing and whether its entry is out."""

    rel: str
    st: os.stat_result | None
    items: Iterator[tuple[str, os.stat_result | None, os.stat_result | None]]
    compare: bool
    written: bool = False


@dataclass
class _Walk:
    """The depth-first walk shared by the three producers."""

    writer: _Writer
    upper: _Tree
    lower: _Tree | None
    overlay: bool
    stack: list[_Frame] = field(default_factory=list)

    def run(self) -> None:
        compare = self.lower is not None
        # The root is no entry of its own: its frame counts as written.
        self.stack.append(_Frame("", None, self._items("", compare), compare, written=True))
        while self.stack:
            frame = self.stack[-1]
            item = next(frame.items, None)
            if item is None:
                self.stack.pop()
                continue
            name, ust, lst = item
            rel = _join(frame.rel, name)
            try:
                self._one(frame, name, rel, ust, lst)
            except OSError as exc:
                raise self._error(rel, exc) from exc

    def _error(self, rel: str, exc: OSError) -> Exception:
        where = self.upper.where(rel)
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ESTALE, errno.EXDEV):
            return Conflict(f"{where}: changed while writing the layer ({reason})")
        return FailedPrecondition(f"cannot read {where}: {reason}")

    def _items(
        self, rel: str, compare: bool
    ) -> Iterator[tuple[str, os.stat_result | None, os.stat_result | None]]:
        upper = self.upper.listdir(rel)
        items: list[tuple[str, os.stat_result | None, os.stat_result | None]]
        if not compare or self.lower is None:
            items = [(name, st, None) for name, st in upper]
        else:
            items = list(_merge(upper, self.lower.listdir(rel)))
        # Entries go out sorted by the name they get in the tar: a whiteout by its
        # ".wh." name, not by the name of what it hides.
        items.sort(key=self._tar_name_key)
        return iter(items)

    def _tar_name_key(
        self, item: tuple[str, os.stat_result | None, os.stat_result | None]
    ) -> bytes:
        name, ust, _ = item
        if ust is None or (self.overlay and stat.S_ISCHR(ust.st_mode) and ust.st_rdev == 0):
            name = WHITEOUT_PREFIX + name
        return os.fsencode(name)

    def _one(
        self,
        frame: _Frame,
        name: str,
        rel: str,
        ust: os.stat_result | None,
        lst: os.stat_result | None,
    ) -> None:
        if ust is None:  # in lower only: deleted
            self._flush()
            self.writer.whiteout(frame.rel, WHITEOUT_PREFIX + name)
            return
        mode = ust.st_mode
        if self.overlay and stat.S_ISCHR(mode) and ust.st_rdev == 0:
            self._flush()
            self.writer.whiteout(frame.rel, WHITEOUT_PREFIX + name)
            return
        if name.startswith(WHITEOUT_PREFIX):
            raise InvalidArgument(
                f"{self.upper.where(rel)}: a name starting with {WHITEOUT_PREFIX} "
                "cannot be stored in a layer"
            )
        if stat.S_ISSOCK(mode):  # tar has no socket type; a socket is runtime state
            log.debug("leaving socket %s out of the layer", self.upper.where(rel))
            return
        comparable = (
            frame.compare
            and lst is not None
            and stat.S_IFMT(lst.st_mode) == stat.S_IFMT(mode)
            and self.lower is not None
        )
        if stat.S_ISDIR(mode):
            changed = not comparable or self._changed(rel, ust, lst)
            self.stack.append(_Frame(rel, ust, self._items(rel, comparable), comparable))
            if changed:
                self._flush()
            return
        if comparable and not self._changed(rel, ust, lst):
            return
        self._flush()
        self._write(rel, ust)

    def _flush(self) -> None:
        """Write the entries of the directories above the next entry, if not yet out."""
        for frame in self.stack:
            if frame.written:
                continue
            frame.written = True
            assert frame.st is not None
            fd = self.upper.open(frame.rel, os.O_RDONLY | os.O_DIRECTORY)
            try:
                xattrs = _xattrs(fd)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if st.st_ino != frame.st.st_ino:
                raise OSError(errno.ESTALE, "replaced while being read", frame.rel)
            self._check_overlay(frame.rel, xattrs)
            self.writer.directory(frame.rel, st, _kept(xattrs))
            if self.overlay and any(xattrs.get(key) == b"y" for key in _OVERLAY_OPAQUE):
                self.writer.whiteout(frame.rel, OPAQUE_MARKER)

    def _check_overlay(self, rel: str, xattrs: dict[str, bytes]) -> None:
        if self.overlay and any(key in xattrs for key in _OVERLAY_PARTIAL):
            raise NotSupported(
                f"{self.upper.where(rel)}: overlayfs redirect_dir/metacopy entries "
                "cannot be exported"
            )

    def _write(self, rel: str, st: os.stat_result) -> None:
        mode = st.st_mode
        if stat.S_ISREG(mode):
            fd, fst = self.upper.open_file(rel, st)
            try:
                xattrs = _xattrs(fd)
                self._check_overlay(rel, xattrs)
                self.writer.regular(rel, fst, fd, _kept(xattrs))
            except OSError as exc:
                # tarfile says a file that shrank under it with a bare OSError.
                if exc.errno is None:
                    raise OSError(errno.ESTALE, str(exc), rel) from exc
                raise
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            self.writer.symlink(rel, st, self.upper.readlink(rel))
        else:
            self.writer.special(rel, st)

    def _changed(self, rel: str, ust: os.stat_result, lst: os.stat_result | None) -> bool:
        assert lst is not None
        assert self.lower is not None
        if (ust.st_mode, ust.st_uid, ust.st_gid) != (lst.st_mode, lst.st_uid, lst.st_gid):
            return True
        if ust.st_mtime_ns != lst.st_mtime_ns:
            return True
        mode = ust.st_mode
        if stat.S_ISLNK(mode):
            return self.upper.readlink(rel) != self.lower.readlink(rel)
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            return ust.st_rdev != lst.st_rdev
        if stat.S_ISDIR(mode):
            flags = os.O_RDONLY | os.O_DIRECTORY
            ufd = self.upper.open(rel, flags)
            try:
                lfd = self.lower.open(rel, flags)
                try:
                    return _kept(_xattrs(ufd)) != _kept(_xattrs(lfd))
                finally:
                    os.close(lfd)
            finally:
                os.close(ufd)
        if not stat.S_ISREG(mode):
            return False  # fifos: nothing beyond the metadata above
        if ust.st_size != lst.st_size:
            return True
        if (ust.st_dev, ust.st_ino) == (lst.st_dev, lst.st_ino):
            return False
        ufd, _ = self.upper.open_file(rel, ust)
        try:
            lfd, _ = self.lower.open_file(rel, lst)
            try:
                if _kept(_xattrs(ufd)) != _kept(_xattrs(lfd)):
                    return True
                return not _same_content(ufd, lfd)
            finally:
                os.close(lfd)
        finally:
            os.close(ufd)


def _merge(
    upper: _Listing, lower: _Listing
) -> Iterator[tuple[str, os.stat_result | None, os.stat_result | None]]:
    """Two sorted listings as one, by name: (name, upper stat, lower stat)."""
    i = j = 0
    while i < len(upper) or j < len(lower):
        if j == len(lower) or (
            i < len(upper) and os.fsencode(upper[i][0]) < os.fsencode(lower[j][0])
        ):
            yield upper[i][0], upper[i][1], None
            i += 1
        elif i == len(upper) or os.fsencode(lower[j][0]) < os.fsencode(upper[i][0]):
            yield lower[j][0], None, lower[j][1]
            j += 1
        else:
            yield upper[i][0], upper[i][1], lower[j][1]
            i += 1
            j += 1


def _produce(
    out: BinaryIO, upper: str, lower: str | None, overlay: bool, source_date_epoch: int | None
) -> DiffStats:
    if source_date_epoch is not None and source_date_epoch < 0:
        raise InvalidArgument(f"invalid source_date_epoch: {source_date_epoch}")
    upper_tree = _Tree(upper)
    try:
        lower_tree = _Tree(lower) if lower is not None else None
        try:
            writer = _Writer(out, source_date_epoch)
            _Walk(writer, upper_tree, lower_tree, overlay).run()
            return writer.close()
        finally:
            if lower_tree is not None:
                lower_tree.close()
    finally:
        upper_tree.close()


def write_diff(
    out: BinaryIO,
    upper: str,
    *,
    lower: str | None = None,
    source_date_epoch: int | None = None,
) -> DiffStats:
    """Write to ``out`` an uncompressed tar of what ``upper`` changes.

    Without ``lower``, ``upper`` is an overlayfs upper directory (read it while the
    overlay is unmounted, or the container paused). With ``lower``, ``upper`` is a
    full copy of ``lower`` that was then modified. ``out`` is left open; wrap it in
    :func:`moorage.store.compression.compressor` to compress.
    """
    return _produce(out, upper, lower, lower is None, source_date_epoch)


def tar_directory(out: BinaryIO, root: str, *, source_date_epoch: int | None = None) -> DiffStats:
    """Write to ``out`` an uncompressed tar holding the whole tree under ``root``."""
    return _produce(out, root, None, False, source_date_epoch)
