"""Mounting beyond what mount(2) can say in one page of options.

mount(2) copies at most one page of option data, so an overlay with a few hundred
lower layers cannot be described in a single string. This module owns the two kernel
interfaces that get around that; ``moorage.store.snapshots.mount`` decides when to use
them:

- :func:`fs_mount` drives the fd-based mount API (fsopen, fsconfig, fsmount,
  move_mount). Every option is its own fsconfig call, so overlay's ``lowerdir+`` (Linux
  6.8 and later) appends one layer per call with no limit on the total; each single
  value is limited to 255 bytes by fsconfig. :func:`fs_param_supported` asks the kernel,
  without mounting anything, whether it knows such a parameter.
- :func:`mount_in_dir` calls mount(2) with a working directory private to one
  short-lived thread (``unshare(CLONE_FS)`` in that thread), so option data may hold
  paths relative to a common directory. The process's own working directory never
  changes, which matters because callers run in a multi-threaded daemon.

Both raise ``OSError`` with the errno, like the ``os`` functions; :func:`fs_mount` adds
the messages the kernel logged on the filesystem context (``overlay: failed to resolve
'x': -2``) to the error text.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Sequence
from typing import Final

from moorage.sys import libc

__all__ = [
    "CLONE_FS",
    "MOUNT_ATTR_NOATIME",
    "MOUNT_ATTR_NODEV",
    "MOUNT_ATTR_NODIRATIME",
    "MOUNT_ATTR_NOEXEC",
    "MOUNT_ATTR_NOSUID",
    "MOUNT_ATTR_RDONLY",
    "fs_mount",
    "fs_param_supported",
    "mount_in_dir",
]

CLONE_FS: Final = 0x00000200

# fsopen(2), fsconfig(2), fsmount(2), move_mount(2); these numbers are the same on
# every architecture (the syscalls were added after the tables were unified).
_SYS_MOVE_MOUNT: Final = 429
_SYS_FSOPEN: Final = 430
_SYS_FSCONFIG: Final = 431
_SYS_FSMOUNT: Final = 432

FSOPEN_CLOEXEC: Final = 0x1
FSMOUNT_CLOEXEC: Final = 0x1
FSCONFIG_SET_FLAG: Final = 0
FSCONFIG_SET_STRING: Final = 1
FSCONFIG_CMD_CREATE: Final = 6
MOVE_MOUNT_F_EMPTY_PATH: Final = 0x00000004
AT_FDCWD: Final = -100

MOUNT_ATTR_RDONLY: Final = 0x00000001
MOUNT_ATTR_NOSUID: Final = 0x00000002
MOUNT_ATTR_NODEV: Final = 0x00000004
MOUNT_ATTR_NOEXEC: Final = 0x00000008
MOUNT_ATTR_NOATIME: Final = 0x00000010
MOUNT_ATTR_NODIRATIME: Final = 0x00000080

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def _call(what: str, path: str | None, *args: object) -> int:
    result = int(_libc.syscall(*args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _fsopen(fstype: str) -> int:
    return _call(
        "fsopen", None, _SYS_FSOPEN, ctypes.c_char_p(_b(fstype)), ctypes.c_uint(FSOPEN_CLOEXEC)
    )


def _fsconfig(fd: int, cmd: int, key: str | None, value: str | None) -> None:
    what = "fsconfig"
    if key is not None:
        what += f" {key}" if value is None else f" {key}={value}"
    _call(
        what,
        value,
        _SYS_FSCONFIG,
        ctypes.c_int(fd),
        ctypes.c_uint(cmd),
        ctypes.c_char_p(_b(key)),
        ctypes.c_char_p(_b(value)),
        ctypes.c_int(0),
    )


def _context_messages(fd: int) -> str:
    """What the kernel logged on an fs context: one message per read, ENODATA when none."""
    messages: list[str] = []
    for _ in range(16):
        try:
            raw = os.read(fd, 1024)
        except OSError:
            break
        if not raw:
            break
        messages.append(raw.decode(errors="replace").strip())
    return "; ".join(messages)


def fs_mount(
    fstype: str,
    target: str,
    params: Sequence[tuple[str, str | None]],
    attrs: int = 0,
) -> None:
    """Mount a new ``fstype`` filesystem on ``target`` through the fd-based mount API.

    ``params`` are applied in order, one fsconfig call each: ``(key, value)`` sets a
    string, ``(key, None)`` a flag. ``attrs`` are ``MOUNT_ATTR_*`` bits of the new mount.
    """
    fsfd = _fsopen(fstype)
    try:
        try:
            for key, value in params:
                if value is None:
                    _fsconfig(fsfd, FSCONFIG_SET_FLAG, key, None)
                else:
                    _fsconfig(fsfd, FSCONFIG_SET_STRING, key, value)
            _fsconfig(fsfd, FSCONFIG_CMD_CREATE, None, None)
        except OSError as exc:
            detail = _context_messages(fsfd)
            if detail:
                raise OSError(exc.errno, f"{exc.strerror} ({detail})", exc.filename) from None
            raise
        mntfd = _call(
            "fsmount",
            target,
            _SYS_FSMOUNT,
            ctypes.c_int(fsfd),
            ctypes.c_uint(FSMOUNT_CLOEXEC),
            ctypes.c_uint(attrs),
        )
    finally:
        os.close(fsfd)
    try:
        _call(
            "move_mount",
            target,
            _SYS_MOVE_MOUNT,
            ctypes.c_int(mntfd),
            ctypes.c_char_p(b""),
            ctypes.c_int(AT_FDCWD),
            ctypes.c_char_p(_b(target)),
            ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
        )
    finally:
        # Closing a detached mount's fd before move_mount unmounts it; after, it is a no-op.
        os.close(mntfd)


def fs_param_supported(fstype: str, key: str, value: str) -> bool:
    """Whether the kernel's ``fstype`` accepts parameter ``key=value``; mounts nothing."""
    try:
        fsfd = _fsopen(fstype)
    except OSError:
        return False
    try:
        _fsconfig(fsfd, FSCONFIG_SET_STRING, key, value)
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # "Unknown parameter"
            return False
        raise
    finally:
        os.close(fsfd)
    return True


def mount_in_dir(
    cwd: str,
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """mount(2) with relative paths in ``data`` resolved against ``cwd``.

    The chdir happens in a new thread that first unshares its filesystem attributes
    (``CLONE_FS``), so no other thread of the process sees its working directory move.
    ``target`` is made absolute first, because it is resolved in that thread too.
    """
    target = os.path.abspath(target)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            libc.unshare(CLONE_FS)
            os.chdir(cwd)
            libc.mount(source, target, fstype, flags, data)
        except BaseException as exc:  # handed to the calling thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name="moorage-mount-in-dir")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
