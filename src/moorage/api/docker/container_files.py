"""Routes that look into a container: top, stats, changes, archive, export, commit.

Thin: each looks the container up, picks the running or stopped view of it, and
hands the work to ``engine.container_fs`` and ``engine.container_stats`` in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import lzma
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from moorage.api.docker import params
from moorage.api.docker.server import ENGINE, Routes, json_response
from moorage.api.docker.streams import body_of
from moorage.engine import container_fs, container_stats
from moorage.engine.container_fs import PATH_STAT_HEADER, Bind, RootView
from moorage.errors import Conflict, InvalidArgument, MoorageError

log = logging.getLogger(__name__)

routes = Routes()


def _service(request: web.Request) -> Any:
    return request.app[ENGINE].containers


def _container(request: web.Request) -> Any:
    return _service(request).get(request.match_info["id"])


def _publish(request: web.Request, c: Any, action: str, **extra: str) -> None:
    attributes = {"name": c.name, "image": c.image, **(c.config.get("Labels") or {}), **extra}
    request.app[ENGINE].events.publish("container", action, c.id, attributes)


def _require_running(c: Any) -> None:
    if c.state.status == "restarting":
        raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
    if not c.running:
        raise Conflict(f"Container {c.id} is not running")


def _binds(service: Any, c: Any) -> list[Bind]:
    out = []
    for m in c.mounts:
        if m.type == "volume" and m.name:
            try:
                source = service.volumes.mount_source(m.name)
            except MoorageError:
                continue
        elif m.type == "bind" and m.source:
            source = m.source
        else:
            continue
        out.append(Bind(source, m.destination, read_only=not m.rw))
    return out


def _open_view(service: Any, c: Any, *, writable: bool = False) -> RootView:
    """The container's ``/``: its init's root while it runs, its snapshot otherwise."""
    if c.running:
        try:
            return container_fs.open_running(
                c.state.pid, crossable=[m.destination for m in c.mounts]
            )
        except Conflict as exc:
            raise Conflict(f"Container {c.id} stopped while its files were opened") from exc
    return container_fs.open_snapshot(
        service.images.snapshots,
        c.snapshot_key,
        writable=writable and not c.host_config.get("ReadonlyRootfs"),
        binds=_binds(service, c),
    )


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("Path cannot be empty")
    return path


async def _send(
    request: web.Request,
    chunks: Iterator[bytes],
    headers: dict[str, str],
    *,
    view: RootView | None = None,
) -> web.StreamResponse:
    """Send ``chunks`` (produced in a thread) as the body, then close ``view``.

    An error before the first chunk is an error status; after it, the connection is
    cut (the client must not take a truncated tar for a whole one). A client that
    leaves is no error: the stream just stops.
    """
    step: asyncio.Future[bytes | None] | None = None

    async def pull() -> bytes | None:
        # Shielded: a cancelled handler (the client left) waits for the chunk in the
        # making before it closes the generator, which cannot close while it runs.
        nonlocal step
        step = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
        return await asyncio.shield(step)

    try:
        first = await pull()
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        try:
            while first is not None:
                await response.write(first)
                first = await pull()
            await response.write_eof()
        except ConnectionError:
            log.debug("%s %s: the client left", request.method, request.path)
        except MoorageError as exc:
            log.warning("%s %s: cut off: %s", request.method, request.path, exc)
            if request.transport is not None:
                request.transport.abort()
        return response
    finally:
        # In a task of its own, shielded: a client that hangs up cancels the handler
        # (even here, once it has read the last byte), and the view must close anyway.
        await asyncio.shield(asyncio.ensure_future(_close_after(step, chunks, view)))


async def _close_after(
    step: asyncio.Future[bytes | None] | None, chunks: Iterator[bytes], view: RootView | None
) -> None:
    """Once the chunk in the making is done, close the generator, then the view."""
    if step is not None:
        await asyncio.wait({step})
        if not step.cancelled():
            step.exception()  # seen: a failure after the client left is no one's

    def close_all() -> None:
        try:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        finally:
            if view is not None:
                view.close()

    await asyncio.to_thread(close_all)


# --- top, stats ---------------------------------------------------------------------------


@routes.add("GET", "/containers/{id}/top")
async def top(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    c = _container(request)
    _require_running(c)
    data = await asyncio.to_thread(
        container_stats.container_top,
        service.runtime_root,
        c.id,
        request.query.get("ps_args", ""),
    )
    _publish(request, c, "top")
    return json_response(data)


@routes.add("GET", "/containers/{id}/stats")
async def stats(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    c = _container(request)
    stream = params.flag(request, "stream", True)
    one_shot = params.flag(request, "one-shot")
    if stream and one_shot:
        raise InvalidArgument("cannot have stream=true and one-shot=true")

    def sample() -> container_stats.Sample | None:
        if not c.running:
            return None
        return container_stats.sample_container(service.runtime_root, c.id, c.state.pid)

    if not stream:
        data = await asyncio.to_thread(
            container_stats.stats_once, sample, name=c.name, container_id=c.id, one_shot=one_shot
        )
        return json_response(data)

    lines = container_stats.stats_stream(
        sample, name=c.name, container_id=c.id, running=lambda: c.running
    )
    chunks = (orjson.dumps(line) + b"\n" for line in lines)
    return await _send(request, chunks, {"Content-Type": "application/json"})


# --- changes, archive, export -------------------------------------------------------------


@routes.add("GET", "/containers/{id}/changes")
async def changes(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    c = _container(request)
    data = await asyncio.to_thread(
        container_fs.snapshot_changes, service.images.snapshots, c.snapshot_key
    )
    return json_response(data or None)  # dockerd: null when nothing changed


@routes.add("HEAD", "/containers/{id}/archive")
async def stat_archive(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    c = _container(request)
    path = _path(request)

    def look() -> dict[str, Any]:
        with _open_view(service, c) as view:
            return container_fs.stat_path(view, path, container=c.id)

    try:
        path_stat = await asyncio.to_thread(look)
    except MoorageError as exc:
        # A HEAD response has no body: the status says it all.
        from moorage.api.docker.errors import status_of

        return web.Response(status=status_of(exc))
    return web.Response(
        status=200, headers={PATH_STAT_HEADER: container_fs.encode_path_stat(path_stat)}
    )


@routes.add("GET", "/containers/{id}/archive")
async def get_archive(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    c = _container(request)
    path = _path(request)
    view = await asyncio.to_thread(_open_view, service, c)
    try:
        path_stat, chunks = await asyncio.to_thread(
            container_fs.archive_path, view, path, container=c.id
        )
    except BaseException:
        await asyncio.to_thread(view.close)
        raise
    _publish(request, c, "archive-path")
    headers = {
        "Content-Type": "application/x-tar",
        PATH_STAT_HEADER: container_fs.encode_path_stat(path_stat),
    }
    return await _send(request, chunks, headers, view=view)


@routes.add("PUT", "/containers/{id}/archive")
async def put_archive(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    c = _container(request)
    path = _path(request)
    body = body_of(request)

    def extract() -> None:
        from moorage.api.docker.build import decompressed

        # dockerd takes the tar plain or compressed (gzip, bzip2, xz, zstd), as a build
        # context: docker-py's put_archive passes on whatever the caller gives it.
        algo, plain = decompressed(body)
        with _open_view(service, c, writable=True) as view:
            try:
                container_fs.extract_archive(
                    view,
                    path,
                    plain,
                    no_overwrite_dir_non_dir=params.flag(request, "noOverwriteDirNonDir"),
                    copy_uid_gid=params.flag(request, "copyUIDGID"),
                    user=str(c.config.get("User") or ""),
                    container=c.id,
                )
            except (EOFError, lzma.LZMAError) as exc:
                raise InvalidArgument(f"not a {algo} archive: {exc}") from exc

    await asyncio.to_thread(extract)
    _publish(request, c, "extract-to-dir")
    return web.Response(status=200)


@routes.add("GET", "/containers/{id}/export")
async def export(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    c = _container(request)

    def open_root() -> RootView:
        if c.running:
            return container_fs.open_running(c.state.pid)  # no volumes: docker export's
        return container_fs.open_snapshot(service.images.snapshots, c.snapshot_key)

    view = await asyncio.to_thread(open_root)
    _publish(request, c, "export")
    chunks = container_fs.export_tree(view)
    return await _send(request, chunks, {"Content-Type": "application/x-tar"}, view=view)


# --- commit -------------------------------------------------------------------------------


@contextlib.contextmanager
def _paused(service: Any, c: Any) -> Iterator[None]:
    """The container paused (if it runs and is not paused already) for the block."""
    paused = False
    if c.state.status == "running":
        try:
            service.pause(c.id)
            paused = True
        except Conflict:
            pass  # it stopped meanwhile: nothing is writing to it
    try:
        yield
    finally:
        if paused:
            with contextlib.suppress(MoorageError):
                service.unpause(c.id)


@routes.add("POST", "/commit")
async def commit(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    c = service.get(request.query.get("container", ""))
    overrides = await params.json_body(request, "commit request (a container Config)")
    changes_ = request.query.getall("changes", [])
    config = container_fs.commit_config(c.config, overrides or None, changes_)
    repo = request.query.get("repo") or None
    frozen = _paused(service, c) if params.flag(request, "pause", True) else None
    comment = request.query.get("comment", "")
    image_id = await asyncio.to_thread(
        container_fs.commit_container,
        service.images,
        key=c.snapshot_key,
        image_id=c.image_id,
        config=config,
        created_by=" ".join(c.config.get("Cmd") or []),
        comment=comment,
        author=request.query.get("author", ""),
        repo=repo,
        tag=(request.query.get("tag") or None) if repo else None,
        frozen=frozen,
    )
    _publish(request, c, "commit", comment=comment, imageID=image_id)
    return json_response({"Id": image_id}, status=201)
