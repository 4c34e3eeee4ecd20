"""The daemon's HTTP server: Docker Engine API routes on a unix socket.

Every route is served both unversioned (``/images/json``) and versioned
(``/v1.47/images/json``), as dockerd does. Errors become Docker's
``{"message": ...}`` bodies with the status from ``errors.STATUS``. Engine calls
are synchronous and run off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from moorage import __version__
from moorage.api.docker.errors import status_of
from moorage.engine.config import EngineConfig

__all__ = ["EngineConfig", "build_app", "serve"]
from moorage.engine.engine import Engine
from moorage.errors import InvalidArgument, MoorageError, Unavailable

log = logging.getLogger(__name__)

MIN_API_VERSION = "1.41"
API_VERSION = "1.50"  # what the docker CLI 28 speaks

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(message: str, status: int) -> web.Response:
    return json_response({"message": message}, status=status)


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        raise InvalidArgument(f"invalid API version: {version}") from None


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    version = request.match_info.get("version")
    if version is not None:
        wanted = _version_tuple(version)
        if wanted < _version_tuple(MIN_API_VERSION):
            return error_response(
                f"client version {version} is too old. Minimum supported API version is "
                f"{MIN_API_VERSION}, please upgrade your client to a newer version",
                400,
            )
        if wanted > _version_tuple(API_VERSION):
            return error_response(
                f"client version {version} is too new. Maximum supported API version is "
                f"{API_VERSION}",
                400,
            )
    try:
        response = await handler(request)
    except MoorageError as exc:
        return error_response(str(exc), status_of(exc))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response("internal error: see the daemon's log", 500)
    response.headers["Api-Version"] = API_VERSION
    response.headers["Server"] = f"Moorage/{__version__} (linux)"
    return response


class Routes:
    """Collects handlers; each path is registered plain and under /v{version}."""

    def __init__(self) -> None:
        self.table: list[tuple[str, str, Handler]] = []

    def add(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.table.append((method, path, handler))
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for method, path, handler in self.table:
            for prefix in ("", r"/v{version:[0-9]+\.[0-9]+}"):
                app.router.add_route(method, prefix + path, handler)


def build_app(engine: Engine) -> web.Application:
    from moorage.api.docker import (
        build,
        container_files,
        containers,
        distribution,
        exec,
        images,
        networks,
        system,
        volumes,
    )

    app = web.Application(middlewares=[errors_middleware], client_max_size=64 * 1024**2)
    app[ENGINE] = engine
    for module in (
        system,
        images,
        distribution,
        volumes,
        networks,
        containers,
        container_files,
        exec,
        build,
    ):
        module.routes.install(app)
    return app


def _claim_socket(path: str) -> None:
    """Remove a stale socket; refuse to start when a daemon already answers there."""
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: left over from a daemon that died
        return
    finally:
        probe.close()
    raise Unavailable(f"a daemon is already listening on {path}")


async def serve(config: EngineConfig) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    path = config.socket_path
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    os.makedirs(config.exec_root, mode=0o700, exist_ok=True)
    _claim_socket(path)
    from concurrent.futures import ThreadPoolExecutor

    # Short engine calls (create, inspect, list) from many clients at once: more
    # workers than asyncio's default of cores + 4.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=32, thread_name_prefix="engine")
    )
    engine = await asyncio.to_thread(Engine, config)
    # Attach, logs -f, wait and events hold connections open: don't wait on them.
    # Header values up to 2 MiB: a build's secrets travel in one (X-Moorage-Build-Secrets).
    runner = web.AppRunner(
        build_app(engine), access_log=None, shutdown_timeout=1.0, max_field_size=2 * 1024 * 1024
    )
    await runner.setup()
    site = web.UnixSite(runner, path)
    await site.start()
    os.chmod(path, 0o660)
    ours = os.stat(path).st_ino
    log.info("moor daemon %s listening on unix://%s (root %s)", __version__, path, config.root)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        # Only our own socket: a new daemon may already listen at this path.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == ours:
                os.unlink(path)
        await asyncio.to_thread(engine.close)
        log.info("moor daemon stopped")
