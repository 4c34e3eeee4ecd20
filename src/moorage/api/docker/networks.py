"""Network routes, in the Docker Engine API's shapes.

``GET /networks``, ``GET /networks/{id}``, ``POST /networks/create``,
``DELETE /networks/{id}``, ``POST /networks/{id}/connect``,
``POST /networks/{id}/disconnect`` and ``POST /networks/prune``. The engine's
``NetworkService`` keeps the networks; connecting and disconnecting go through the
container service, which owns what a container is configured with.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from moorage.api.docker import params
from moorage.api.docker.server import ENGINE, Routes, json_response
from moorage.engine.engine import Engine
from moorage.engine.network.records import NetworkRecord
from moorage.engine.network.settings import network_to_api
from moorage.errors import InvalidArgument

routes = Routes()

_LIST_FILTERS = {"dangling", "driver", "id", "label", "name", "scope", "type"}
_DRIVERS = {"bridge", "host", "null"}


def _names(engine: Engine) -> dict[str, str]:
    return {c.id: c.name for c in engine.containers.all()}


def _matches(record: NetworkRecord, filters: Mapping[str, list[str]]) -> bool:
    """Docker's network list filters; every key must hold, any value of a key may."""
    checks: dict[str, Callable[[str], bool]] = {
        "name": lambda v: v in record.name,
        "id": lambda v: record.id.startswith(v),
        "driver": lambda v: record.driver == v,
        "scope": lambda v: v == "local",
        "type": lambda v: v == ("builtin" if record.builtin else "custom"),
        "dangling": lambda v: (not record.endpoints and not record.builtin)
        == (v.lower() in ("1", "true")),
        "label": lambda v: _label(record.labels, v),
    }
    for key, values in filters.items():
        if key not in _LIST_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "type" and any(v not in ("builtin", "custom") for v in values):
            raise InvalidArgument(f"invalid filter: 'type'='{values}'")
        if key == "label":
            if not all(checks[key](v) for v in values):
                return False
        elif not any(checks[key](v) for v in values):
            return False
    return True


def _label(labels: Mapping[str, str], spec: str) -> bool:
    key, sep, value = spec.partition("=")
    return key in labels and (not sep or labels[key] == value)


@routes.add("GET", "/networks")
async def list_networks(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    filters = params.filters(request)

    def listing() -> list[dict[str, Any]]:
        names = _names(engine)
        chosen = [r for r in engine.networks.all() if _matches(r, filters)]
        return [network_to_api(r, names) for r in chosen]

    return json_response(await asyncio.to_thread(listing))


@routes.add("GET", "/networks/{id}")
async def inspect_network(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]

    def inspect() -> dict[str, Any]:
        return network_to_api(engine.networks.get(request.match_info["id"]), _names(engine))

    return json_response(await asyncio.to_thread(inspect))


def _string(body: Mapping[str, Any], key: str, what: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"{what}: {key} must be a string, not {orjson.dumps(value).decode()}")
    return value


def _string_map(body: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgument(f"{what}: {key} must be an object of strings")
    return value


def _ipam(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The one IPv4 pool of ``IPAM.Config``: (subnet, gateway)."""
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("network create request: IPAM must be an object")
    driver = ipam.get("Driver") or "default"
    if driver != "default":
        raise InvalidArgument(f'ipam driver "{driver}" not found')
    pools = ipam.get("Config") or []
    if not isinstance(pools, list) or not all(isinstance(p, dict) for p in pools):
        raise InvalidArgument("network create request: IPAM.Config must be a list of objects")
    if len(pools) > 1:
        raise InvalidArgument("network create request: only one IPAM pool is supported")
    if not pools:
        return None, None
    pool = pools[0]
    if pool.get("IPRange"):
        raise InvalidArgument("network create request: IPAM IPRange is not supported")
    return _string(pool, "Subnet", "IPAM.Config"), _string(pool, "Gateway", "IPAM.Config")


@routes.add("POST", "/networks/create")
async def create_network(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    what = "network create request"
    body = await params.json_body(request, what)
    name = _string(body, "Name", what)
    if not name:
        raise InvalidArgument("network create request: Name is required")
    driver = _string(body, "Driver", what) or "bridge"
    if body.get("EnableIPv6"):
        raise InvalidArgument("network create request: IPv6 is not supported")
    subnet, gateway = _ipam(body)
    record = await asyncio.to_thread(
        engine.networks.create,
        name,
        driver=driver,
        subnet=subnet,
        gateway=gateway,
        internal=bool(body.get("Internal")),
        labels=_string_map(body, "Labels", what),
        options=_string_map(body, "Options", what),
    )
    engine.events.publish("network", "create", record.id, {"name": record.name, "type": driver})
    return json_response({"Id": record.id, "Warning": ""}, status=201)


@routes.add("DELETE", "/networks/{id}")
async def remove_network(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]

    def remove() -> NetworkRecord:
        record = engine.networks.get(request.match_info["id"])
        engine.networks.remove(record.id)
        return record

    record = await asyncio.to_thread(remove)
    engine.events.publish("network", "destroy", record.id, {"name": record.name})
    return web.Response(status=204)


_ALIAS = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def _endpoint_config(body: Mapping[str, Any]) -> dict[str, Any]:
    config = body.get("EndpointConfig") or {}
    if not isinstance(config, dict):
        raise InvalidArgument("network connect request: EndpointConfig must be an object")
    aliases = config.get("Aliases") or []
    if not isinstance(aliases, list) or not all(
        isinstance(a, str) and _ALIAS.match(a) for a in aliases
    ):
        raise InvalidArgument(f"network connect request: invalid Aliases {aliases!r}")
    out: dict[str, Any] = {}
    if aliases:
        out["Aliases"] = aliases
    ipam = config.get("IPAMConfig") or {}
    if not isinstance(ipam, dict):
        raise InvalidArgument("network connect request: IPAMConfig must be an object")
    if ipam.get("IPv4Address"):
        out["IPAMConfig"] = {"IPv4Address": _string(ipam, "IPv4Address", "IPAMConfig")}
    return out


async def _container_request(request: web.Request, what: str) -> tuple[dict[str, Any], str]:
    """A connect or disconnect body, and the container it names (required)."""
    body = await params.json_body(request, what)
    container = _string(body, "Container", what)
    if not container:
        raise InvalidArgument(f"{what}: Container is required")
    return body, container


@routes.add("POST", "/networks/{id}/connect")
async def connect_network(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    body, container = await _container_request(request, "network connect request")
    await asyncio.to_thread(
        engine.containers.connect_network,
        request.match_info["id"],
        container,
        _endpoint_config(body),
    )
    return web.Response(status=200)


@routes.add("POST", "/networks/{id}/disconnect")
async def disconnect_network(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    body, container = await _container_request(request, "network disconnect request")
    await asyncio.to_thread(
        engine.containers.disconnect_network,
        request.match_info["id"],
        container,
        bool(body.get("Force")),
    )
    return web.Response(status=200)


@routes.add("POST", "/networks/prune")
async def prune_networks(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    filters = params.filters(request)
    for key in filters:
        if key not in ("label", "until"):
            raise InvalidArgument(f"invalid filter '{key}'")
    until = None
    if filters.get("until"):
        import time

        from moorage.engine.logs import parse_time_filter

        until = parse_time_filter(filters["until"][0], time.time())
    removed = await asyncio.to_thread(engine.networks.prune, filters.get("label") or [], until)
    return json_response({"NetworksDeleted": removed or None})
