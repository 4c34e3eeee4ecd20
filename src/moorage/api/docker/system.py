"""System routes: ping, version, info, disk usage."""

from __future__ import annotations

import asyncio
import platform
import sys

from aiohttp import web

from moorage import __version__
from moorage.api.docker.server import (
    API_VERSION,
    ENGINE,
    MIN_API_VERSION,
    Routes,
    json_response,
)

routes = Routes()


def _ping_headers() -> dict[str, str]:
    return {
        "Api-Version": API_VERSION,
        "Ostype": "linux",
        "Builder-Version": "1",
        "Docker-Experimental": "false",
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
    }


@routes.add("GET", "/_ping")
async def ping(request: web.Request) -> web.StreamResponse:
    return web.Response(text="OK", headers=_ping_headers())


@routes.add("HEAD", "/_ping")
async def ping_head(request: web.Request) -> web.StreamResponse:
    return web.Response(headers=_ping_headers())


@routes.add("GET", "/version")
async def version(request: web.Request) -> web.StreamResponse:
    return json_response(
        {
            "Platform": {"Name": "Moorage"},
            "Components": [
                {"Name": "Engine", "Version": __version__, "Details": {"ApiVersion": API_VERSION}}
            ],
            "Version": __version__,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GoVersion": f"python{sys.version.split()[0]}",
            "Os": "linux",
            "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                platform.machine(), platform.machine()
            ),
            "KernelVersion": platform.release(),
            "Experimental": False,
        }
    )


@routes.add("GET", "/info")
async def info(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    data = await asyncio.to_thread(engine.info)
    return json_response(data)


@routes.add("GET", "/system/df")
async def disk_usage(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    data = await asyncio.to_thread(engine.images.disk_usage)
    return json_response(data)
