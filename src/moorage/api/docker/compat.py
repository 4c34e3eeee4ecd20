"""What differs between the Engine API versions Moorage serves, where a client sees it.

The engine answers in the newest shape (API 1.50, what the docker CLI 28 speaks); the
functions here turn a request or an answer into the shape of the version the request
speaks (``server.api_version``), as dockerd's routers do. The differences, from moby's
API version history, that touch what Moorage serves:

- 1.42: attach, exec and logs label a multiplexed stream
  ``application/vnd.docker.multiplexed-stream`` (before, every stream is a
  ``raw-stream``: ``hijack.stream_content_type``); ``stop`` and ``restart`` take
  ``signal`` (``containers.py``); ``ConsoleSize`` (create and exec) is honoured; a
  mount's options must match its type; ``/system/df`` takes ``type``;
  ``/volumes/prune`` keeps named volumes (``volumes.py``).
- 1.43: an untagged image is listed with empty ``RepoTags`` and ``RepoDigests``, not
  ``<none>:<none>``; ``HostConfig.Annotations``.
- 1.44: no ``VirtualSize`` on images (list, inspect, df); an image without ``Created``
  leaves it out; ``Healthcheck.StartInterval``; a container created on several networks.
- 1.45: image inspect has no ``Container`` and ``ContainerConfig``.
- 1.48: image inspect's ``Descriptor``.
- 1.49: ``/info``'s ``RegistryConfig`` has no ``AllowNondistributableArtifacts*``.
- 1.50: image inspect's ``Config`` has no container-only fields (``Hostname``, ``Tty``,
  ...); ``/info`` has no ``BridgeNfIptables`` and ``BridgeNfIp6tables``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from moorage.api.docker.server import version_key
from moorage.errors import InvalidArgument

__all__ = [
    "DISK_USAGE_TYPES",
    "before",
    "create_request",
    "disk_usage",
    "disk_usage_types",
    "exec_request",
    "image_inspect",
    "image_summary",
    "info",
]

# /system/df?type=: the parts of the answer each one asks for.
DISK_USAGE_TYPES = {
    "container": ("Containers",),
    "image": ("Images", "LayersSize"),
    "volume": ("Volumes",),
    "build-cache": ("BuildCache",),
}

# Image config fields that are a container's, not an image's: in image inspect's
# Config (always empty) until API 1.50.
_CONTAINER_ONLY_CONFIG: dict[str, Any] = {
    "Hostname": "",
    "Domainname": "",
    "AttachStdin": False,
    "AttachStdout": False,
    "AttachStderr": False,
    "Tty": False,
    "OpenStdin": False,
    "StdinOnce": False,
    "Image": "",
}

# The ContainerConfig of an image inspect before API 1.45: never set by a build today.
_EMPTY_CONTAINER_CONFIG: dict[str, Any] = {
    **_CONTAINER_ONLY_CONFIG,
    "User": "",
    "Env": None,
    "Cmd": None,
    "Volumes": None,
    "WorkingDir": "",
    "Entrypoint": None,
    "OnBuild": None,
    "Labels": None,
}

_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time, what old versions show for "unset"


def before(version: str, than: str) -> bool:
    """Whether API ``version`` is older than ``than``: ``before("1.41", "1.42")``."""
    return version_key(version) < version_key(than)


def container_inspect(version: str, data: dict[str, Any]) -> dict[str, Any]:
    """``GET /containers/{id}/json``: before 1.45, dockerd listed the container's short
    ID and hostname among its aliases on user-defined networks (later versions put
    them in DNSNames only); docker-compose 1.x looks for the short ID there."""
    if before(version, "1.45"):
        names = [data["Id"][:12], (data.get("Config") or {}).get("Hostname") or ""]
        networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
        for network, endpoint in networks.items():
            if network in ("bridge", "host", "none", "default") or not isinstance(endpoint, dict):
                continue
            aliases = list(endpoint.get("Aliases") or [])
            endpoint["Aliases"] = list(dict.fromkeys([*aliases, *(n for n in names if n)]))
    return data


def image_summary(version: str, summary: dict[str, Any]) -> dict[str, Any]:
    """An entry of ``GET /images/json`` (and of ``/system/df``'s Images)."""
    out = dict(summary)
    out.pop("VirtualSize", None)
    if before(version, "1.43") and not out.get("RepoTags") and not out.get("RepoDigests"):
        out["RepoTags"] = ["<none>:<none>"]
        out["RepoDigests"] = ["<none>@<none>"]
    if before(version, "1.44"):
        out["VirtualSize"] = out.get("Size", 0)
    return out


def image_inspect(version: str, data: dict[str, Any]) -> dict[str, Any]:
    """``GET /images/{name}/json``."""
    out = dict(data)
    out.pop("VirtualSize", None)
    config = out.get("Config")
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k not in _CONTAINER_ONLY_CONFIG}
        if before(version, "1.50"):
            config = {**_CONTAINER_ONLY_CONFIG, **config}
        out["Config"] = config
    if before(version, "1.44"):
        out["VirtualSize"] = out.get("Size", 0)
        if not out.get("Created"):
            out["Created"] = _ZERO_TIME
    elif "Created" in out and not out["Created"]:
        del out["Created"]
    if before(version, "1.45"):
        out.setdefault("Container", "")
        out.setdefault("ContainerConfig", copy.deepcopy(_EMPTY_CONTAINER_CONFIG))
    if before(version, "1.48"):
        out.pop("Descriptor", None)
    return out


def info(version: str, data: dict[str, Any]) -> dict[str, Any]:
    """``GET /info``."""
    out = dict(data)
    registry = out.get("RegistryConfig")
    if isinstance(registry, dict):
        registry = {
            k: v for k, v in registry.items() if not k.startswith("AllowNondistributableArtifacts")
        }
        if before(version, "1.49"):
            registry["AllowNondistributableArtifactsCIDRs"] = None
            registry["AllowNondistributableArtifactsHostnames"] = None
        out["RegistryConfig"] = registry
    if before(version, "1.50"):
        out.setdefault("BridgeNfIptables", False)
        out.setdefault("BridgeNfIp6tables", False)
    else:
        out.pop("BridgeNfIptables", None)
        out.pop("BridgeNfIp6tables", None)
    return out


def disk_usage_types(version: str, types: Iterable[str]) -> list[str]:
    """``/system/df``'s ``type`` parameters, checked; none before API 1.42 (ignored)."""
    if before(version, "1.42"):
        return []
    wanted = list(types)
    for name in wanted:
        if name not in DISK_USAGE_TYPES:
            raise InvalidArgument(f"unknown object type: {name}")
    return wanted


def disk_usage(version: str, data: dict[str, Any], types: Iterable[str] = ()) -> dict[str, Any]:
    """``GET /system/df``; with ``types`` (see :func:`disk_usage_types`) only those
    parts are filled, the others are null, as dockerd answers."""
    out = dict(data)
    if isinstance(out.get("Images"), list):
        out["Images"] = [image_summary(version, s) for s in out["Images"]]
    keep = {key for name in types for key in DISK_USAGE_TYPES[name]}
    if keep:
        for keys in DISK_USAGE_TYPES.values():
            for key in keys:
                if key not in keep:
                    out[key] = 0 if key == "LayersSize" else None
    return out


# The keys of a POST /containers/create body (container.Config, HostConfig with its
# Resources, and the two that hold them), as dockerd's JSON decoding knows them.
_CONFIG_FIELDS = frozenset(
    {
        "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
        "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
        "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled",
        "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell", "HostConfig",
        "NetworkingConfig",
    }
)  # fmt: skip
_HOST_CONFIG_FIELDS = frozenset(
    {
        "Binds", "ContainerIDFile", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy",
        "AutoRemove", "VolumeDriver", "VolumesFrom", "ConsoleSize", "Annotations", "CapAdd",
        "CapDrop", "CgroupnsMode", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd",
        "IpcMode", "Cgroup", "Links", "OomScoreAdj", "PidMode", "Privileged", "PublishAllPorts",
        "ReadonlyRootfs", "SecurityOpt", "StorageOpt", "Tmpfs", "UTSMode", "UsernsMode",
        "ShmSize", "Sysctls", "Runtime", "Isolation", "Mounts", "MaskedPaths", "ReadonlyPaths",
        "Init", "CpuShares", "Memory", "NanoCpus", "CgroupParent", "BlkioWeight",
        "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
        "BlkioDeviceWriteIOps", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod",
        "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "Devices", "DeviceCgroupRules",
        "DeviceRequests", "KernelMemory", "KernelMemoryTCP", "MemoryReservation", "MemorySwap",
        "MemorySwappiness", "OomKillDisable", "PidsLimit", "Ulimits", "CpuCount", "CpuPercent",
        "IOMaximumIOps", "IOMaximumBandwidth",
    }
)  # fmt: skip


def _known_fields(data: dict[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    """``data`` as Go's JSON decoding reads it into a struct of ``fields``: a key in
    another case is that field (an exact match wins), a key of no field is ignored."""
    by_lower = {name.lower(): name for name in fields}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key if key in fields else by_lower.get(key.lower())
        if name is not None and (name == key or name not in data):
            out[name] = value
    return out


def create_request(version: str, body: dict[str, Any]) -> dict[str, Any]:
    """A ``POST /containers/create`` body as the engine takes it. As dockerd decodes
    it, keys are matched in any case and unknown keys are ignored (no warning); what
    ``version`` did not know yet is dropped, what it refused is refused. Values of the
    wrong type are left for the engine's validation to name."""
    out = _known_fields(copy.deepcopy(body), _CONFIG_FIELDS)
    host = out.get("HostConfig")
    if isinstance(host, dict):
        host = out["HostConfig"] = _known_fields(host, _HOST_CONFIG_FIELDS)
    else:
        host = {}
    mounts = host.get("Mounts")
    mounts = [m for m in mounts if isinstance(m, dict)] if isinstance(mounts, list) else []
    if before(version, "1.42"):
        host.pop("ConsoleSize", None)
        for mount in mounts:
            # Not checked before 1.42: options of another mount type were ignored.
            for key, kind in _MOUNT_OPTIONS.items():
                if mount.get(key) is not None and mount.get("Type") != kind:
                    del mount[key]
    else:
        for i, mount in enumerate(mounts):
            for key, kind in _MOUNT_OPTIONS.items():
                if mount.get(key) is not None and mount.get("Type") != kind:
                    raise InvalidArgument(
                        f"HostConfig.Mounts[{i}]: {key} must not be specified on mount type "
                        f'"{mount.get("Type")}"'
                    )
    if before(version, "1.43"):
        host.pop("Annotations", None)
    if before(version, "1.44"):
        health = out.get("Healthcheck")
        if isinstance(health, dict):
            health.pop("StartInterval", None)
        networking = out.get("NetworkingConfig")
        endpoints = networking.get("EndpointsConfig") if isinstance(networking, dict) else None
        if isinstance(endpoints, dict) and len(endpoints) > 1:
            raise InvalidArgument(
                "Container cannot be created with multiple network endpoints: "
                + ", ".join(endpoints)
            )
    return out


_MOUNT_OPTIONS = {"BindOptions": "bind", "VolumeOptions": "volume", "TmpfsOptions": "tmpfs"}

# A container update body: Docker's UpdateConfig, the Resources of a HostConfig and a
# restart policy.
_UPDATE_FIELDS = frozenset(
    {
        "CpuShares", "Memory", "NanoCpus", "CgroupParent", "BlkioWeight", "BlkioWeightDevice",
        "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
        "BlkioDeviceWriteIOps", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod",
        "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "Devices", "DeviceCgroupRules",
        "DeviceRequests", "KernelMemory", "KernelMemoryTCP", "MemoryReservation", "MemorySwap",
        "MemorySwappiness", "OomKillDisable", "PidsLimit", "Ulimits", "CpuCount", "CpuPercent",
        "IOMaximumIOps", "IOMaximumBandwidth", "RestartPolicy",
    }
)  # fmt: skip
_RESTART_POLICY_FIELDS = frozenset({"Name", "MaximumRetryCount"})


def update_request(body: Any) -> Any:
    """A ``POST /containers/{id}/update`` body as the engine takes it: keys matched in
    any case, unknown ones dropped, and a ``PidsLimit`` of at most 0 meaning "unlimited",
    stored as 0 (dockerd's router does that; it ignores PidsLimit before API 1.40, older
    than any version served). A body that is no object is left for the engine to refuse."""
    if not isinstance(body, dict):
        return body
    out = _known_fields(copy.deepcopy(body), _UPDATE_FIELDS)
    policy = out.get("RestartPolicy")
    if isinstance(policy, dict):
        out["RestartPolicy"] = _known_fields(policy, _RESTART_POLICY_FIELDS)
    pids = out.get("PidsLimit")
    if isinstance(pids, int) and not isinstance(pids, bool) and pids <= 0:
        out["PidsLimit"] = 0
    return out


def exec_request(version: str, body: dict[str, Any]) -> dict[str, Any]:
    """An exec create or start body: ``ConsoleSize`` is honoured from API 1.42."""
    if before(version, "1.42") and "ConsoleSize" in body:
        return {k: v for k, v in body.items() if k != "ConsoleSize"}
    return body
