"""Thin ctypes wrappers for the syscalls Python's ``os`` module lacks on 3.11.

Namespaces (unshare, setns), mounts (mount, umount2, pivot_root), safe path
resolution (openat2 with RESOLVE_IN_ROOT) and prctl. Each wrapper raises
``OSError`` with the errno, exactly like the ``os`` functions do, so callers can
use the same ``except`` clauses for both.
"""

from __future__ import annotations

import ctypes
import os

TYPE_CHECKING = False  # the init imports this module: no typing at run time
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "CLONE_NEWCGROUP",
    "CLONE_NEWIPC",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWTIME",
    "CLONE_NEWUSER",
    "CLONE_NEWUTS",
    "MNT_DETACH",
    "NAMESPACE_FLAGS",
    "malloc_trim",
    "mount",
    "openat2",
    "pivot_root",
    "prctl",
    "reset_signals",
    "setdomainname",
    "setns",
    "umount2",
    "unshare",
]

CLONE_NEWTIME: Final = 0x00000080
CLONE_NEWNS: Final = 0x00020000
CLONE_NEWCGROUP: Final = 0x02000000
CLONE_NEWUTS: Final = 0x04000000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000

# OCI namespace type -> (clone flag, name of the /proc/<pid>/ns entry)
NAMESPACE_FLAGS: Final[dict[str, tuple[int, str]]] = {
    "pid": (CLONE_NEWPID, "pid"),
    "network": (CLONE_NEWNET, "net"),
    "mount": (CLONE_NEWNS, "mnt"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "uts": (CLONE_NEWUTS, "uts"),
    "user": (CLONE_NEWUSER, "user"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "time": (CLONE_NEWTIME, "time"),
}

MNT_FORCE: Final = 1
MNT_DETACH: Final = 2
UMOUNT_NOFOLLOW: Final = 8

# mount(2) flags
MS_RDONLY: Final = 1
MS_NOSUID: Final = 2
MS_NODEV: Final = 4
MS_NOEXEC: Final = 8
MS_SYNCHRONOUS: Final = 16
MS_REMOUNT: Final = 32
MS_MANDLOCK: Final = 64
MS_DIRSYNC: Final = 128
MS_NOSYMFOLLOW: Final = 256
MS_NOATIME: Final = 1024
MS_NODIRATIME: Final = 2048
MS_BIND: Final = 4096
MS_MOVE: Final = 8192
MS_REC: Final = 16384
MS_SILENT: Final = 32768
MS_UNBINDABLE: Final = 1 << 17
MS_PRIVATE: Final = 1 << 18
MS_SLAVE: Final = 1 << 19
MS_SHARED: Final = 1 << 20
MS_RELATIME: Final = 1 << 21
MS_STRICTATIME: Final = 1 << 24
MS_LAZYTIME: Final = 1 << 25

# prctl(2) options
PR_SET_PDEATHSIG: Final = 1
PR_SET_DUMPABLE: Final = 4
PR_SET_KEEPCAPS: Final = 8
PR_SET_NAME: Final = 15
PR_SET_CHILD_SUBREAPER: Final = 36
PR_SET_NO_NEW_PRIVS: Final = 38

# openat2(2) resolve flags
RESOLVE_NO_XDEV: Final = 0x01
RESOLVE_NO_MAGICLINKS: Final = 0x02
RESOLVE_NO_SYMLINKS: Final = 0x04
RESOLVE_BENEATH: Final = 0x08
RESOLVE_IN_ROOT: Final = 0x10

_SYS_PIVOT_ROOT: Final = 155
_SYS_SETNS: Final = 308
_SYS_OPENAT2: Final = 437
_SYS_RT_SIGACTION: Final = 13
_SYS_RT_SIGPROCMASK: Final = 14
_SIG_SETMASK: Final = 2
_SIG_IGN: Final = 1
_SIGKILL, _SIGSTOP = 9, 19
_NSIG: Final = 64

# find_library would run ldconfig in a subprocess; glibc is libc.so.6 on every target.
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = (
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
)


def _check(result: int, what: str, path: str | None = None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _b(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return os.fsencode(value)


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """mount(2). ``data`` is the comma-separated filesystem option string."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), "umount2", target)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.syscall(_SYS_SETNS, ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(
        _libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old)),
        "pivot_root",
        new_root,
    )


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), "setdomainname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), "prctl")


def malloc_trim() -> None:
    """Give the C heap's free pages back to the kernel (glibc's malloc_trim(0)): before
    a process is forked many times, so that no fork maps them."""
    _libc.malloc_trim(0)


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` under the ``resolve`` rules.

    With ``RESOLVE_IN_ROOT`` the kernel treats ``dirfd`` as ``/`` for this lookup:
    absolute symlinks and ``..`` cannot leave it, which is what mount-target
    resolution inside a container root needs, free of check-then-use races.
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return _check(
        _libc.syscall(
            _SYS_OPENAT2,
            ctypes.c_int(dirfd),
            _b(path),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        ),
        "openat2",
        path,
    )


class _KernelSigaction(ctypes.Structure):
    """The kernel's struct sigaction (x86_64), not glibc's: all zero is SIG_DFL."""

    _fields_ = (
        ("handler", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("restorer", ctypes.c_void_p),
        ("mask", ctypes.c_uint64),
    )


def reset_signals() -> None:
    """Every ignored signal back to its default, and none blocked, for an execve.

    By the raw system calls, not glibc's sigaction or Python's signal module: both
    refuse signals 32 and 33 (glibc keeps them for its threads), yet a parent may have
    left them ignored, and ignored is what survives an execve.
    """
    old = _KernelSigaction()
    default = _KernelSigaction()
    size = ctypes.c_size_t(8)
    for sig in range(1, _NSIG + 1):
        if sig in (_SIGKILL, _SIGSTOP):
            continue
        if _libc.syscall(_SYS_RT_SIGACTION, sig, None, ctypes.byref(old), size) != 0:
            continue
        if old.handler == _SIG_IGN:
            _libc.syscall(_SYS_RT_SIGACTION, sig, ctypes.byref(default), None, size)
    empty = ctypes.c_uint64(0)
    _check(
        _libc.syscall(_SYS_RT_SIGPROCMASK, _SIG_SETMASK, ctypes.byref(empty), None, size),
        "rt_sigprocmask",
    )
