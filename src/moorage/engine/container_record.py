"""A container as the engine records it, and Docker's views of it (inspect, ps).

One record per container, ``<root>/containers/<id>/container.json``, written
atomically (temporary file, fsync, rename), as dockerd keeps ``config.v2.json``.
The record holds what the user asked for and what the daemon decided (name,
restart count, whether a stop was manual); the live state of a running
container comes from its monitor (``state.json``), never from the record alone.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from moorage.engine.humanize import human_duration
from moorage.errors import InvalidArgument

NAME_PATTERN = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ZERO_TIME = "0001-01-01T00:00:00Z"

# Docker's container states.
CREATED, RUNNING, PAUSED, RESTARTING, REMOVING, EXITED, DEAD = (
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
)


# What dockerd's inspect shows for a HostConfig field the create request left out: Go's
# zero value, or the default the container runs with. docker-py sends only the fields
# its caller set, and code reading ``attrs["HostConfig"]["Memory"]`` expects them all.
_HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "AutoRemove": False, "VolumeDriver": "",
    "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None, "CapDrop": None,
    "CgroupnsMode": "private", "Dns": None, "DnsOptions": None, "DnsSearch": None,
    "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None,
    "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
    "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
    "ShmSize": 64 * 1024 * 1024, "Runtime": "moor-runtime", "Isolation": "", "CpuShares": 0,
    "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
    "BlkioWeightDevice": None, "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None,
    "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0,
    "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
    "Devices": None, "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0,
    "MemorySwap": 0, "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None,
    "Ulimits": None, "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
    "IOMaximumBandwidth": 0,
}  # fmt: skip


def host_config_view(host_config: dict[str, Any]) -> dict[str, Any]:
    """``HostConfig`` as inspect shows it: what was asked for, over dockerd's defaults
    (the /proc paths it masks and makes read-only, unless privileged, included)."""
    from moorage.oci.default_spec import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS

    out = {**_HOST_CONFIG_DEFAULTS, **host_config}
    privileged = bool(host_config.get("Privileged"))
    out.setdefault("MaskedPaths", None if privileged else list(DEFAULT_MASKED_PATHS))
    out.setdefault("ReadonlyPaths", None if privileged else list(DEFAULT_READONLY_PATHS))
    return out


def check_name(name: str) -> str:
    """A container name without its leading slash, or InvalidArgument naming it."""
    if not NAME_PATTERN.match(name):
        raise InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name.removeprefix("/")


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 UTC time as we write them; 0 for zero."""
    if not text or text.startswith("0001-"):
        return 0.0
    main, _, frac = text.rstrip("Z").partition(".")
    import calendar

    seconds = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    return seconds + (float("0." + frac) if frac else 0.0)


def now_rfc3339() -> str:
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + f".{t % 10**9:09d}Z"


@dataclass
class State:
    status: str = CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    monitor_pid: int = 0
    health: dict[str, Any] | None = None

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Status": self.status,
            "Running": self.status in (RUNNING, PAUSED),
            "Paused": self.status == PAUSED,
            "Restarting": self.status == RESTARTING,
            "OOMKilled": self.oom_killed,
            "Dead": self.status == DEAD,
            "Pid": self.pid if self.status in (RUNNING, PAUSED) else 0,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
        }
        if self.health is not None:
            out["Health"] = self.health
        return out


@dataclass
class MountPoint:
    """A volume, bind or tmpfs mount as inspect's ``Mounts`` shows it."""

    type: str  # "volume", "bind", "tmpfs"
    destination: str
    source: str = ""
    name: str = ""  # volume name
    rw: bool = True
    mode: str = ""
    propagation: str = ""
    no_copy: bool = False
    anonymous: bool = False

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Type": self.type,
            "Source": self.source,
            "Destination": self.destination,
            "Mode": self.mode,
            "RW": self.rw,
            "Propagation": self.propagation,
        }
        if self.type == "volume":
            out = {"Type": "volume", "Name": self.name, **out, "Driver": "local"}
        return out


@dataclass
class Container:
    id: str
    name: str  # without the leading slash
    created: str
    image: str  # as the user wrote it (Config.Image)
    image_id: str
    path: str
    args: list[str]
    config: dict[str, Any]  # Docker's Config, merged with the image's
    host_config: dict[str, Any]  # Docker's HostConfig as accepted
    request: dict[str, Any]  # the create body, to generate the spec at each start
    snapshot_key: str
    top_layer: str  # chain id the snapshot sits on
    mounts: list[MountPoint] = field(default_factory=list)
    state: State = field(default_factory=State)
    restart_count: int = 0
    manually_stopped: bool = False
    has_been_started: bool = False
    # Networks it was disconnected from that its HostConfig.NetworkMode still names:
    # Docker keeps the mode, and the container starts without that network.
    detached_networks: list[str] = field(default_factory=list)
    exec_ids: list[str] = field(default_factory=list)

    # --- persistence ---------------------------------------------------------------

    def save(self, directory: str) -> None:
        path = os.path.join(directory, "container.json")
        tmp = f"{path}.{os.getpid()}.tmp"
        data = asdict(self)
        data.pop("exec_ids")
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)

    @classmethod
    def load(cls, directory: str) -> Container:
        with open(os.path.join(directory, "container.json"), "rb") as f:
            data = json.load(f)
        data["state"] = State(**data["state"])
        data["mounts"] = [MountPoint(**m) for m in data.get("mounts", [])]
        return cls(**data)

    # --- Docker's views -------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.state.status in (RUNNING, PAUSED)

    @property
    def restart_policy(self) -> dict[str, Any]:
        policy = self.host_config.get("RestartPolicy") or {}
        return {
            "Name": policy.get("Name") or "no",
            "MaximumRetryCount": policy.get("MaximumRetryCount") or 0,
        }

    def command(self) -> str:
        return " ".join([self.path, *self.args]).strip()

    def status_text(self, now: float | None = None) -> str:
        """What ``ps`` shows in STATUS, as dockerd words it."""
        now = time.time() if now is None else now
        st = self.state
        if st.status in (RUNNING, PAUSED):
            text = f"Up {human_duration(now - parse_rfc3339(st.started_at))}"
            if st.status == PAUSED:
                return text + " (Paused)"
            health = (st.health or {}).get("Status")
            if health == "starting":
                return text + " (health: starting)"
            if health in ("healthy", "unhealthy"):
                return f"{text} ({health})"
            return text
        if st.status == RESTARTING:
            ago = human_duration(now - parse_rfc3339(st.finished_at))
            return f"Restarting ({st.exit_code}) {ago} ago"
        if st.status == REMOVING:
            return "Removal In Progress"
        if st.status == DEAD:
            return "Dead"
        if st.status == EXITED and st.finished_at != ZERO_TIME:
            ago = human_duration(now - parse_rfc3339(st.finished_at))
            return f"Exited ({st.exit_code}) {ago} ago"
        return "Created"

    def ports(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        bindings = self.host_config.get("PortBindings") or {}
        for port in sorted((self.config.get("ExposedPorts") or {}) | bindings):
            number, _, proto = port.partition("/")
            host = bindings.get(port) or []
            if not host or not self.running:
                out.append({"PrivatePort": int(number), "Type": proto or "tcp"})
                continue
            for b in host:
                out.append(
                    {
                        "IP": b.get("HostIp") or "0.0.0.0",
                        "PrivatePort": int(number),
                        "PublicPort": int(b.get("HostPort") or 0),
                        "Type": proto or "tcp",
                    }
                )
        return out

    def summary(self, image_name: str | None = None) -> dict[str, Any]:
        """One entry of ``GET /containers/json``."""
        return {
            "Id": self.id,
            "Names": ["/" + self.name],
            "Image": image_name or self.image,
            "ImageID": self.image_id,
            "Command": self.command(),
            "Created": int(parse_rfc3339(self.created)),
            "Ports": self.ports(),
            "Labels": self.config.get("Labels") or {},
            "State": self.state.status,
            "Status": self.status_text(),
            "HostConfig": {"NetworkMode": self.host_config.get("NetworkMode") or "bridge"},
            "NetworkSettings": {"Networks": {}},
            "Mounts": [m.to_api() for m in self.mounts],
        }

    def inspect(self, directory: str, driver: str, graph: dict[str, str]) -> dict[str, Any]:
        """``GET /containers/{id}/json``."""
        return {
            "Id": self.id,
            "Created": self.created,
            "Path": self.path,
            "Args": self.args,
            "State": self.state.to_api(),
            "Image": self.image_id,
            "ResolvConfPath": os.path.join(directory, "resolv.conf"),
            "HostnamePath": os.path.join(directory, "hostname"),
            "HostsPath": os.path.join(directory, "hosts"),
            "LogPath": os.path.join(directory, f"{self.id}-json.log"),
            "Name": "/" + self.name,
            "RestartCount": self.restart_count,
            "Driver": driver,
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": list(self.exec_ids) or None,
            "HostConfig": host_config_view(self.host_config),
            "GraphDriver": {"Name": driver, "Data": graph},
            "Mounts": [m.to_api() for m in self.mounts],
            "Config": self.config,
            "NetworkSettings": {
                "Bridge": "",
                "SandboxID": "",
                "Ports": {p: None for p in self.config.get("ExposedPorts") or {}},
                "SandboxKey": "",
                "Networks": {},
            },
        }
