"""The network records the engine keeps: one JSON file per network, and its endpoints.

Layout::

    <root>/networks/<id>.json       one NetworkRecord, replaced atomically on change

A record holds what must survive a daemon restart: the network's settings, its
address table (``ipam.Addresses``: no address is handed out twice after a restart)
and its endpoints, one per running container attached to it, with the host end of
the container's veth and, on the endpoint that carries them, the host ports the
container publishes. Endpoints exist only while their containers run: a stop
releases them (Docker's bridge driver does the same), so a stopped container holds
no address.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from moorage.engine.network.ipam import Addresses
from moorage.engine.network.ports import Reserved
from moorage.errors import InvalidArgument

__all__ = ["BRIDGE", "HOST", "NULL", "Endpoint", "NetworkRecord", "load_all", "save"]

BRIDGE, HOST, NULL = "bridge", "host", "null"


@dataclass(frozen=True)
class Endpoint:
    """A running container's attachment to one network."""

    container_id: str
    container_name: str
    endpoint_id: str
    ifname: str  # inside the container: eth0, eth1...
    host_ifname: str  # the host end of its veth
    ip: IPv4Address
    mac: str
    aliases: tuple[str, ...] = ()
    ports: tuple[Reserved, ...] = ()  # published through this endpoint

    def dns_names(self) -> list[str]:
        """The names other containers on the network resolve to it (Docker's DNSNames)."""
        names = [self.container_name, *self.aliases, self.container_id[:12]]
        return list(dict.fromkeys(n for n in names if n))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ContainerID": self.container_id,
            "ContainerName": self.container_name,
            "EndpointID": self.endpoint_id,
            "Ifname": self.ifname,
            "HostIfname": self.host_ifname,
            "IP": str(self.ip),
            "MAC": self.mac,
            "Aliases": list(self.aliases),
            "Ports": [p.to_dict() for p in self.ports],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Endpoint:
        return cls(
            container_id=str(data["ContainerID"]),
            container_name=str(data["ContainerName"]),
            endpoint_id=str(data["EndpointID"]),
            ifname=str(data["Ifname"]),
            host_ifname=str(data["HostIfname"]),
            ip=IPv4Address(data["IP"]),
            mac=str(data["MAC"]),
            aliases=tuple(str(a) for a in data.get("Aliases") or ()),
            ports=tuple(Reserved.from_dict(p) for p in data.get("Ports") or ()),
        )


@dataclass
class NetworkRecord:
    id: str
    name: str
    driver: str  # BRIDGE, HOST or NULL
    created: str
    builtin: bool = False  # bridge, host and none: never removed
    bridge: str = ""  # the bridge interface (bridge driver)
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    addresses: Addresses | None = None  # bridge driver
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # by container id

    @property
    def dns(self) -> bool:
        """Whether containers on it resolve each other by name: user-defined bridges only."""
        return self.driver == BRIDGE and not self.builtin

    def to_dict(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Name": self.name,
            "Driver": self.driver,
            "Created": self.created,
            "Builtin": self.builtin,
            "Bridge": self.bridge,
            "Internal": self.internal,
            "Labels": dict(self.labels),
            "Options": dict(self.options),
            "Addresses": None if self.addresses is None else self.addresses.to_dict(),
            "Endpoints": {cid: e.to_dict() for cid, e in self.endpoints.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkRecord:
        addresses = data.get("Addresses")
        return cls(
            id=str(data["Id"]),
            name=str(data["Name"]),
            driver=str(data["Driver"]),
            created=str(data["Created"]),
            builtin=bool(data.get("Builtin")),
            bridge=str(data.get("Bridge") or ""),
            internal=bool(data.get("Internal")),
            labels={str(k): str(v) for k, v in (data.get("Labels") or {}).items()},
            options={str(k): str(v) for k, v in (data.get("Options") or {}).items()},
            addresses=None if addresses is None else Addresses.from_dict(addresses),
            endpoints={
                str(cid): Endpoint.from_dict(e) for cid, e in (data.get("Endpoints") or {}).items()
            },
        )


def _directory(root: str) -> str:
    return os.path.join(root, "networks")


def save(root: str, record: NetworkRecord) -> None:
    """Write ``record`` atomically (a crash leaves the old file or the new one)."""
    directory = _directory(root)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, f"{record.id}.json")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(record.to_dict(), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def delete(root: str, network_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(_directory(root), f"{network_id}.json"))


def load_all(root: str) -> list[NetworkRecord]:
    """Every record on disk; a malformed one raises InvalidArgument naming its file."""
    directory = _directory(root)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    records = []
    for name in names:
        path = os.path.join(directory, name)
        if name.endswith(".json.tmp"):
            os.unlink(path)  # a write that a crash cut short
            continue
        if not name.endswith(".json"):
            continue
        try:
            with open(path) as f:
                records.append(NetworkRecord.from_dict(json.load(f)))
        except (OSError, ValueError, KeyError, TypeError, InvalidArgument) as exc:
            raise InvalidArgument(f"network record {path}: {exc}") from exc
    return records
