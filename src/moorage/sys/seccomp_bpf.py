"""Loading a compiled seccomp filter (classic BPF) with seccomp(2), no libseccomp.

The runtime compiles each profile once with libseccomp (``moorage.sys.seccomp``)
and keeps the program; the container's init only needs this loader, which costs
nothing to import and nothing to run but the syscall.
"""

from __future__ import annotations

import ctypes
import os

TYPE_CHECKING = False  # the init imports this module: no typing at run time
if TYPE_CHECKING:
    from typing import Final

__all__ = ["FILTER_FLAGS", "load"]

_SYS_SECCOMP: Final = 317  # x86_64
_SECCOMP_SET_MODE_FILTER: Final = 1

# OCI flag name -> seccomp(2) flag bit
FILTER_FLAGS: Final[dict[str, int]] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def load(program: bytes, flags: int = 0) -> None:
    """Install ``program`` (struct sock_filter[]) on this thread.

    Needs no_new_privs or CAP_SYS_ADMIN, as any seccomp filter does.
    """
    if len(program) % 8 or not program:
        raise ValueError("a seccomp program is a non-empty array of 8-byte instructions")
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    rc = _libc.syscall(
        _SYS_SECCOMP, _SECCOMP_SET_MODE_FILTER, ctypes.c_uint(flags), ctypes.byref(fprog)
    )
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(err)}")
