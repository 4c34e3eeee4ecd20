"""Linux capabilities: names, the per-thread sets, the bounding and ambient sets.

This module owns every capability syscall Moorage makes: ``capget(2)``/``capset(2)``
and the capability ``prctl(2)`` options (``PR_CAPBSET_*``, ``PR_CAP_AMBIENT``,
``PR_SET_KEEPCAPS``). Sets cross the interface as 64-bit masks (bit ``n`` is capability
``n``); :func:`mask_of` and :func:`names_of` convert between masks and names.

A container init applies an OCI ``process.capabilities`` object in this order::

    drop_bounding(bounding)      # needs CAP_SETPCAP, so before the sets shrink
    set_keepcaps(True)           # only when the process changes uid:
    os.setgid(...); os.setuid(...)   # keepcaps keeps the permitted set across setuid
    set_keepcaps(False)
    capset(effective, permitted, inheritable)
    clear_ambient(); raise_ambient(ambient)   # after setuid, which clears ambient

:func:`apply_capabilities` runs the steps without the uid change; a caller that
changes uid runs them one by one as above. Every call here acts on the calling
thread only (the kernel keeps capabilities per thread), so it belongs in a
single-threaded child such as the container init, never in the daemon.

Kernel errors become :class:`~moorage.errors.FailedPrecondition` naming the call:
``capset: operation not permitted``.
"""

from __future__ import annotations

import ctypes
import functools
import os

from moorage.errors import FailedPrecondition, InvalidArgument

TYPE_CHECKING = False  # the init imports this module: no typing at run time
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Final

__all__ = [
    "CAPABILITIES",
    "CapSets",
    "apply_capabilities",
    "bounding_set",
    "cap_number",
    "capget",
    "capset",
    "clear_ambient",
    "drop_bounding",
    "known_capabilities",
    "last_cap",
    "mask_of",
    "names_of",
    "raise_ambient",
    "set_keepcaps",
]

# include/uapi/linux/capability.h
CAPABILITIES: Final[dict[str, int]] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
_NAMES: Final[dict[int, str]] = {number: name for name, number in CAPABILITIES.items()}

_MASK64: Final = (1 << 64) - 1
_CAP_LAST_CAP_PATH: Final = "/proc/sys/kernel/cap_last_cap"

# _LINUX_CAPABILITY_VERSION_3: 64-bit sets split over two u32 data structs.
_CAPABILITY_VERSION_3: Final = 0x20080522

# include/uapi/linux/prctl.h
_PR_SET_KEEPCAPS: Final = 8
_PR_CAPBSET_READ: Final = 23
_PR_CAPBSET_DROP: Final = 24
_PR_CAP_AMBIENT: Final = 47
_PR_CAP_AMBIENT_RAISE: Final = 2
_PR_CAP_AMBIENT_CLEAR_ALL: Final = 4


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_CapDataPair = _CapData * 2


class CapSets:
    """A thread's effective, permitted and inheritable sets as 64-bit masks."""

    __slots__ = ("effective", "inheritable", "permitted")

    def __init__(self, effective: int, permitted: int, inheritable: int) -> None:
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CapSets) and (
            (self.effective, self.permitted, self.inheritable)
            == (other.effective, other.permitted, other.inheritable)
        )

    def __hash__(self) -> int:
        return hash((self.effective, self.permitted, self.inheritable))

    def __repr__(self) -> str:
        return (
            f"CapSets(effective={self.effective:#x}, permitted={self.permitted:#x}, "
            f"inheritable={self.inheritable:#x})"
        )


class _Libc:
    """The libc entry points this module calls, typed once."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.capget = libc.capget
        self.capget.argtypes = (ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData))
        self.capget.restype = ctypes.c_int
        self.capset = libc.capset
        self.capset.argtypes = (ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData))
        self.capset.restype = ctypes.c_int
        # prctl is variadic; every option used here takes unsigned longs.
        self.prctl = libc.prctl
        self.prctl.argtypes = (
            ctypes.c_int,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
        )
        self.prctl.restype = ctypes.c_int


@functools.cache
def _libc() -> _Libc:
    return _Libc()


def _failed(call: str, err: int) -> FailedPrecondition:
    return FailedPrecondition(f"{call}: {os.strerror(err).lower()}")


def _prctl(option: int, arg2: int = 0, arg3: int = 0, *, call: str) -> int:
    result: int = _libc().prctl(option, arg2, arg3, 0, 0)
    if result < 0:
        raise _failed(call, ctypes.get_errno())
    return result


def _check_mask(mask: int, what: str) -> None:
    if not isinstance(mask, int) or isinstance(mask, bool) or not 0 <= mask <= _MASK64:
        raise InvalidArgument(f"{what} mask {mask!r} is not a 64-bit capability mask")


def _cap_label(number: int) -> str:
    return _NAMES.get(number, f"capability {number}")


def cap_number(name: str) -> int:
    """The number of capability ``name`` (``"CAP_NET_ADMIN"`` -> 12)."""
    try:
        return CAPABILITIES[name]
    except KeyError:
        raise InvalidArgument(f'unknown capability "{name}"') from None


def mask_of(names: Iterable[str]) -> int:
    """The mask with the bit of every named capability set."""
    mask = 0
    for name in names:
        mask |= 1 << cap_number(name)
    return mask


def names_of(mask: int) -> list[str]:
    """The names of the capabilities in ``mask``, lowest number first.

    Bits Moorage has no name for come out as ``"CAP_<n>"`` so nothing is lost in logs.
    """
    _check_mask(mask, "capability")
    return [_NAMES.get(bit, f"CAP_{bit}") for bit in range(64) if mask >> bit & 1]


@functools.cache
def last_cap() -> int:
    """The highest capability number the running kernel knows.

    Read from ``/proc/sys/kernel/cap_last_cap``; where /proc is not mounted (a
    container init between pivot_root and mounting /proc) it is found by probing
    ``PR_CAPBSET_READ``, which fails with EINVAL past the last capability.
    """
    try:
        with open(_CAP_LAST_CAP_PATH, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        pass
    number = 0
    while number < 63 and _libc().prctl(_PR_CAPBSET_READ, number + 1, 0, 0, 0) >= 0:
        number += 1
    return number


def known_capabilities() -> list[str]:
    """Names of the capabilities both Moorage and the running kernel know, by number."""
    top = last_cap()
    return [_NAMES[number] for number in sorted(_NAMES) if number <= top]


def capget(pid: int = 0) -> CapSets:
    """The capability sets of thread ``pid`` (0: the calling thread)."""
    header = _CapHeader(_CAPABILITY_VERSION_3, pid)
    data = _CapDataPair()
    if _libc().capget(ctypes.byref(header), data) < 0:
        err = ctypes.get_errno()
        raise _failed(f"capget: pid {pid}" if pid else "capget", err)
    return CapSets(
        effective=data[0].effective | data[1].effective << 32,
        permitted=data[0].permitted | data[1].permitted << 32,
        inheritable=data[0].inheritable | data[1].inheritable << 32,
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's effective, permitted and inheritable sets.

    The kernel only lets a thread shrink its permitted set, keep effective within
    permitted, and grow inheritable within its bounding set (and within permitted
    unless it holds CAP_SETPCAP); anything else fails with EPERM.
    """
    _check_mask(effective, "effective")
    _check_mask(permitted, "permitted")
    _check_mask(inheritable, "inheritable")
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = _CapDataPair(
        _CapData(effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF),
        _CapData(effective >> 32, permitted >> 32, inheritable >> 32),
    )
    if _libc().capset(ctypes.byref(header), data) < 0:
        raise _failed("capset", ctypes.get_errno())


def bounding_set() -> int:
    """The calling thread's bounding set as a mask."""
    mask = 0
    for number in range(last_cap() + 1):
        if _prctl(_PR_CAPBSET_READ, number, call=f"prctl(PR_CAPBSET_READ, {_cap_label(number)})"):
            mask |= 1 << number
    return mask


def drop_bounding(keep: int) -> None:
    """Drop every capability the kernel knows that is not in ``keep`` from the bounding set.

    Needs CAP_SETPCAP in the effective set, so it runs before :func:`capset` takes it
    away. Capabilities already out of the set are skipped, so dropping nothing new
    works without privilege.
    """
    _check_mask(keep, "bounding")
    current = bounding_set()
    for number in range(last_cap() + 1):
        if current >> number & 1 and not keep >> number & 1:
            _prctl(_PR_CAPBSET_DROP, number, call=f"prctl(PR_CAPBSET_DROP, {_cap_label(number)})")


def clear_ambient() -> None:
    """Empty the calling thread's ambient set."""
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, call="prctl(PR_CAP_AMBIENT_CLEAR_ALL)")


def raise_ambient(mask: int) -> None:
    """Add the capabilities in ``mask`` to the calling thread's ambient set.

    Each must already be in both the permitted and the inheritable set (EPERM
    otherwise). Bits above :func:`last_cap` are ignored: the running kernel has no
    such capability, which is how runc treats them too.
    """
    _check_mask(mask, "ambient")
    for number in range(last_cap() + 1):
        if mask >> number & 1:
            _prctl(
                _PR_CAP_AMBIENT,
                _PR_CAP_AMBIENT_RAISE,
                number,
                call=f"prctl(PR_CAP_AMBIENT_RAISE, {_cap_label(number)})",
            )


def set_keepcaps(on: bool) -> None:
    """Whether the permitted set survives a setuid from root to non-root.

    The effective and ambient sets are cleared by that setuid regardless; the kernel
    resets the flag on execve.
    """
    _prctl(_PR_SET_KEEPCAPS, 1 if on else 0, call="prctl(PR_SET_KEEPCAPS)")


def apply_capabilities(
    bounding: int, effective: int, permitted: int, inheritable: int, ambient: int
) -> None:
    """Apply a full capability configuration to the calling thread, in init's order.

    Drops the bounding set, sets effective/permitted/inheritable, then replaces the
    ambient set. A process that also changes uid must do that between the bounding
    drop and :func:`capset`, with :func:`set_keepcaps` on; it calls the steps itself
    (see the module docstring), since setuid clears the ambient set and, without
    keepcaps, the permitted set.
    """
    for mask, what in (
        (bounding, "bounding"),
        (effective, "effective"),
        (permitted, "permitted"),
        (inheritable, "inheritable"),
        (ambient, "ambient"),
    ):
        # Validate everything first so a bad mask cannot leave a half-applied set.
        _check_mask(mask, what)
    drop_bounding(bounding)
    capset(effective, permitted, inheritable)
    clear_ambient()
    raise_ambient(ambient)
