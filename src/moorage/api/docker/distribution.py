"""Registry routes: ``POST /images/create?fromImage=`` (pull), ``POST /images/{name}/push``
and ``POST /auth``, in the Docker Engine API's shapes.

Pull and push answer with Docker's JSON progress stream, one object per line, as the
docker CLI renders it::

    {"status": "Pulling from library/busybox", "id": "latest"}
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "a46fbb00284b"}
    {"status": "Downloading", "progressDetail": {"current": 32768, "total": 2217154},
     "progress": "[>          ]  32.77kB/2.217MB", "id": "a46fbb00284b"}
    {"status": "Verifying Checksum", ...}  {"status": "Download complete", ...}
    {"status": "Pull complete", ...}
    {"status": "Digest: sha256:..."}
    {"status": "Status: Downloaded newer image for busybox:latest"}

As dockerd does, a failure before the first message is an error status (a bad name, a
manifest the registry does not have, refused credentials: the first message is sent
once the manifest is in), and a later one a last ``{"errorDetail": {"message": m},
"error": m}`` line. A client that goes away cancels the transfer; what was downloaded
stays in the store's ingests for the next pull to resume.

Credentials come in ``X-Registry-Auth`` (:mod:`moorage.api.registry_auth`). A pull
with an empty ``tag`` and a name without one pulls ``latest`` (dockerd would pull
every tag: ``docker pull -a``, which is not supported); a push with neither pushes every
local tag of the repository, as dockerd does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from aiohttp import web

from moorage.api.docker.server import ENGINE, Routes, json_response
from moorage.api.registry_auth import AUTH_HEADER, credentials_from_json, decode_registry_auth
from moorage.errors import InvalidArgument, MoorageError
from moorage.oci.digest import is_valid_digest
from moorage.oci.reference import Reference, parse_reference
from moorage.registry.client.progress import Progress

routes = Routes()
log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]


# --- pull --------------------------------------------------------------------------------


def pull_reference(from_image: str, tag: str) -> Reference:
    """``fromImage`` and ``tag`` as the docker CLI splits them: the tag may be a digest."""
    if not from_image:
        raise InvalidArgument("pull: fromImage is required")
    ref = parse_reference(from_image, default_tag=None)
    if tag:
        ref = ref.with_digest(tag) if is_valid_digest(tag) else ref.with_tag(tag)
    if ref.tag is None and ref.digest is None:
        ref = ref.with_tag("latest")
    return ref


async def pull_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/create?fromImage=NAME&tag=TAG&platform=P`` (from images.create_image)."""
    ref = pull_reference(request.query.get("fromImage", ""), request.query.get("tag", ""))
    platform = request.query.get("platform") or None
    credentials = decode_registry_auth(request.headers.get(AUTH_HEADER))
    images = request.app[ENGINE].images

    async def work(emit: Emit) -> None:
        def on_progress(p: Progress) -> None:
            message = pull_message(p, ref)
            if message is not None:
                emit(message)

        outcome = await images.pull(
            str(ref), platform=platform, credentials=credentials, progress=on_progress
        )
        _image_event(request, "pull", ref)
        emit({"status": f"Digest: {outcome.digest}"})
        verb = "Downloaded newer image for" if outcome.updated else "Image is up to date for"
        emit({"status": f"Status: {verb} {ref.familiar()}"})

    return await stream_progress(request, work)


def _image_event(request: web.Request, action: str, ref: Reference) -> None:
    """dockerd's ``pull`` and ``push`` events: the actor is the reference, not an image id."""
    repository = ref._replace(tag=None, digest=None).familiar()
    request.app[ENGINE].events.publish("image", action, ref.familiar(), {"name": repository})


def _short(digest: str) -> str:
    return digest.partition(":")[2][:12]


_PULL_STATUS = {
    "waiting": "Pulling fs layer",
    "exists": "Already exists",
    "verifying": "Verifying Checksum",
    "downloaded": "Download complete",
    "complete": "Pull complete",
}


def pull_message(p: Progress, ref: Reference) -> dict[str, Any] | None:
    if p.action == "resolved":
        return {"status": f"Pulling from {ref.path}", "id": str(ref.digest or ref.tag)}
    if p.action == "downloading":
        return _bar("Downloading", p)
    status = _PULL_STATUS.get(p.action)
    if status is None:
        return None
    return {"status": status, "progressDetail": {}, "id": _short(p.digest)}


def _bar(status: str, p: Progress) -> dict[str, Any]:
    return {
        "status": status,
        "progressDetail": {"current": p.current, "total": p.total},
        "progress": progress_bar(p.current, p.total),
        "id": _short(p.digest),
    }


def progress_bar(current: int, total: int, width: int = 50) -> str:
    """Docker's ``[=====>     ]  1.2MB/5MB``."""
    if total <= 0:
        return f"{_human(current)}"
    filled = min(width, width * current // total)
    arrow = ">" if filled < width else "="
    bar = "=" * max(0, filled - 1) + arrow if filled else ">"
    return f"[{bar:<{width}}] {_human(current):>8}/{_human(total)}"


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.4g}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1000
    return f"{size}"


# --- push --------------------------------------------------------------------------------


@routes.add("POST", "/images/{name:.+}/push")
async def push_image(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    tag = request.query.get("tag") or None
    credentials = decode_registry_auth(request.headers.get(AUTH_HEADER))
    images = request.app[ENGINE].images
    plan = await asyncio.to_thread(images.transfers.push_plan, name, tag)

    async def work(emit: Emit) -> None:
        repository = plan[0].reference.name if plan else name
        emit({"status": f"The push refers to repository [{repository}]"})
        for item in plan:

            def on_progress(p: Progress) -> None:
                message = push_message(p)
                if message is not None:
                    emit(message)

            result = await images.push(item, credentials=credentials, progress=on_progress)
            _image_event(request, "push", item.reference)
            tag_name = item.reference.tag
            emit({"status": f"{tag_name}: digest: {result.digest} size: {result.size}"})
            emit(
                {
                    "progressDetail": {},
                    "aux": {"Tag": tag_name, "Digest": str(result.digest), "Size": result.size},
                }
            )

    return await stream_progress(request, work, first_is_ours=True)


def push_message(p: Progress) -> dict[str, Any] | None:
    if p.action == "pushing":
        return _bar("Pushing", p)
    if p.action == "mounted":
        status = f"Mounted from {p.source}"
    else:
        status = {"waiting": "Preparing", "exists": "Layer already exists", "pushed": "Pushed"}.get(
            p.action, ""
        )
    if not status:
        return None
    return {"status": status, "progressDetail": {}, "id": _short(p.digest)}


# --- auth --------------------------------------------------------------------------------


@routes.add("POST", "/auth")
async def auth(request: web.Request) -> web.StreamResponse:
    try:
        data = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"auth: invalid json body: {exc}") from None
    credentials = credentials_from_json(data)
    if credentials is None:
        raise InvalidArgument("auth: no username or identity token given")
    server = data.get("serveraddress") if isinstance(data, dict) else ""
    await request.app[ENGINE].images.transfers.login(
        server if isinstance(server, str) else "", credentials
    )
    return json_response({"Status": "Login Succeeded", "IdentityToken": ""})


# --- streaming ---------------------------------------------------------------------------


async def stream_progress(
    request: web.Request,
    work: Callable[[Emit], Coroutine[Any, Any, None]],
    *,
    first_is_ours: bool = False,
) -> web.StreamResponse:
    """Run ``work`` and send what it emits as Docker's JSON lines (see the module docstring).

    ``first_is_ours``: the first message is written before any remote work (push's
    header), so it does not mean the transfer got going: errors until the second one
    still become a status.
    """
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(work(queue.put_nowait))
    held: list[dict[str, Any]] = []
    try:
        # Until the transfer has sent something real, a failure is the answer's status.
        while len(held) < (2 if first_is_ours else 1):
            item = await _next(queue, task)
            if item is None:
                break
            held.append(item)
        if not held:
            task.result()  # raises the failure (mapped to its status by the middleware)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for item in held:
            await response.write(orjson.dumps(item) + b"\r\n")
        while (item := await _next(queue, task)) is not None:
            await response.write(orjson.dumps(item) + b"\r\n")
        try:
            task.result()
        except MoorageError as exc:
            await response.write(_error_line(str(exc)))
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            await response.write(_error_line("internal error: see the daemon's log"))
        await response.write_eof()
        return response
    finally:
        if not task.done():
            task.cancel()  # the client went away
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _error_line(message: str) -> bytes:
    return orjson.dumps({"errorDetail": {"message": message}, "error": message}) + b"\r\n"


async def _next(
    queue: asyncio.Queue[dict[str, Any]], task: asyncio.Task[None]
) -> dict[str, Any] | None:
    """The next message, or None once the work is over and every message was taken."""
    while queue.empty():
        if task.done():
            return None
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await getter
    return queue.get_nowait()
