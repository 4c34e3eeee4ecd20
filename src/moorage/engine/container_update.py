"""``POST /containers/{id}/update``: Docker's rules for changing a container's limits
and restart policy, as pure functions.

The body is Docker's ``UpdateConfig``: the ``Resources`` fields of a HostConfig plus
``RestartPolicy``. As in dockerd, a zero or empty field means "leave it", so the docker
CLI can send every field and change only those its flags set::

    update = parse_update({"Memory": 67108864, "NanoCpus": 500000000, "CpuShares": 0},
                          cpus={0, 1}, mems={0}, ncpu=2)
    update.resources == {"Memory": 67108864, "NanoCpus": 500000000}
    host = merged_host_config(container.host_config, update, container.id)
    linux = live_resources(parse_create({... "HostConfig": host}), update)
    linux == {"memory": {"limit": 67108864, "swap": ...}, "cpu": {"quota": 50000, ...}}

:func:`parse_update` checks the body alone and raises InvalidArgument with dockerd's
messages: ``Minimum memory limit allowed is 6MB``, and for a wrong type what dockerd's
JSON decoding says, ``invalid JSON: json: cannot unmarshal string into Go struct field
UpdateConfig.Memory of type int64``. :func:`merged_host_config` checks it against what
the container already has (CPU quota and NanoCpus exclude each other; a memory limit
may not pass the memory+swap limit in force unless the update sets that too; no restart
policy for an ``AutoRemove`` container) and raises Conflict, ``Cannot update container
<id>: ...``.

Two choices differ from dockerd, both to accept more: a memory limit may be set on a
container that had neither memory nor swap limit (dockerd refuses, comparing with a
swap limit of 0; its swap then defaults to twice the memory, as at create), and on one
whose swap is unlimited (-1). Settings Moorage does not apply (blkio, realtime CPU)
come back as warnings.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NamedTuple

from moorage.engine.specgen import ContainerRequest, linux_resources
from moorage.errors import Conflict, InvalidArgument
from moorage.sys.cpus import format_list, parse_list

__all__ = [
    "APPLIED_FIELDS",
    "UpdateRequest",
    "live_resources",
    "merged_host_config",
    "parse_update",
]

_MIN_MEMORY = 6 * 1024 * 1024  # dockerd's linuxMinMemory

# The Resources fields dockerd copies into the container's HostConfig at an update.
MEMORY_FIELDS = ("Memory", "MemorySwap", "MemoryReservation")
CPU_FIELDS = ("NanoCpus", "CpuShares", "CpuPeriod", "CpuQuota", "CpusetCpus", "CpusetMems")
APPLIED_FIELDS = (*MEMORY_FIELDS, *CPU_FIELDS, "PidsLimit")

# Go types of UpdateConfig's fields, for type errors worded as Go's JSON decoding words
# them. Fields not listed are not read (dockerd ignores unknown keys too).
_INT64 = frozenset(
    {
        "CpuShares", "Memory", "NanoCpus", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod",
        "CpuRealtimeRuntime", "MemoryReservation", "MemorySwap", "KernelMemory",
        "KernelMemoryTCP", "CpuCount", "CpuPercent", "PidsLimit", "MemorySwappiness",
    }
)  # fmt: skip
_RANGED = {"BlkioWeight": ("uint16", 0, 0xFFFF)} | {
    name: ("uint64", 0, 2**64 - 1) for name in ("IOMaximumIOps", "IOMaximumBandwidth")
}
_STRINGS = frozenset({"CgroupParent", "CpusetCpus", "CpusetMems"})
_ARRAYS = {
    "BlkioWeightDevice": "[]*blkiodev.WeightDevice",
    "BlkioDeviceReadBps": "[]*blkiodev.ThrottleDevice",
    "BlkioDeviceWriteBps": "[]*blkiodev.ThrottleDevice",
    "BlkioDeviceReadIOps": "[]*blkiodev.ThrottleDevice",
    "BlkioDeviceWriteIOps": "[]*blkiodev.ThrottleDevice",
    "Devices": "[]container.DeviceMapping",
    "DeviceCgroupRules": "[]string",
    "DeviceRequests": "[]container.DeviceRequest",
    "Ulimits": "[]*container.Ulimit",
}
# Set to anything but their zero value, these are accepted and reported as not applied.
_NOT_APPLIED = (
    "BlkioWeight",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
)
_POLICIES = ("no", "always", "on-failure", "unless-stopped")


class UpdateRequest(NamedTuple):
    """A checked update: the fields to change (of :data:`APPLIED_FIELDS`), the new
    restart policy (None: keep it) and dockerd-style warnings."""

    resources: Mapping[str, Any]
    restart_policy: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()


def parse_update(body: Any, *, cpus: set[int], mems: set[int], ncpu: int) -> UpdateRequest:
    """Check an UpdateConfig body as dockerd does before it looks at the container.

    ``cpus`` and ``mems`` are the CPUs and memory nodes a cpuset may name, ``ncpu`` the
    number of CPUs a container may use (the ceiling of NanoCpus).
    """
    if not isinstance(body, dict):
        raise InvalidArgument(
            f"invalid JSON: json: cannot unmarshal {_json_kind(body)} into Go value of type "
            "container.UpdateConfig"
        )
    _check_types(body)
    restart = _restart_policy(body.get("RestartPolicy"))
    values = {k: body[k] for k in APPLIED_FIELDS if body.get(k) is not None}
    _check_resources(body, values, cpus=cpus, mems=mems, ncpu=ncpu)
    changes = {k: v for k, v in values.items() if v not in (0, "")}
    if "PidsLimit" in values:  # 0 (and any negative) set "unlimited"; null leaves it
        changes["PidsLimit"] = max(0, values["PidsLimit"])
    warnings = [f"{name}: not supported, ignored" for name in _NOT_APPLIED if body.get(name)]
    if isinstance(body.get("CpuPercent"), int) and body["CpuPercent"] > 0:
        warnings.append("linux does not support CPU percent. Percent discarded.")
    return UpdateRequest(resources=changes, restart_policy=restart, warnings=tuple(warnings))


def merged_host_config(
    host_config: Mapping[str, Any], update: UpdateRequest, container_id: str
) -> dict[str, Any]:
    """``host_config`` with ``update`` applied by dockerd's rules (see the module)."""
    new = copy.deepcopy(dict(host_config))
    old = {k: host_config.get(k) or 0 for k in APPLIED_FIELDS if k != "PidsLimit"}
    r = update.resources

    def conflict(message: str) -> Conflict:
        return Conflict(f"Cannot update container {container_id}: {message}")

    if r.get("NanoCpus", 0) > 0 and old["CpuPeriod"] > 0:
        raise conflict(
            "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set"
        )
    if r.get("NanoCpus", 0) > 0 and old["CpuQuota"] > 0:
        raise conflict(
            "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set"
        )
    if r.get("CpuPeriod", 0) > 0 and old["NanoCpus"] > 0:
        raise conflict(
            "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"
        )
    if r.get("CpuQuota", 0) > 0 and old["NanoCpus"] > 0:
        raise conflict(
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
        )
    if "Memory" in r and "MemorySwap" not in r:
        # A memory limit set at create came with swap of twice as much (specgen).
        swap = old["MemorySwap"] or 2 * old["Memory"]
        if swap > 0 and r["Memory"] > swap:
            raise conflict(
                "Memory limit should be smaller than already set memoryswap limit, "
                "update the memoryswap at the same time"
            )
        # Kept as it is, as dockerd keeps it; spelled out, so inspect shows what the
        # cgroup gets (0 would mean twice the memory, and which memory changes).
        new["MemorySwap"] = swap or 2 * r["Memory"]
    new.update(r)
    policy = update.restart_policy
    if policy is not None:
        if policy["Name"] != "no" and host_config.get("AutoRemove"):
            raise conflict(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
            )
        new["RestartPolicy"] = dict(policy)
    return new


def live_resources(request: ContainerRequest, update: UpdateRequest) -> dict[str, Any]:
    """What to write to a running container's cgroup (partial OCI ``linux.resources``):
    every section ``update`` touches, as ``request`` (the container's create request
    with the merged HostConfig) makes it, so the cgroup holds what the next start will
    set. Removing a limit is written out (pids ``0``: unlimited)."""
    wanted = linux_resources(request)
    out: dict[str, Any] = {}
    if any(k in update.resources for k in MEMORY_FIELDS) and "memory" in wanted:
        out["memory"] = wanted["memory"]
    if any(k in update.resources for k in CPU_FIELDS) and "cpu" in wanted:
        out["cpu"] = wanted["cpu"]
    if "PidsLimit" in update.resources:
        out["pids"] = {"limit": request.pids_limit or 0}
    return out


# --- checks ---------------------------------------------------------------------------


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_error(value: object, field: str, go_type: str, *, number: bool = False) -> str:
    kind = _json_kind(value)
    if number and kind == "number":
        kind = f"number {value}"
    return (
        f"invalid JSON: json: cannot unmarshal {kind} into Go struct field {field} "
        f"of type {go_type}"
    )


def _check_types(body: Mapping[str, Any]) -> None:
    for key, value in body.items():
        if value is None:
            continue  # null leaves a Go field as it is
        field = f"UpdateConfig.{key}"
        if key in _INT64 or key in _RANGED:
            go_type, low, high = _RANGED.get(key, ("int64", -(2**63), 2**63 - 1))
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise InvalidArgument(_type_error(value, field, go_type))
            if not isinstance(value, int) or not low <= value <= high:
                raise InvalidArgument(_type_error(value, field, go_type, number=True))
        elif key in _STRINGS and not isinstance(value, str):
            raise InvalidArgument(_type_error(value, field, "string"))
        elif key == "OomKillDisable" and not isinstance(value, bool):
            raise InvalidArgument(_type_error(value, field, "bool"))
        elif key in _ARRAYS and not isinstance(value, list):
            raise InvalidArgument(_type_error(value, field, _ARRAYS[key]))
        elif key == "RestartPolicy" and not isinstance(value, dict):
            raise InvalidArgument(_type_error(value, field, "container.RestartPolicy"))


def _restart_policy(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The new policy, None when the body names none (``Name`` empty), checked with
    dockerd's messages."""
    if not value:
        return None
    name = value.get("Name")
    count = value.get("MaximumRetryCount")
    if name is not None and not isinstance(name, str):
        raise InvalidArgument(
            _type_error(name, "RestartPolicy.RestartPolicy.Name", "container.RestartPolicyMode")
        )
    if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
        raise InvalidArgument(
            _type_error(count, "RestartPolicy.RestartPolicy.MaximumRetryCount", "int", number=True)
        )
    name, count = name or "", count or 0
    if name in ("no", "always", "unless-stopped"):
        if count != 0:
            message = (
                "invalid restart policy: maximum retry count can only be used with 'on-failure'"
            )
            raise InvalidArgument(message + (" and cannot be negative" if count < 0 else ""))
    elif name == "on-failure":
        if count < 0:
            raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    elif name:
        raise InvalidArgument(
            f"invalid restart policy: unknown policy '{name}'; use one of "
            + ", ".join(f"'{p}'" for p in _POLICIES[:-1])
            + f", or '{_POLICIES[-1]}'"
        )
    if not name:
        return None  # dockerd: an empty name leaves the policy as it is
    return {"Name": name, "MaximumRetryCount": count}


def _check_resources(
    body: Mapping[str, Any],
    r: Mapping[str, Any],
    *,
    cpus: set[int],
    mems: set[int],
    ncpu: int,
) -> None:
    """dockerd's verifyPlatformContainerResources for an update, in its order."""
    memory, swap = r.get("Memory", 0), r.get("MemorySwap", 0)
    reservation = r.get("MemoryReservation", 0)
    if memory != 0 and memory < _MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    swappiness = body.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise InvalidArgument(
            f"Invalid value: {swappiness}, valid memory swappiness range is 0-100"
        )
    if reservation > 0 and reservation < _MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidArgument(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )
    nano, period, quota = r.get("NanoCpus", 0), r.get("CpuPeriod", 0), r.get("CpuQuota", 0)
    if nano > 0 and period > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano > 0 and quota > 0:
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if nano != 0 and not 0 < nano <= ncpu * 1_000_000_000:
        raise InvalidArgument(
            f"range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )
    if period != 0 and not 1000 <= period <= 1_000_000:
        raise InvalidArgument(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if 0 < quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    for key, what, available, label in (
        ("CpusetCpus", "cpuset cpus", cpus, "CPUs"),
        ("CpusetMems", "cpuset mems", mems, "memory nodes"),
    ):
        text = r.get(key) or ""
        try:
            wanted = parse_list(text)
        except ValueError as exc:
            raise InvalidArgument(f"Invalid value {text} for {what}: {exc}") from None
        if not wanted <= available:
            raise InvalidArgument(
                f"Requested {label} are not available - requested {text}, "
                f"available: {format_list(available)}"
            )
    weight = body.get("BlkioWeight") or 0
    if weight > 0 and not 10 <= weight <= 1000:
        raise InvalidArgument("Range of blkio weight is from 10 to 1000")
    if body.get("IOMaximumBandwidth") or body.get("IOMaximumIOps"):
        raise InvalidArgument(
            "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps"
        )
