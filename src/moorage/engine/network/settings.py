"""Docker's JSON shapes of networks and of a container's network settings.

``network_to_api`` is ``GET /networks/{id}`` (and each entry of ``GET /networks``);
``container_network_settings`` is a container inspect's ``NetworkSettings``;
``summary_networks`` and ``summary_ports`` are what ``GET /containers/json`` lists.
Addresses exist only while a container runs (Docker's bridge driver too), so a
stopped container shows its networks with empty addresses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from moorage.engine.network.ports import Reserved, network_settings_ports
from moorage.engine.network.records import BRIDGE, Endpoint, NetworkRecord

__all__ = [
    "container_network_settings",
    "network_to_api",
    "summary_networks",
    "summary_ports",
]

Attached = Sequence[tuple[NetworkRecord, Endpoint]]


def network_to_api(record: NetworkRecord, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``names``: container id -> name, for the ``Containers`` map."""
    config = []
    if record.addresses is not None:
        config.append(
            {"Subnet": str(record.addresses.subnet), "Gateway": str(record.addresses.gateway)}
        )
    options = dict(record.options)
    if record.driver == BRIDGE and record.builtin:
        options.setdefault("com.docker.network.bridge.name", record.bridge)
    containers = {}
    for cid, endpoint in record.endpoints.items():
        prefix = record.addresses.subnet.prefixlen if record.addresses is not None else 0
        containers[cid] = {
            "Name": (names or {}).get(cid, endpoint.container_name),
            "EndpointID": endpoint.endpoint_id,
            "MacAddress": endpoint.mac,
            "IPv4Address": f"{endpoint.ip}/{prefix}",
            "IPv6Address": "",
        }
    return {
        "Name": record.name,
        "Id": record.id,
        "Created": record.created,
        "Scope": "local",
        "Driver": record.driver,
        "EnableIPv4": True,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": config},
        "Internal": record.internal,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": options,
        "Labels": dict(record.labels),
    }


def _endpoint_settings(
    record: NetworkRecord | None, endpoint: Endpoint | None, config: Mapping[str, Any]
) -> dict[str, Any]:
    ip = gateway = mac = ""
    prefix = 0
    if record is not None and endpoint is not None and record.addresses is not None:
        ip, mac = str(endpoint.ip), endpoint.mac
        gateway = "" if record.internal else str(record.addresses.gateway)
        prefix = record.addresses.subnet.prefixlen
    return {
        "IPAMConfig": config.get("IPAMConfig") or None,
        "Links": None,
        "Aliases": list(config.get("Aliases") or []) or None,
        "MacAddress": mac,
        "DriverOpts": None,
        "GwPriority": 0,
        "NetworkID": "" if record is None else record.id,
        "EndpointID": "" if endpoint is None else endpoint.endpoint_id,
        "Gateway": gateway,
        "IPAddress": ip,
        "IPPrefixLen": prefix,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": None
        if endpoint is None or not record or not record.dns
        else endpoint.dns_names(),
    }


def container_network_settings(
    attached: Attached,
    configured: Mapping[str, Mapping[str, Any]],
    lookup: Mapping[str, NetworkRecord],
    exposed: Iterable[str],
    sandbox_key: str = "",
) -> dict[str, Any]:
    """A container's ``NetworkSettings``.

    ``attached``: its endpoints (while it runs); ``configured``: network name -> its
    EndpointsConfig entry, for every network it is on, running or not; ``lookup``:
    those networks' records by name (a network removed since is left out).
    """
    by_name = {record.name: (record, endpoint) for record, endpoint in attached}
    networks: dict[str, Any] = {}
    for name, config in configured.items():
        record, endpoint = by_name.get(name, (lookup.get(name), None))
        networks[name] = _endpoint_settings(record, endpoint, config)
    reserved: list[Reserved] = [p for _, endpoint in attached for p in endpoint.ports]
    settings: dict[str, Any] = {
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": sandbox_key,
        "Ports": network_settings_ports(exposed, reserved),
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": "",
        "Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "MacAddress": "",
        "Networks": networks,
    }
    # The top-level fields describe the default bridge only (Docker's legacy fields).
    default = networks.get("bridge")
    if default is not None:
        for key in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress"):
            settings[key] = default[key]
    return settings


def summary_networks(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``NetworkSettings`` as ``GET /containers/json`` lists it."""
    return {"Networks": dict(settings.get("Networks") or {})}


def summary_ports(attached: Attached, exposed: Iterable[str]) -> list[dict[str, Any]]:
    """``Ports`` of ``GET /containers/json``: published ports with their host side,
    exposed ones without."""
    out: list[dict[str, Any]] = []
    published = set()
    for _, endpoint in attached:
        for p in endpoint.ports:
            published.add((p.container_port, p.proto))
            out.append(
                {
                    "IP": str(p.host_ip),
                    "PrivatePort": p.container_port,
                    "PublicPort": p.host_port,
                    "Type": p.proto,
                }
            )
    for key in exposed:
        number, _, proto = key.partition("/")
        if number.isdigit() and (int(number), proto or "tcp") not in published:
            out.append({"PrivatePort": int(number), "Type": proto or "tcp"})
    return sorted(out, key=lambda p: (p["PrivatePort"], p["Type"], p.get("PublicPort", 0)))
