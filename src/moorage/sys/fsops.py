"""File system calls for working inside a tree whose contents are not trusted.

Every call here names its object as a directory descriptor plus one path component
and never follows a symlink in that last component: the caller resolves the directory
safely (``libc.openat2`` with ``RESOLVE_IN_ROOT``) and this module finishes the job
without a second lookup an attacker could redirect. Layer extraction and layer diffs
(``moorage.store``) are the users.

Most are the ``os`` functions with the arguments that give these semantics fixed, so
callers cannot forget ``follow_symlinks=False``; ``lchmodat`` is a real wrapper, for
``fchmodat2(AT_SYMLINK_NOFOLLOW)``, which Python 3.11 lacks. Like the ``os``
functions, every call raises ``OSError`` with the errno.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from typing import Final

__all__ = [
    "AT_SYMLINK_NOFOLLOW",
    "fgetxattr",
    "flistxattr",
    "fsetxattr",
    "lchmodat",
    "lchownat",
    "lstatat",
    "lutimensat",
    "mknodat",
    "remove_tree",
]

AT_SYMLINK_NOFOLLOW: Final = 0x100

# fchmodat2 has the same number on every architecture (the unified syscall table).
_SYS_FCHMODAT2: Final = 452

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long
_have_fchmodat2 = True


def _check_name(name: str) -> None:
    # One component only: a slash or ".." would make the kernel walk again.
    if not name or "/" in name or name in (".", ".."):
        raise OSError(errno.EINVAL, f"not a single path component: {name!r}", name)


def lstatat(dirfd: int, name: str) -> os.stat_result:
    """fstatat(AT_SYMLINK_NOFOLLOW): the entry ``name`` in ``dirfd`` itself."""
    _check_name(name)
    return os.stat(name, dir_fd=dirfd, follow_symlinks=False)


def mknodat(dirfd: int, name: str, mode: int, device: int = 0) -> None:
    """mknodat(2): a device node, fifo or overlayfs whiteout (char 0:0). Subject to umask."""
    _check_name(name)
    os.mknod(name, mode, device, dir_fd=dirfd)


def lchownat(dirfd: int, name: str, uid: int, gid: int) -> None:
    """fchownat(AT_SYMLINK_NOFOLLOW): a symlink gets the owner itself, its target never."""
    _check_name(name)
    os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)


def lutimensat(dirfd: int, name: str, atime_ns: int, mtime_ns: int) -> None:
    """utimensat(AT_SYMLINK_NOFOLLOW) with nanosecond times."""
    _check_name(name)
    os.utime(name, ns=(atime_ns, mtime_ns), dir_fd=dirfd, follow_symlinks=False)


def lchmodat(dirfd: int, name: str, mode: int) -> None:
    """Change the mode of ``name`` in ``dirfd`` without following it if it is a symlink.

    fchmodat2(AT_SYMLINK_NOFOLLOW) where the kernel has it (6.6+); before that, an
    O_PATH descriptor of the entry and chmod of its /proc/self/fd link, which reaches
    the inode the descriptor holds and nothing else. Symlinks have no mode of their
    own: EOPNOTSUPP, as the kernel says.
    """
    global _have_fchmodat2
    _check_name(name)
    if _have_fchmodat2:
        rc = _libc.syscall(
            _SYS_FCHMODAT2,
            ctypes.c_int(dirfd),
            os.fsencode(name),
            ctypes.c_uint(mode),
            ctypes.c_int(AT_SYMLINK_NOFOLLOW),
        )
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            raise OSError(err, f"fchmodat2: {os.strerror(err)}", name)
        _have_fchmodat2 = False
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP), name)
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


def fsetxattr(fd: int, key: str, value: bytes, flags: int = 0) -> None:
    """fsetxattr(2) on an open (not O_PATH) descriptor."""
    os.setxattr(fd, key, value, flags)


def fgetxattr(fd: int, key: str) -> bytes | None:
    """fgetxattr(2); ``None`` when the attribute is absent."""
    try:
        return os.getxattr(fd, key)
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        raise


def flistxattr(fd: int) -> list[str]:
    """flistxattr(2): the names the caller may see (trusted.* only with CAP_SYS_ADMIN)."""
    return os.listxattr(fd)


_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(dirfd: int | None, name: str) -> None:
    """rm -rf of ``name`` (in ``dirfd``, or a path when None), by descriptors, never
    following a symlink, and at any depth.

    Why not ``shutil.rmtree``: on Python 3.11 it recurses, one Python frame and one
    open descriptor per level, so a hostile image with a few thousand nested
    directories makes it raise RecursionError (or run out of descriptors) and leaves
    the tree behind. Here the walk is a loop that holds one descriptor at a time:
    it goes down by ``openat(O_NOFOLLOW)`` and back up by ``..``, keeping only the
    names still to visit. A missing ``name`` is not an error.
    """
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dirfd)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        os.unlink(name, dir_fd=dirfd)  # not a directory (or a symlink to one)
        return
    # Per level below the top: (this directory's name in its parent, subdirectories
    # still to remove in it).
    levels: list[tuple[str, list[str]]] = [(name, _clear_files(fd))]
    try:
        while True:
            _, pending = levels[-1]
            if pending:
                child = pending.pop()
                try:
                    child_fd = os.open(child, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                os.close(fd)
                fd = child_fd
                levels.append((child, _clear_files(fd)))
                continue
            done, _ = levels.pop()
            if not levels:
                break
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(done, dir_fd=fd)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=dirfd)


def _clear_files(fd: int) -> list[str]:
    """Unlink every entry of the directory ``fd`` but its subdirectories; their names."""
    subdirs = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=fd)
    return subdirs
