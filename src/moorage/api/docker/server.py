"""The daemon's HTTP server: Docker Engine API routes on a unix socket.

Every route is served both unversioned (``/images/json``) and versioned
(``/v1.47/images/json``), as dockerd does: an unversioned request speaks the newest
version (``api_version``), a version outside ``MIN_API_VERSION``..``API_VERSION`` is
a 400, and what differs between versions is in ``compat``. Every answer carries
dockerd's ``Api-Version``, ``Ostype``, ``Docker-Experimental``, ``Builder-Version`` and
``Server`` headers.
Errors become Docker's ``{"message": ...}`` bodies with the status from
``errors.STATUS``; a path no route serves is dockerd's 404 ``page not found``. Engine
calls are synchronous and run off the event loop (``asyncio.to_thread``).
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
from moorage.errors import MoorageError, Unavailable

log = logging.getLogger(__name__)

MIN_API_VERSION = "1.41"
API_VERSION = "1.50"  # what the docker CLI 28 speaks

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(message: str, status: int) -> web.Response:
    return json_response({"message": message}, status=status)


def version_key(version: str) -> tuple[int, ...]:
    """``version`` for comparisons, as dockerd compares them: numbers between dots, a
    part that is not a number counts as 0, trailing zeros don't count (``1.41.0`` is
    ``1.41``)::

        >>> version_key("1.41.0") == version_key("1.41") < version_key("1.50")
        True
    """
    parts = [int(part) if part.isdecimal() else 0 for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def api_version(request: web.Request) -> str:
    """The API version ``request`` speaks: its path's ``/v1.xx``, else the newest."""
    return request.match_info.get("version") or API_VERSION


def version_before(request: web.Request, version: str) -> bool:
    """Whether ``request`` speaks an API older than ``version`` (``"1.42"``)."""
    return version_key(api_version(request)) < version_key(version)


def unsupported_version(version: str) -> str | None:
    """dockerd's refusal of an API version outside what the daemon serves, or None."""
    if version_key(version) < version_key(MIN_API_VERSION):
        return (
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )
    if version_key(version) > version_key(API_VERSION):
        return (
            f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )
    return None


# On every answer, errors and hijacked streams included, as dockerd's middlewares set
# them (it sends Builder-Version only on /_ping; here every answer has it).
DAEMON_HEADERS = {
    "Api-Version": API_VERSION,
    "Ostype": "linux",
    "Builder-Version": "1",
    "Docker-Experimental": "false",
    "Server": f"Moorage/{__version__} (linux)",
}

PAGE_NOT_FOUND = "page not found"  # dockerd's words for a path or method it does not serve


async def _add_daemon_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(DAEMON_HEADERS)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _http_error(exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (no route, a body over ``client_max_size``) in Docker's shape."""
    if isinstance(exc, web.HTTPNotFound | web.HTTPMethodNotAllowed):
        return error_response(PAGE_NOT_FOUND, 404)
    message = exc.reason.lower()
    text = exc.text or ""
    if text and text != f"{exc.status}: {exc.reason}":  # more than aiohttp's default
        message += f": {text[:1].lower()}{text[1:]}"
    return error_response(message, exc.status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    version = request.match_info.get("version")
    if version is not None and (problem := unsupported_version(version)) is not None:
        return error_response(problem, 400)
    try:
        return await handler(request)
    except MoorageError as exc:
        return error_response(str(exc), status_of(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(exc)
    except ConnectionError:
        if not _client_gone(request):
            log.exception("%s %s failed", request.method, request.path)
            return error_response("internal error: see the daemon's log", 500)
        # Nobody is left to answer: no error to log, and the status is for no one (499
        # is what dockerd logs for it).
        log.debug("%s %s: the client went away", request.method, request.path)
        return web.Response(status=499)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response("internal error: see the daemon's log", 500)


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
            # dockerd's is [0-9.]+; here the dots must separate numbers.
            for prefix in ("", r"/v{version:[0-9]+(?:\.[0-9]+)*}"):
                app.router.add_route(method, prefix + path, handler)


def build_app(engine: Engine) -> web.Application:
    from moorage.api.docker import (
        build,
        container_files,
        containers,
        debug,
        distribution,
        exec,
        images,
        networks,
        system,
        unsupported,
        volumes,
    )

    app = web.Application(middlewares=[errors_middleware], client_max_size=64 * 1024**2)
    app[ENGINE] = engine
    # aiohttp types this signal for aiosignal < 1.4 (a callback of one Callable argument).
    app.on_response_prepare.append(_add_daemon_headers)  # type: ignore[arg-type]
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
        debug,
        unsupported,
    ):
        module.routes.install(app)
    return app


class _UnparseableRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (a huge header, not HTTP at all) as an
    error with a traceback; the fault is the client's, which gets a 400: debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import BadHttpMessage

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BadHttpMessage):
            what = " ".join(str(error.message).split())
            record.msg = f"{record.getMessage()}: refused with 400: {what}"
            record.args = None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


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
    logging.getLogger("aiohttp.server").addFilter(_UnparseableRequests())
    from concurrent.futures import ThreadPoolExecutor

    # Short engine calls (create, inspect, list) from many clients at once: more
    # workers than asyncio's default of cores + 4.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=32, thread_name_prefix="engine")
    )
    engine = await asyncio.to_thread(Engine, config)
    # Attach, logs -f, wait and events hold connections open: don't wait on them.
    # Header values up to 2 MiB: a build's secrets travel in one (X-Moorage-Build-Secrets).
    # A client that hangs up cancels its handler, as dockerd cancels the request's
    # context: an events, logs -f or wait stream that has nothing to send would else
    # wait on for nobody.
    runner = web.AppRunner(
        build_app(engine),
        access_log=None,
        shutdown_timeout=1.0,
        max_field_size=2 * 1024 * 1024,
        handler_cancellation=True,
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
