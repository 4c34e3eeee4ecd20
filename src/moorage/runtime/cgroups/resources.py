"""The cgroup settings Moorage supports, as data, and their conversion from OCI JSON.

:class:`CgroupResources` is what a container's ``linux.resources`` asks for, validated
once by :meth:`CgroupResources.from_oci`; the managers only translate it into files.
Units and sentinels are the OCI spec's: bytes for memory, microseconds for CPU quota
and period, and ``-1`` for "unlimited" where the spec allows it. A ``0`` in a field whose
zero would be absurd (a zero memory limit, a zero CPU period) means "not set", as runc reads
it, so a config from any engine means the same here.

Supported: memory (limit, reservation, swap, swappiness, disableOOMKiller; ``kernel`` and
``kernelTCP`` are accepted and ignored, the kernel dropped them), cpu (shares, quota,
period, cpus, mems, idle), pids (limit), devices, blockIO (weight), hugepageLimits and
unified. Other known settings (blockIO throttling, cpu realtime, rdma, network) are logged
as ignored; unknown keys are ignored, as the spec requires.
"""

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from moorage.errors import InvalidArgument
from moorage.runtime.cgroups._log import LazyLogger

__all__ = [
    "BlockIOResources",
    "CgroupResources",
    "CpuResources",
    "DeviceRule",
    "HugepageLimit",
    "MemoryResources",
    "PidsResources",
]

log = LazyLogger(__name__)

_PAGE_SIZE = re.compile(r"^[1-9][0-9]*[KMG]B$")
_CPU_LIST = re.compile(r"^[0-9,\- ]*$")
_ROOT = "linux.resources"

# Settings we know the spec has but do not apply; logged so a config is not silently weaker.
_IGNORED: dict[str, tuple[str, ...]] = {
    "cpu": ("realtimeRuntime", "realtimePeriod", "burst"),
    "blockIO": (
        "leafWeight",
        "weightDevice",
        "throttleReadBpsDevice",
        "throttleWriteBpsDevice",
        "throttleReadIOPSDevice",
        "throttleWriteIOPSDevice",
    ),
    "memory": ("kernelTCP", "useHierarchy", "checkBeforeUpdate"),
}


_EMPTY: Mapping[str, str] = MappingProxyType({})


class MemoryResources(NamedTuple):
    """Memory limits in bytes; ``-1`` is unlimited for limit, reservation and swap.

    ``swap`` is the OCI (and cgroup v1) memory+swap total, not swap alone, so it may not
    be below ``limit``.
    """

    limit: int | None = None
    reservation: int | None = None
    swap: int | None = None
    swappiness: int | None = None  # 0..100
    disable_oom_killer: bool | None = None

    def check(self) -> "MemoryResources":
        """The record itself, once its limit and swap are known to agree."""
        if self.limit is None or self.swap is None or self.swap == -1:
            return self
        if self.limit == -1:
            raise InvalidArgument(
                f"{_ROOT}.memory.swap ({self.swap}) must be -1 when "
                f"{_ROOT}.memory.limit is -1: it is memory plus swap"
            )
        if self.swap < self.limit:
            raise InvalidArgument(
                f"{_ROOT}.memory.swap ({self.swap}) must not be below "
                f"{_ROOT}.memory.limit ({self.limit}): it is memory plus swap"
            )
        return self

    def is_empty(self) -> bool:
        return self == MemoryResources()


class CpuResources(NamedTuple):
    """CPU settings: ``quota`` and ``period`` in microseconds, ``quota=-1`` is unlimited."""

    shares: int | None = None
    quota: int | None = None
    period: int | None = None
    cpus: str | None = None  # a cpuset list such as "0-3,6"
    mems: str | None = None
    idle: int | None = None  # 0 or 1

    def wants_cpu(self) -> bool:
        return any(v is not None for v in (self.shares, self.quota, self.period, self.idle))

    def wants_cpuset(self) -> bool:
        return self.cpus is not None or self.mems is not None


class PidsResources(NamedTuple):
    limit: int  # -1 or 0: unlimited


class DeviceRule(NamedTuple):
    """One device cgroup rule; ``major``/``minor`` None is the ``*`` wildcard."""

    allow: bool
    type: str = "a"  # "a" (all), "c" (char) or "b" (block)
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def v1_line(self) -> str:
        """The rule as devices.allow and devices.deny take it: ``c 1:3 rwm`` or ``a``."""
        if self.type == "a" and self.major is None and self.minor is None:
            return "a"
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


class BlockIOResources(NamedTuple):
    weight: int | None = None  # 10..1000, the cgroup v1 blkio.weight scale


class HugepageLimit(NamedTuple):
    page_size: str  # as the kernel names it in file names: "2MB", "1GB", "64KB"
    limit: int  # bytes


class CgroupResources(NamedTuple):
    """Everything Moorage applies of OCI ``linux.resources``; the empty value applies nothing.

    Example::

        r = CgroupResources.from_oci({"memory": {"limit": 268435456}, "pids": {"limit": 64}})
        r.memory == MemoryResources(limit=268435456)
        r.pids == PidsResources(limit=64)
    """

    memory: MemoryResources | None = None
    cpu: CpuResources | None = None
    pids: PidsResources | None = None
    devices: tuple[DeviceRule, ...] = ()
    block_io: BlockIOResources | None = None
    hugepage_limits: tuple[HugepageLimit, ...] = ()
    unified: Mapping[str, str] = _EMPTY  # cgroup v2 file name -> value

    @classmethod
    def from_oci(cls, data: dict[str, Any] | None) -> "CgroupResources":
        """Convert and validate the ``linux.resources`` object of a config.json.

        Raises InvalidArgument naming the offending field, e.g.
        ``linux.resources.memory.limit: expected an integer, got "1g"``.
        """
        if data is None:
            return cls()
        _expect_object(data, _ROOT)
        for section, keys in _IGNORED.items():
            sub = data.get(section)
            if isinstance(sub, dict):
                for key in keys:
                    if sub.get(key) not in (None, [], 0, False):
                        log.warning("ignoring unsupported setting %s.%s.%s", _ROOT, section, key)
        for key in ("rdma", "network"):
            if data.get(key):
                log.warning("ignoring unsupported setting %s.%s", _ROOT, key)
        return cls(
            memory=_memory(data.get("memory")),
            cpu=_cpu(data.get("cpu")),
            pids=_pids(data.get("pids")),
            devices=_devices(data.get("devices")),
            block_io=_block_io(data.get("blockIO")),
            hugepage_limits=_hugepages(data.get("hugepageLimits")),
            unified=_unified(data.get("unified")),
        )


# --- field readers -------------------------------------------------------------------------


def _describe(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return str(value)


def _expect_object(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name}: expected an object, got {_describe(value)}")
    return value


def _int(obj: dict[str, Any], key: str, name: str, *, minimum: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int in Python but never one in JSON.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name}.{key}: expected an integer, got {_describe(value)}")
    if value < minimum:
        raise InvalidArgument(f"{name}.{key}: must be at least {minimum}, got {value}")
    return value


def _limit(obj: dict[str, Any], key: str, name: str) -> int | None:
    """A byte or count limit where -1 is unlimited and 0 is unset."""
    value = _int(obj, key, name, minimum=-1)
    return None if value == 0 else value


def _str(obj: dict[str, Any], key: str, name: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name}.{key}: expected a string, got {_describe(value)}")
    return value


def _bool(obj: dict[str, Any], key: str, name: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name}.{key}: expected a boolean, got {_describe(value)}")
    return value


def _list(value: object, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidArgument(f"{name}: expected an array, got {_describe(value)}")
    return value


def _memory(value: object) -> MemoryResources | None:
    if value is None:
        return None
    name = f"{_ROOT}.memory"
    obj = _expect_object(value, name)
    swappiness = _int(obj, "swappiness", name, minimum=0)
    if swappiness is not None and swappiness > 100:
        raise InvalidArgument(f"{name}.swappiness: must be at most 100, got {swappiness}")
    # "kernel" is accepted and ignored: kernel memory limits are gone from current kernels.
    return MemoryResources(
        limit=_limit(obj, "limit", name),
        reservation=_limit(obj, "reservation", name),
        swap=_limit(obj, "swap", name),
        swappiness=swappiness,
        disable_oom_killer=_bool(obj, "disableOOMKiller", name),
    ).check()


def _cpu(value: object) -> CpuResources | None:
    if value is None:
        return None
    name = f"{_ROOT}.cpu"
    obj = _expect_object(value, name)
    shares = _int(obj, "shares", name, minimum=0)
    period = _int(obj, "period", name, minimum=0)
    idle = _int(obj, "idle", name, minimum=0)
    if idle is not None and idle > 1:
        raise InvalidArgument(f"{name}.idle: must be 0 or 1, got {idle}")
    cpus, mems = _str(obj, "cpus", name), _str(obj, "mems", name)
    for key, text in (("cpus", cpus), ("mems", mems)):
        if text is not None and not _CPU_LIST.match(text):
            raise InvalidArgument(f'{name}.{key}: not a cpu or node list: "{text}"')
    return CpuResources(
        shares=shares or None,
        quota=_limit(obj, "quota", name),
        period=period or None,
        cpus=cpus or None,
        mems=mems or None,
        idle=idle,
    )


def _pids(value: object) -> PidsResources | None:
    if value is None:
        return None
    name = f"{_ROOT}.pids"
    limit = _int(_expect_object(value, name), "limit", name, minimum=-1)
    return None if limit is None else PidsResources(limit=limit)


def _devices(value: object) -> tuple[DeviceRule, ...]:
    rules: list[DeviceRule] = []
    for i, item in enumerate(_list(value, f"{_ROOT}.devices")):
        name = f"{_ROOT}.devices[{i}]"
        obj = _expect_object(item, name)
        allow = _bool(obj, "allow", name)
        if allow is None:
            raise InvalidArgument(f"{name}.allow: required")
        kind = _str(obj, "type", name) or "a"
        if kind not in ("a", "b", "c"):
            raise InvalidArgument(f'{name}.type: must be "a", "b" or "c", got "{kind}"')
        access = _str(obj, "access", name) or "rwm"
        if not set(access) <= set("rwm") or len(set(access)) != len(access):
            raise InvalidArgument(f'{name}.access: must be letters from "rwm", got "{access}"')
        # -1 is how several engines spell the wildcard.
        major = _int(obj, "major", name, minimum=-1)
        minor = _int(obj, "minor", name, minimum=-1)
        rules.append(
            DeviceRule(
                allow=allow,
                type=kind,
                major=None if major == -1 else major,
                minor=None if minor == -1 else minor,
                access=access,
            )
        )
    return tuple(rules)


def _block_io(value: object) -> BlockIOResources | None:
    if value is None:
        return None
    name = f"{_ROOT}.blockIO"
    weight = _int(_expect_object(value, name), "weight", name, minimum=0)
    if weight == 0:
        weight = None
    if weight is not None and not 10 <= weight <= 1000:
        raise InvalidArgument(f"{name}.weight: must be between 10 and 1000, got {weight}")
    return None if weight is None else BlockIOResources(weight=weight)


def _hugepages(value: object) -> tuple[HugepageLimit, ...]:
    limits: list[HugepageLimit] = []
    for i, item in enumerate(_list(value, f"{_ROOT}.hugepageLimits")):
        name = f"{_ROOT}.hugepageLimits[{i}]"
        obj = _expect_object(item, name)
        size = _str(obj, "pageSize", name)
        if size is None:
            raise InvalidArgument(f"{name}.pageSize: required")
        if not _PAGE_SIZE.match(size):
            raise InvalidArgument(f'{name}.pageSize: expected a size such as "2MB", got "{size}"')
        limit = _int(obj, "limit", name, minimum=0)
        if limit is None:
            raise InvalidArgument(f"{name}.limit: required")
        limits.append(HugepageLimit(page_size=size, limit=limit))
    return tuple(limits)


def _unified(value: object) -> dict[str, str]:
    if value is None:
        return {}
    name = f"{_ROOT}.unified"
    obj = _expect_object(value, name)
    out: dict[str, str] = {}
    for key, text in obj.items():
        # Keys name files in the container's own cgroup directory, never elsewhere.
        if not key or "/" in key or ".." in key or key == "." or "\0" in key:
            raise InvalidArgument(f'{name}: invalid cgroup file name "{key}"')
        if not isinstance(text, str):
            raise InvalidArgument(f'{name}["{key}"]: expected a string, got {_describe(text)}')
        out[key] = text
    return out
