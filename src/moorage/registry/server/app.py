"""The registry server: one aiohttp handler that routes, authorizes and answers errors.

Every request goes through :meth:`Registry.handle`::

    parse the raw path into an endpoint        (paths.py: 404 outside the API, bad names 400)
    authorize the scopes it needs              (auth.py: 401 with a challenge)
    refuse writes when read-only or a cache    (405 UNSUPPORTED, Allow: GET, HEAD)
    call the endpoint's handler                (routes_*.py; proxy.py fetches first
                                                for a pull-through cache)
    turn any Moorage error into the spec's     (errors.py: one table)
    error body

One catch-all route and no middleware: a manifest GET is a path split, a dict lookup
and a database read, with nothing else in the way. Every response carries
``Docker-Distribution-API-Version: registry/2.0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final

from aiohttp import web

from moorage.errors import MoorageError
from moorage.registry.server.auth import AllowAll, Authorizer, Scope
from moorage.registry.server.config import ServerConfig, parse_addr
from moorage.registry.server.errors import (
    MethodNotAllowed,
    ReadOnly,
    RegistryError,
    error_body,
    reply_for,
)
from moorage.registry.server.names import check_name
from moorage.registry.server.paths import (
    API_VERSION,
    API_VERSION_HEADER,
    Endpoint,
    Kind,
    parse_path,
)
from moorage.registry.server.routes_blobs import delete_blob, get_blob
from moorage.registry.server.routes_discovery import catalog, list_tags, referrers
from moorage.registry.server.routes_manifests import delete_manifest, get_manifest, put_manifest
from moorage.registry.server.routes_uploads import (
    delete_upload,
    get_upload,
    patch_upload,
    put_upload,
    start_upload,
)
from moorage.registry.server.storage import Storage
from moorage.registry.server.uploads import Uploads

if TYPE_CHECKING:
    from moorage.registry.server.proxy import Proxy

__all__ = ["Registry", "build_app", "make_authorizer", "serve"]

log = logging.getLogger(__name__)

Handler = Callable[["Registry", web.Request, Endpoint], Awaitable[web.StreamResponse]]


async def _base(registry: Registry, request: web.Request, endpoint: Endpoint) -> web.Response:
    return web.Response(body=b"{}", headers={"Content-Type": "application/json"})


_ROUTES: Final[Mapping[Kind, Mapping[str, Handler]]] = {
    Kind.BASE: {"GET": _base, "HEAD": _base},
    Kind.CATALOG: {"GET": catalog},
    Kind.MANIFEST: {
        "GET": get_manifest,
        "HEAD": get_manifest,
        "PUT": put_manifest,
        "DELETE": delete_manifest,
    },
    Kind.BLOB: {"GET": get_blob, "HEAD": get_blob, "DELETE": delete_blob},
    Kind.UPLOADS: {"POST": start_upload},
    Kind.UPLOAD: {
        "GET": get_upload,
        "PATCH": patch_upload,
        "PUT": put_upload,
        "DELETE": delete_upload,
    },
    Kind.TAGS: {"GET": list_tags},
    Kind.REFERRERS: {"GET": referrers},
}


def _proxy_routes() -> Mapping[Kind, Mapping[str, Handler]]:
    """The routes of a pull-through cache: manifest and blob reads fetch what is missing."""
    from moorage.registry.server import proxy

    routes = dict(_ROUTES)
    routes[Kind.MANIFEST] = {
        **_ROUTES[Kind.MANIFEST],
        "GET": proxy.get_manifest,
        "HEAD": proxy.get_manifest,
    }
    routes[Kind.BLOB] = {**_ROUTES[Kind.BLOB], "GET": proxy.get_blob, "HEAD": proxy.get_blob}
    return routes


_READS: Final = frozenset({"GET", "HEAD"})
_PULL: Final = ("pull",)
_PUSH: Final = ("pull", "push")
_DELETE: Final = ("delete",)


def scopes_for(endpoint: Endpoint, method: str, query: Mapping[str, str]) -> list[Scope]:
    """What a request needs to be allowed (see :mod:`moorage.registry.server.auth`)."""
    kind = endpoint.kind
    if kind is Kind.BASE:
        return []
    if kind is Kind.CATALOG:
        return [Scope("registry", "catalog", ("*",))]
    actions: tuple[str, ...]
    if method in _READS and kind is not Kind.UPLOAD:
        actions = _PULL
    elif method == "DELETE" and kind in (Kind.MANIFEST, Kind.BLOB):
        actions = _DELETE
    else:
        actions = _PUSH
    scopes = [Scope("repository", endpoint.name, actions)]
    source = query.get("from")
    if kind is Kind.UPLOADS and "mount" in query and source and source != endpoint.name:
        scopes.append(Scope("repository", check_name(source), _PULL))
    return scopes


class Registry:
    """The server's state: storage, upload sessions, who may do what."""

    def __init__(
        self,
        storage: Storage,
        authorizer: Authorizer | None = None,
        *,
        read_only: bool = False,
        proxy: Proxy | None = None,
    ) -> None:
        self.storage = storage
        self.uploads = Uploads(storage)
        # None when everyone may do everything: the hot path then skips the scopes.
        self.authorizer = None if isinstance(authorizer, AllowAll) else authorizer
        self.read_only = read_only
        self.proxy = proxy
        self._routes = _ROUTES if proxy is None else _proxy_routes()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            path = request.raw_path
            if not path.startswith("/"):  # an absolute-form request target
                path = request.rel_url.raw_path
            endpoint = parse_path(path)
            handlers = self._routes[endpoint.kind]
            method = request.method
            if self.authorizer is not None:
                scopes = scopes_for(endpoint, method, request.query)
                await self.authorizer.authorize(request.headers.get("Authorization"), scopes)
            handler = handlers.get(method)
            if handler is None:
                raise MethodNotAllowed(
                    f"method {method} not allowed on {endpoint.kind.value} endpoints",
                    headers={"Allow": ", ".join(handlers)},
                )
            if method not in _READS and (self.read_only or self.proxy is not None):
                raise ReadOnly(
                    f"registry is read-only: {method} refused"
                    if self.proxy is None
                    else f"registry is a pull-through cache of {self.proxy.url}: {method} refused",
                    headers={"Allow": "GET, HEAD"},
                )
            response = await handler(self, request, endpoint)
            if not response.prepared:  # a streamed blob has its headers out already
                response.headers[API_VERSION_HEADER] = API_VERSION
            return response
        except MoorageError as exc:
            return _error_response(exc, request)
        except ConnectionError as exc:
            # The client is gone (a body cut off, a reset): nobody to answer.
            log.debug("%s %s: connection lost: %s", request.method, request.path[:200], exc)
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path[:200])
            return _error_response(MoorageError("internal error"), request)

    def close(self) -> None:
        self.uploads.close()


def _error_response(exc: MoorageError, request: web.Request) -> web.Response:
    reply = reply_for(exc)
    headers = {"Content-Type": "application/json", API_VERSION_HEADER: API_VERSION}
    detail = None
    if isinstance(exc, RegistryError):
        headers.update(exc.headers)
        detail = exc.detail
    level = logging.WARNING if reply.status >= 500 else logging.DEBUG
    log.log(
        level, "%s %s: %d %s: %s", request.method, request.path[:200], reply.status, reply.code, exc
    )
    return web.Response(
        status=reply.status, body=error_body([(reply.code, str(exc), detail)]), headers=headers
    )


def build_app(registry: Registry) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", registry.handle)
    return app


def make_authorizer(config: ServerConfig) -> Authorizer:
    if config.htpasswd is not None:
        from moorage.registry.server.htpasswd import HtpasswdAuthorizer

        return HtpasswdAuthorizer(config.htpasswd, config.realm)
    if config.token_realm is not None:
        from moorage.registry.server.tokens import TokenAuthorizer

        assert config.token_service is not None
        assert config.token_key is not None
        return TokenAuthorizer(
            config.token_realm, config.token_service, config.token_key, config.token_issuer
        )
    return AllowAll()


def _ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise MoorageError(f"cannot load TLS certificate {config.tls_cert}: {exc}") from exc
    return context


async def serve(
    config: ServerConfig,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (or ``stop`` is set); ``ready(url)`` once listening."""
    config.check()
    authorizer = make_authorizer(config)
    context = _ssl_context(config)
    storage = await asyncio.to_thread(Storage, config.root)
    proxy: Proxy | None = None
    if config.proxy is not None:
        from moorage.registry.server.proxy import Proxy

        proxy = Proxy(
            storage,
            config.proxy,
            username=config.proxy_username,
            password=config.proxy_password,
        )
    registry = Registry(storage, authorizer, read_only=config.read_only, proxy=proxy)
    runner = web.AppRunner(
        build_app(registry),
        access_log=log if log.isEnabledFor(logging.DEBUG) else None,
        handle_signals=False,
        shutdown_timeout=5.0,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await runner.setup()
        host, port = parse_addr(config.addr)
        site = web.TCPSite(runner, host, port, ssl_context=context, backlog=1024)
        await site.start()
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        url = f"{'https' if context else 'http'}://{shown}:{bound[1]}"
        log.info("listening on %s, root %s", url, config.root)
        if proxy is not None:
            log.info("a pull-through cache of %s", proxy.url)
        if ready is not None:
            ready(url)
        async with asyncio.TaskGroup() as tasks:
            reaper = tasks.create_task(registry.uploads.run_reaper())
            await stop.wait()
            reaper.cancel()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
        registry.close()
        if proxy is not None:
            await proxy.close()
        with contextlib.suppress(MoorageError):
            storage.close()
