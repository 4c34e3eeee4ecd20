"""Build routes: Docker's classic builder (``POST /build``) and its cache.

``POST /build`` takes the query parameters dockerd takes for API ``version=1``:
``dockerfile``, ``t`` (repeated), ``q``, ``nocache``, ``pull``, ``buildargs`` and
``labels`` (JSON objects), ``target``, ``platform``, ``networkmode`` (``default``,
``bridge`` (the same), ``host`` or ``none``). Accepted and ignored, as nothing here
depends on them: ``rm``, ``forcerm``, ``cachefrom``, ``shmsize``, ``memory``,
``memswap``, ``cpu*``, ``ulimits``, ``extrahosts``, ``cgroupparent``, ``isolation``,
``session``, ``buildid``, ``outputs``. Refused: ``version=2`` (BuildKit), ``remote``
(URL and git contexts) and ``squash``.

The body is the context: a tar, plain or compressed with gzip (``docker build
--compress``), bzip2, xz or zstd, detected by magic number. It is decompressed into an
unlinked temporary file under ``<root>/staging`` before the build starts, rather than
fed to the build as it arrives: the Dockerfile can be anywhere in the tar and the
build needs all of it before its first step (dockerd, too, extracts the whole context
first); a client that sends its whole body before reading the answer (``moor``'s own
does) could otherwise stall against a build whose output it is not reading yet; and a
truncated or corrupt upload fails with a status before any step has run. Contexts are
usually small; the page cache absorbs the extra write.

The answer streams Docker's JSON messages, one per line, as the build (in a thread of
its own) emits them, with backpressure: a build that outruns its client waits in
``emit``. As dockerd does, a failure before the first message is an error status; a
later one is a last ``{"errorDetail": {"message": m}, "error": m}`` line (status 200:
the headers are gone). With ``q``, everything but ``aux`` is held back and the image
id is the only output, or, on failure, what was held back and then the error. A client
that goes away ends the build: its next ``emit`` raises :class:`Unavailable`.

Extensions (Moorage's, for ``moor build``; the docker CLI never sends them): the
header ``X-Moorage-Build-Secrets``, base64 of a JSON object ``{id: base64(content)}``
(:mod:`moorage.api.build_context`), becomes the build's secrets; the header
``X-Moorage-Context-Dir`` names a directory to build from in place, with no body: taken
only from a root client in the daemon's mount namespace (the peer credentials of the
unix socket say who it is), and declined otherwise (501) so that the client sends a
tar instead.

``POST /build/prune`` (``all``, ``filters``) prunes the build cache. ``POST /session``
and ``POST /grpc``, BuildKit's, answer 501.
"""

from __future__ import annotations

import asyncio
import bz2
import collections
import contextlib
import logging
import lzma
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO, cast

import orjson
from aiohttp import web

from moorage.api.build_context import (
    CONTEXT_DIR_DECLINED,
    CONTEXT_DIR_HEADER,
    SECRETS_HEADER,
    compression_of,
    decode_secrets,
    prefixed,
    read_head,
)
from moorage.api.docker.params import filters as _filters
from moorage.api.docker.params import flag as _flag
from moorage.api.docker.params import integer as _integer
from moorage.api.docker.server import ENGINE, Routes, json_response
from moorage.api.docker.streams import body_of, in_daemon_thread
from moorage.engine.builds import BuildRequest
from moorage.errors import InvalidArgument, MoorageError, NotSupported, Unavailable
from moorage.store.compression import open_decompressed

routes = Routes()
log = logging.getLogger(__name__)

BUILDKIT_UNSUPPORTED = "BuildKit is not supported; use the classic builder (DOCKER_BUILDKIT=0)"
BUILDKIT_SESSIONS_UNSUPPORTED = (
    "BuildKit sessions are not supported; use the classic builder (DOCKER_BUILDKIT=0)"
)
_NETWORK_MODES = {
    "": "default",
    "default": "default",
    "bridge": "default",
    "host": "host",
    "none": "none",
}
_PENDING_MESSAGES = 1024  # emitted but not yet written: the build waits beyond this
_QUIET_HELD_BYTES = 8 * 1024 * 1024  # what q=1 holds back for a failure: the last 8 MiB
_CHUNK = 1024 * 1024
_KEEP_PARAMS = ("keep-storage", "reserved-space", "max-used-space", "min-free-space")


# --- the request ----------------------------------------------------------------------


def _json_map(request: web.Request, name: str, nulls: bool) -> dict[str, Any]:
    raw = request.query.get(name)
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = ()  # refused below
    if data is None:
        return {}  # "null", which dockerd takes for no map
    ok = isinstance(data, dict) and all(
        isinstance(v, str) or (nulls and v is None) for v in data.values()
    )
    if not ok:
        raise InvalidArgument(f"invalid {name}: {raw}: want a JSON object of strings")
    return cast(dict[str, Any], data)


def _tags(request: web.Request) -> tuple[str, ...]:
    from moorage.oci.reference import parse_reference

    seen: set[str] = set()
    tags: list[str] = []
    for tag in request.query.getall("t", []):
        if not tag:
            continue
        ref = parse_reference(tag)
        if ref.digest is not None:
            raise InvalidArgument(f"invalid tag {tag}: a build tag cannot contain a digest")
        if str(ref) not in seen:
            seen.add(str(ref))
            tags.append(tag)
    return tuple(tags)


def build_request(request: web.Request) -> BuildRequest:
    """The engine's ``BuildRequest`` for a ``POST /build``; refusals raised here."""
    query = request.query
    version = query.get("version", "")
    if version == "2":
        raise NotSupported(BUILDKIT_UNSUPPORTED)
    if version not in ("", "1"):
        raise InvalidArgument(f"invalid builder version: {version}: want 1 (the classic builder)")
    if query.get("remote"):
        raise NotSupported(f"remote build contexts are not supported: {query['remote']}")
    if _flag(request, "squash"):
        raise NotSupported("squash is not supported")
    network = query.get("networkmode", "")
    if network not in _NETWORK_MODES:
        raise NotSupported(
            f"network mode {network!r} is not supported for builds: want default, host or none"
        )
    secrets = {}
    if SECRETS_HEADER in request.headers:
        secrets = decode_secrets(request.headers[SECRETS_HEADER])
    return BuildRequest(
        dockerfile=query.get("dockerfile") or "Dockerfile",
        tags=_tags(request),
        target=query.get("target") or None,
        build_args=_json_map(request, "buildargs", nulls=True),
        labels=_json_map(request, "labels", nulls=False),
        no_cache=_flag(request, "nocache"),
        pull=_flag(request, "pull"),
        platform=query.get("platform") or None,
        network_mode=_NETWORK_MODES[network],
        quiet=_flag(request, "q"),
        secrets=secrets,
    )


# --- the context ----------------------------------------------------------------------


def decompressed(body: BinaryIO) -> tuple[str | None, BinaryIO]:
    """The compression of ``body`` (None: plain) and a reader of its plain bytes."""
    head = read_head(body, 10)
    algo = compression_of(head)
    source = prefixed(head, body)
    if algo == "bzip2":
        return algo, cast(BinaryIO, bz2.BZ2File(source))
    if algo == "xz":
        return algo, cast(BinaryIO, lzma.LZMAFile(source))
    if algo in ("gzip", "zstd"):
        return algo, open_decompressed(source)
    return None, source


def spool_context(body: BinaryIO, directory: str) -> BinaryIO:
    """The plain tar of ``body`` in an unlinked temporary file under ``directory``,
    at its start; :class:`InvalidArgument` for a corrupt or truncated compression."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    spool = cast(BinaryIO, tempfile.TemporaryFile(dir=directory))  # noqa: SIM115 - returned
    try:
        algo, plain = decompressed(body)
        try:
            shutil.copyfileobj(plain, spool, _CHUNK)
        except (OSError, EOFError, lzma.LZMAError, InvalidArgument) as exc:
            if algo is None:
                raise
            raise InvalidArgument(
                f"invalid build context: the {algo} stream is corrupt or cut short ({exc})"
            ) from exc
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


# --- the response ---------------------------------------------------------------------


class _Pipe:
    """Messages (encoded lines, each marked when it is an ``aux`` one) from the build's
    thread to the response, in order.

    ``put`` (build thread) waits while ``limit`` messages are pending and raises
    :class:`Unavailable` once the reader has gone (:meth:`close`); :meth:`batches`
    (event loop) yields what is pending, a list at a time, until :meth:`finish`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = _PENDING_MESSAGES) -> None:
        self._loop = loop
        self._limit = limit
        self._cond = threading.Condition()
        self._items: collections.deque[tuple[bytes, bool]] = collections.deque()
        self._closed = False
        self._finished = False
        self._ready = asyncio.Event()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody reads
            self._loop.call_soon_threadsafe(self._ready.set)

    def put(self, line: bytes, aux: bool = False) -> None:
        with self._cond:
            while len(self._items) >= self._limit and not self._closed:
                self._cond.wait()
            if self._closed:
                raise Unavailable("the build's client went away")
            self._items.append((line, aux))
        self._wake()

    def finish(self) -> None:
        with self._cond:
            self._finished = True
        self._wake()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()

    async def batches(self) -> AsyncIterator[list[tuple[bytes, bool]]]:
        while True:
            await self._ready.wait()
            self._ready.clear()
            with self._cond:
                items = list(self._items)
                self._items.clear()
                finished = self._finished
                self._cond.notify_all()
            if items:
                yield items
            if finished:
                return


def _line(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message) + b"\r\n"


def _error_line(exc: BaseException) -> bytes:
    return _line({"errorDetail": {"message": str(exc)}, "error": str(exc)})


class _Held:
    """What ``q=1`` holds back: the last lines, up to ``limit`` bytes."""

    def __init__(self, limit: int = _QUIET_HELD_BYTES) -> None:
        self.lines: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.limit = limit

    def add(self, line: bytes) -> None:
        self.lines.append(line)
        self.size += len(line)
        while self.size > self.limit and len(self.lines) > 1:
            self.size -= len(self.lines.popleft())


class _Sender:
    """The response, started with the first line it has to send."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None

    async def send(self, lines: list[bytes]) -> None:
        if self.response is None:
            self.response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await self.response.prepare(self.request)
        await self.response.write(b"".join(lines))


async def stream_build(
    request: web.Request,
    run: Callable[[Callable[[dict[str, Any]], None]], str],
    quiet: bool = False,
) -> web.StreamResponse:
    """Run ``run(emit)`` in a thread of its own and stream what it emits (see the
    module doc); ``run`` returns the image id."""
    pipe = _Pipe(asyncio.get_running_loop())
    saw_id = False

    def emit(message: dict[str, Any]) -> None:
        nonlocal saw_id
        aux = message.get("aux")
        if isinstance(aux, dict) and "ID" in aux:
            saw_id = True
        pipe.put(_line(message), aux is not None)

    def work() -> str:
        try:
            image_id = run(emit)
            if not saw_id:  # the id is what the docker CLI's -q and --iidfile read
                emit({"aux": {"ID": image_id}})
            return image_id
        finally:
            pipe.finish()

    task = asyncio.ensure_future(in_daemon_thread(work))
    out = _Sender(request)
    held = _Held()
    try:
        async for batch in pipe.batches():
            if quiet:
                for line, aux in batch:
                    if aux:
                        await out.send([line])
                    else:
                        held.add(line)
            else:
                await out.send([line for line, _ in batch])
        try:
            image_id = await task
        except MoorageError as exc:
            if out.response is None and not held.lines:
                raise  # nothing sent yet: an error status, as dockerd answers
            await out.send([*held.lines, _error_line(exc)])
        else:
            await out.send([_line({"stream": image_id + "\n"})] if quiet else [])
    except ConnectionResetError:
        log.info("build: the client went away; the build stops at its next message")
    finally:
        pipe.close()  # a build still running fails at its next emit
        if not task.done():
            task.add_done_callback(_retrieve)
    assert out.response is not None
    with contextlib.suppress(ConnectionResetError):
        await out.response.write_eof()
    return out.response


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Take a finished build's outcome that nobody waits for any more."""
    if not task.cancelled():
        task.exception()


@routes.add("POST", "/build")
async def build(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    builds = engine.builds
    wanted = build_request(request)
    pull = _puller(request, asyncio.get_running_loop())
    if CONTEXT_DIR_HEADER in request.headers:
        context_dir = _context_in_place(request, request.headers[CONTEXT_DIR_HEADER])

        def run_in_place(emit: Callable[[dict[str, Any]], None]) -> str:
            image_id: str = builds.build(None, wanted, emit, context_dir=context_dir, pull=pull)
            return image_id

        return await stream_build(request, run_in_place, quiet=wanted.quiet)
    body = body_of(request)
    staging = os.path.join(engine.config.root, "staging")

    def run(emit: Callable[[dict[str, Any]], None]) -> str:
        with spool_context(cast(BinaryIO, body), staging) as context:
            image_id: str = builds.build(context, wanted, emit, pull=pull)
            return image_id

    return await stream_build(request, run, quiet=wanted.quiet)


def _puller(request: web.Request, loop: asyncio.AbstractEventLoop) -> Callable[[str], None] | None:
    """How the build (in its thread) pulls a base: on the daemon's loop, with the
    credentials the client sent for that registry in ``X-Registry-Config`` (base64 of
    ``{server: AuthConfig}``, as the docker CLI sends every login it has)."""
    images = getattr(request.app[ENGINE], "images", None)
    if not hasattr(images, "pull"):
        return None
    from moorage.api.registry_auth import REGISTRY_CONFIG_HEADER, decode_registry_config

    logins = decode_registry_config(request.headers.get(REGISTRY_CONFIG_HEADER))

    def pull(ref: str) -> None:
        from moorage.api.registry_auth import server_key
        from moorage.oci.reference import parse_reference

        credentials = logins.get(server_key(parse_reference(ref).domain))
        assert images is not None
        future = asyncio.run_coroutine_threadsafe(images.pull(ref, credentials=credentials), loop)
        future.result()

    return pull


def _context_in_place(request: web.Request, path: str) -> str:
    """The directory a ``X-Moorage-Context-Dir`` request may build from (see the module
    doc), or the refusal that makes the client send a tar."""
    from moorage.sys.procfs import peer_credentials, shares_mount_namespace

    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        raise NotSupported(f"{CONTEXT_DIR_DECLINED}: not a local client")
    peer = peer_credentials(sock)
    if peer.uid != 0:
        raise NotSupported(f"{CONTEXT_DIR_DECLINED}: the client is not root")
    if not shares_mount_namespace(peer.pid):
        raise NotSupported(f"{CONTEXT_DIR_DECLINED}: the client sees other mounts")
    if not os.path.isabs(path) or not os.path.isdir(path):
        raise InvalidArgument(f"build context {path}: not an absolute path of a directory")
    return os.path.realpath(path)


@routes.add("POST", "/build/prune")
async def prune_build_cache(request: web.Request) -> web.StreamResponse:
    builds = request.app[ENGINE].builds
    for name in _KEEP_PARAMS:
        if _integer(request, name, 0):
            raise NotSupported(f"build cache prune: {name} is not supported")
    result = await asyncio.to_thread(
        builds.prune, all=_flag(request, "all"), filters=_filters(request) or None
    )
    return json_response(result)


@routes.add("POST", "/session")
async def session(request: web.Request) -> web.StreamResponse:
    raise NotSupported(BUILDKIT_SESSIONS_UNSUPPORTED)


@routes.add("POST", "/grpc")
async def grpc(request: web.Request) -> web.StreamResponse:
    raise NotSupported(BUILDKIT_SESSIONS_UNSUPPORTED)
