"""System routes: ping, version, info, disk usage."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import platform
import sys
from typing import Any

import orjson
from aiohttp import web

from moorage import __version__
from moorage.api.build_context import CONTEXT_DIR_FEATURE, FEATURES_HEADER
from moorage.api.docker import compat, params
from moorage.api.docker.server import (
    API_VERSION,
    ENGINE,
    MIN_API_VERSION,
    Routes,
    api_version,
    json_response,
)
from moorage.errors import InvalidArgument

routes = Routes()


def _build_time() -> str:
    """dockerd's BuildTime (RFC 3339): when this Moorage was installed, or last changed."""
    import moorage

    changed = os.stat(moorage.__file__).st_mtime
    return datetime.datetime.fromtimestamp(changed, datetime.UTC).isoformat(timespec="microseconds")


def _ping_headers() -> dict[str, str]:
    return {
        "Api-Version": API_VERSION,
        "Ostype": "linux",
        "Builder-Version": "1",
        "Docker-Experimental": "false",
        "Swarm": "inactive",  # dockerd's from 1.42; Moorage is never in a swarm
        FEATURES_HEADER: CONTEXT_DIR_FEATURE,
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
    }


@routes.add("GET", "/_ping")
async def ping(request: web.Request) -> web.StreamResponse:
    return web.Response(text="OK", headers=_ping_headers())


@routes.add("HEAD", "/_ping")
async def ping_head(request: web.Request) -> web.StreamResponse:
    # dockerd's HEAD answer: the GET's headers, an empty text body.
    return web.Response(text="", headers=_ping_headers())


@routes.add("GET", "/version")
async def version(request: web.Request) -> web.StreamResponse:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    runtime = f"python{sys.version.split()[0]}"
    # `docker version` prints the Engine component's details (all strings), not the
    # top-level fields: without them it shows "minimum version )" and "OS/Arch: /".
    details = {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GoVersion": runtime,
        "GitCommit": "",
        "BuildTime": _build_time(),
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": platform.release(),
        "Experimental": "false",
    }
    return json_response(
        {
            "Platform": {"Name": "Moorage"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
            "Version": __version__,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": runtime,
            "Os": "linux",
            "Arch": arch,
            "KernelVersion": platform.release(),
            "Experimental": False,
            "BuildTime": details["BuildTime"],
        }
    )


@routes.add("GET", "/info")
async def info(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    data = await asyncio.to_thread(engine.info)
    return json_response(compat.info(api_version(request), data))


@routes.add("GET", "/system/df")
async def disk_usage(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    types = compat.disk_usage_types(api_version(request), request.query.getall("type", []))
    data = await asyncio.to_thread(engine.disk_usage)
    return json_response(compat.disk_usage(api_version(request), data, types))


def _event_matches(event: dict[str, Any], f: dict[str, list[str]]) -> bool:
    actor = event["Actor"]
    attrs = actor.get("Attributes") or {}
    checks = {
        "type": event["Type"],
        "event": event["Action"],
        "scope": event.get("scope", "local"),
    }
    for key, value in checks.items():
        if key in f and value not in f[key]:
            return False
    if "container" in f and (
        event["Type"] != "container"
        or not any(actor["ID"].startswith(v) or attrs.get("name") == v for v in f["container"])
    ):
        return False
    if "image" in f and not _image_matches(event, f["image"]):
        return False
    if "volume" in f and (event["Type"] != "volume" or actor["ID"] not in f["volume"]):
        return False
    for spec in f.get("label", []):
        key, sep, value = spec.partition("=")
        if key not in attrs or (sep and attrs[key] != value):
            return False
    return True


def _image_matches(event: dict[str, Any], wanted: list[str]) -> bool:
    """dockerd's ``image`` filter: the image of a container event, the id or name of an
    image event (which is the reference for a pull or push), with or without its tag."""
    actor = event["Actor"]
    attrs = actor.get("Attributes") or {}
    if event["Type"] == "image":
        names = [actor["ID"], attrs.get("name", "")]
    else:
        names = [attrs.get("image", "")]
    for name in [n for n in names if n]:
        repository, colon, tag = name.rpartition(":")
        plain = colon and "/" not in tag and not name.startswith("sha256:")
        untagged = repository if plain else name
        if name in wanted or untagged in wanted:
            return True
    return False


@routes.add("GET", "/events")
async def events(request: web.Request) -> web.StreamResponse:
    import time

    from moorage.engine.logs import parse_time_filter

    engine = request.app[ENGINE]
    f = params.filters(request)
    unknown = set(f) - {"type", "event", "container", "image", "label", "volume", "scope"}
    if unknown:
        raise InvalidArgument(f"invalid filter '{sorted(unknown)[0]}'")
    now = time.time()
    since = request.query.get("since")
    until = request.query.get("until")
    since_t = parse_time_filter(since, now) if since else None
    until_t = parse_time_filter(until, now) if until else None
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=4096)

    def listener(event: dict[str, Any]) -> None:
        def put() -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a stalled reader loses events
                queue.put_nowait(event)

        loop.call_soon_threadsafe(put)

    unsubscribe = engine.events.subscribe(listener)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    try:
        await response.prepare(request)
        if since_t is not None:
            for event in engine.events.history(since_t, until_t):
                if _event_matches(event, f):
                    await response.write(orjson.dumps(event) + b"\n")
        if until_t is not None and until_t <= now:
            await response.write_eof()
            return response
        while True:
            timeout = None if until_t is None else max(0.0, until_t - time.time())
            try:
                event = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                break
            if until_t is not None and event["timeNano"] > until_t * 1e9:
                break
            if _event_matches(event, f):
                await response.write(orjson.dumps(event) + b"\n")
    finally:
        unsubscribe()
    await response.write_eof()
    return response
