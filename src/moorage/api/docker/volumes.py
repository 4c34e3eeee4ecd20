"""Volume routes, in the Docker Engine API's shapes (v1.47).

``GET /volumes``, ``POST /volumes/create``, ``GET /volumes/{name}``,
``DELETE /volumes/{name}`` and ``POST /volumes/prune``. The engine's
:class:`~moorage.engine.volumes.VolumeService` does the work; which containers use
a volume comes from ``engine.volume_users``, so that a removal of a volume in use
is a 409 naming them, as dockerd's is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from moorage.api.docker import params
from moorage.api.docker.server import ENGINE, Routes, json_response, version_before
from moorage.errors import InvalidArgument

routes = Routes()

# API versions before 1.42 prune every unused volume, named ones too (dockerd does so).
_PRUNE_ALL_BEFORE = "1.42"


def _filters(request: web.Request) -> dict[str, Any]:
    """The ``filters`` parameter: ``{"k": ["v"]}`` or the older ``{"k": {"v": true}}``."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"invalid filters: {raw}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"invalid filters: {raw}: want a JSON object")
    for key, values in data.items():
        if isinstance(values, str):
            continue
        if isinstance(values, list) and all(isinstance(v, str) for v in values):
            continue
        if isinstance(values, dict) and all(isinstance(v, bool) for v in values.values()):
            continue
        raise InvalidArgument(
            f"invalid filters: {raw}: the values of '{key}' must be a list of strings"
        )
    return data


def _string_map(body: Mapping[str, Any], key: str) -> dict[str, str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgument(
            f"invalid volume create request: {key} must be an object of strings, "
            f"not {orjson.dumps(value).decode()}"
        )
    return value


def _string(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(
            f"invalid volume create request: {key} must be a string, "
            f"not {orjson.dumps(value).decode()}"
        )
    return value


@routes.add("GET", "/volumes")
async def list_volumes(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    data = await asyncio.to_thread(
        engine.volumes.list, _filters(request), in_use=engine.volume_users
    )
    return json_response(data)


@routes.add("POST", "/volumes/create")
async def create_volume(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    body = await params.json_body(request, "volume create request")
    name = _string(body, "Name")
    driver = _string(body, "Driver")
    labels = _string_map(body, "Labels")
    driver_opts = _string_map(body, "DriverOpts")
    data = await asyncio.to_thread(
        engine.volumes.create,
        name or None,
        driver=driver or "local",
        labels=labels,
        driver_opts=driver_opts,
    )
    return json_response(data, status=201)


@routes.add("GET", "/volumes/{name}")
async def inspect_volume(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    return json_response(
        await asyncio.to_thread(engine.volumes.inspect, request.match_info["name"])
    )


@routes.add("DELETE", "/volumes/{name}")
async def remove_volume(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    await asyncio.to_thread(
        engine.volumes.remove,
        request.match_info["name"],
        in_use=engine.volume_users,
        force=params.flag(request, "force"),
    )
    return web.Response(status=204)


@routes.add("POST", "/volumes/prune")
async def prune_volumes(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    filters = _filters(request)
    data = await asyncio.to_thread(
        engine.volumes.prune,
        engine.volume_users,
        all=version_before(request, _PRUNE_ALL_BEFORE),
        filters=filters,
    )
    return json_response(data)
