"""Mounts as data, and the one function that performs them.

Snapshotters describe a filesystem as a list of :class:`Mount` records and never mount
anything themselves; :func:`mount_all` is the only code in the store that calls mount(2)
(through ``moorage.sys``), and :func:`unmount` undoes it. :func:`mounted` is the usual
way to look inside a snapshot for a moment::

    with mounted(snapshotter.view("look", "sha256:abc")) as path:
        print(os.listdir(path))

Supported records:

- ``Mount("bind", "/src", ("rbind", "ro"))``: a (recursive) bind mount; ``ro`` and the
  other per-mount flags are applied by a remount, since a bind mount ignores them.
- ``Mount("overlay", "overlay", ("lowerdir=/a:/b", "upperdir=/u", "workdir=/w"))``:
  lower layers nearest first, as overlayfs takes them; without ``upperdir`` and
  ``workdir`` the overlay is read-only.
- any other type, mounted with its options as mount(2) data.

Paths inside overlay options are not escaped: they must not contain ``:`` or ``,``.

The overlay lowerdir limit. mount(2) takes at most one page of option data (4096 bytes
on most machines), about 50 layers at typical path lengths. When the data does not fit,
:func:`mount_all` uses the fd-based mount API with one ``lowerdir+`` parameter per layer
(Linux 6.8+; no limit on the total, and thread-safe because no working directory is
involved). On older kernels it falls back to mount(2) with every overlay path relative
to the directory the layers share, inside a thread whose working directory is private
(``moorage.sys.mounts.mount_in_dir``). Only if that is still too long is the mount
refused, with :class:`~moorage.errors.InvalidArgument`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import operator
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from moorage.errors import (
    FailedPrecondition,
    InvalidArgument,
    MoorageError,
    NotFound,
    NotSupported,
    PermissionDenied,
)
from moorage.sys import libc
from moorage.sys import mounts as sysmounts

__all__ = [
    "Mount",
    "fits_mount_data",
    "mount_all",
    "mounted",
    "overlay_options",
    "relative_overlay_data",
    "split_options",
    "unmount",
]


class Mount(NamedTuple):
    """One mount, as data: ``type`` ("bind", "overlay", ...), ``source`` and options."""

    type: str
    source: str
    options: tuple[str, ...] = ()


# option -> (flag, True to set / False to clear); everything else is filesystem data.
_FLAGS: dict[str, tuple[int, bool]] = {
    "ro": (libc.MS_RDONLY, True),
    "rw": (libc.MS_RDONLY, False),
    "nosuid": (libc.MS_NOSUID, True),
    "suid": (libc.MS_NOSUID, False),
    "nodev": (libc.MS_NODEV, True),
    "dev": (libc.MS_NODEV, False),
    "noexec": (libc.MS_NOEXEC, True),
    "exec": (libc.MS_NOEXEC, False),
    "noatime": (libc.MS_NOATIME, True),
    "atime": (libc.MS_NOATIME, False),
    "nodiratime": (libc.MS_NODIRATIME, True),
    "diratime": (libc.MS_NODIRATIME, False),
    "relatime": (libc.MS_RELATIME, True),
    "bind": (libc.MS_BIND, True),
    "rbind": (libc.MS_BIND | libc.MS_REC, True),
}

# mount flags -> the fd-based API's mount attributes (relatime is its default: 0).
_ATTRS: dict[int, int] = {
    libc.MS_RDONLY: sysmounts.MOUNT_ATTR_RDONLY,
    libc.MS_NOSUID: sysmounts.MOUNT_ATTR_NOSUID,
    libc.MS_NODEV: sysmounts.MOUNT_ATTR_NODEV,
    libc.MS_NOEXEC: sysmounts.MOUNT_ATTR_NOEXEC,
    libc.MS_NOATIME: sysmounts.MOUNT_ATTR_NOATIME,
    libc.MS_NODIRATIME: sysmounts.MOUNT_ATTR_NODIRATIME,
    libc.MS_RELATIME: 0,
}
_ATTR_FLAGS = functools.reduce(operator.or_, _ATTRS)

_OVERLAY_PATH_KEYS = ("lowerdir", "upperdir", "workdir")

# Stacked mounts a single unmount() will peel off before it gives up.
_MAX_STACK = 64


def overlay_options(
    lowers: Sequence[str],
    upper: str | None = None,
    work: str | None = None,
    extra: Sequence[str] = (),
) -> tuple[str, ...]:
    """The options of an overlay mount: ``lowers`` nearest first, then upper and work."""
    if not lowers:
        raise InvalidArgument("overlay: at least one lower directory is needed")
    if (upper is None) != (work is None):
        raise InvalidArgument("overlay: upperdir and workdir go together")
    for path in (*lowers, upper or "", work or ""):
        if ":" in path or "," in path:
            raise InvalidArgument(f"overlay: path must not contain ':' or ',': {path}")
    options = [f"lowerdir={':'.join(lowers)}"]
    if upper is not None and work is not None:
        options += [f"upperdir={upper}", f"workdir={work}"]
    options += extra
    return tuple(options)


def split_options(options: Sequence[str]) -> tuple[int, list[str]]:
    """Split mount options into mount(2) flags and the filesystem's data options."""
    flags = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            bit, on = _FLAGS[opt]
            flags = flags | bit if on else flags & ~bit
        elif not opt:
            raise InvalidArgument("empty mount option")
        else:
            data.append(opt)
    return flags, data


def fits_mount_data(data: str, page_size: int | None = None) -> bool:
    """Whether mount(2) can take ``data``: one page, including the terminating NUL."""
    limit = page_size if page_size is not None else os.sysconf("SC_PAGE_SIZE")
    return len(os.fsencode(data)) + 1 <= limit


def relative_overlay_data(data: Sequence[str]) -> tuple[str, str]:
    """Overlay data with its paths relative to the directory they share.

    Returns ``(directory, data)``; ``data`` is only valid with ``directory`` as the
    working directory. ``["lowerdir=/s/2/fs:/s/1/fs", "upperdir=/s/3/fs", ...]``
    becomes ``("/s", "lowerdir=2/fs:1/fs,upperdir=3/fs,...")``.
    """
    paths: list[str] = []
    for opt in data:
        key, sep, value = opt.partition("=")
        if sep and key in _OVERLAY_PATH_KEYS:
            paths += value.split(":") if key == "lowerdir" else [value]
    if not paths or not all(os.path.isabs(p) for p in paths):
        raise InvalidArgument("overlay: relative layout needs absolute layer paths")
    common = os.path.commonpath(paths)
    out: list[str] = []
    for opt in data:
        key, sep, value = opt.partition("=")
        if sep and key in _OVERLAY_PATH_KEYS:
            parts = [os.path.relpath(p, common) for p in value.split(":")]
            out.append(f"{key}={':'.join(parts)}")
        else:
            out.append(opt)
    return common, ",".join(out)


@functools.cache
def _lowerdir_append_supported() -> bool:
    # lowerdir+ resolves its path at fsconfig time, so "/" is a harmless probe.
    return sysmounts.fs_param_supported("overlay", "lowerdir+", "/")


def _error(exc: OSError, mount: Mount, target: str) -> MoorageError:
    what = f"mount {mount.type} {mount.source} on {target}: {exc.strerror}"
    if exc.errno == errno.ENOENT:
        return NotFound(what)
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PermissionDenied(what)
    return FailedPrecondition(what)


def _mount_bind(mount: Mount, flags: int, target: str) -> None:
    base = flags & (libc.MS_BIND | libc.MS_REC)
    libc.mount(mount.source, target, None, base or libc.MS_BIND)
    rest = flags & ~(libc.MS_BIND | libc.MS_REC)
    if rest:
        # A bind mount ignores every other flag until it is remounted.
        libc.mount(None, target, None, libc.MS_REMOUNT | libc.MS_BIND | rest)


def _mount_long_overlay(mount: Mount, flags: int, data: list[str], target: str) -> None:
    if _lowerdir_append_supported():
        params: list[tuple[str, str | None]] = [("source", mount.source)]
        for opt in data:
            key, sep, value = opt.partition("=")
            if key == "lowerdir":
                params += [("lowerdir+", layer) for layer in value.split(":")]
            else:
                params.append((key, value if sep else None))
        attrs = 0
        for bit, attr in _ATTRS.items():
            if flags & bit:
                attrs |= attr
        unknown = flags & ~_ATTR_FLAGS
        if unknown:
            raise NotSupported(f"mount overlay on {target}: mount flags {unknown:#x}")
        if flags & libc.MS_RDONLY:
            params.append(("ro", None))  # the superblock too, as mount(2) would make it
        sysmounts.fs_mount("overlay", target, params, attrs)
        return
    cwd, short = relative_overlay_data(data)
    if not fits_mount_data(short):
        layers = sum(opt.count(":") + 1 for opt in data if opt.startswith("lowerdir="))
        raise InvalidArgument(
            f"mount overlay on {target}: {layers} lower layers "
            "do not fit in one mount(2) call on this kernel (Linux 6.8 lifts the limit)"
        )
    sysmounts.mount_in_dir(cwd, mount.source, target, "overlay", flags, short)


def _mount_one(mount: Mount, target: str) -> None:
    flags, data = split_options(mount.options)
    try:
        if mount.type == "bind" or flags & libc.MS_BIND:
            _mount_bind(mount, flags, target)
            return
        joined = ",".join(data)
        if fits_mount_data(joined):
            libc.mount(mount.source, target, mount.type, flags, joined or None)
        elif mount.type == "overlay":
            _mount_long_overlay(mount, flags, data, target)
        else:
            raise InvalidArgument(
                f"mount {mount.type} on {target}: options longer than mount(2) takes"
            )
    except OSError as exc:
        raise _error(exc, mount, target) from exc


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Mount ``mounts`` on ``target`` in order, each on top of the one before.

    All or nothing: if one fails, those already mounted are unmounted again.
    """
    target = os.path.abspath(target)
    done = 0
    try:
        for mount in mounts:
            _mount_one(mount, target)
            done += 1
    except BaseException:
        for _ in range(done):
            with contextlib.suppress(OSError):
                libc.umount2(target, libc.MNT_DETACH | libc.UMOUNT_NOFOLLOW)
        raise


def unmount(target: str) -> None:
    """Detach every mount stacked on ``target``; nothing to do is not an error."""
    for _ in range(_MAX_STACK):
        try:
            libc.umount2(target, libc.MNT_DETACH | libc.UMOUNT_NOFOLLOW)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):  # not (or no longer) a mount point
                return
            raise FailedPrecondition(f"unmount {target}: {exc.strerror}") from exc
    raise FailedPrecondition(f"unmount {target}: more than {_MAX_STACK} stacked mounts")


@contextlib.contextmanager
def mounted(mounts: Sequence[Mount], *, dir: str | None = None) -> Iterator[str]:
    """Mount ``mounts`` on a new private directory (mode 0700, in ``dir`` or the temp dir)
    and yield its path; on exit unmount and remove it, whatever happened inside."""
    target = tempfile.mkdtemp(prefix="moorage-mount-", dir=dir)
    try:
        mount_all(mounts, target)
        try:
            yield target
        finally:
            unmount(target)
    except BaseException:
        # rmdir would fail on a directory that is still a mount point; leave it then.
        with contextlib.suppress(OSError):
            os.rmdir(target)
        raise
    os.rmdir(target)
