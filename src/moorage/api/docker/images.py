"""Image routes, in the Docker Engine API's shapes."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from moorage.api.docker import compat, distribution, params
from moorage.api.docker.params import filters as _filters
from moorage.api.docker.params import flag as _flag
from moorage.api.docker.server import ENGINE, Routes, api_version, json_response
from moorage.api.docker.streams import body_of, stream_bytes, stream_json_lines
from moorage.errors import InvalidArgument

routes = Routes()


@routes.add("GET", "/images/search")
async def search(request: web.Request) -> web.StreamResponse:
    """Docker Hub's search, which a daemon with no registry index answers empty (as
    dockerd does when the index has nothing); the parameters are still checked."""
    if not request.query.get("term"):
        raise InvalidArgument("search: term is required")
    params.integer(request, "limit", 25)
    params.filters(request)
    return json_response([])


@routes.add("GET", "/images/json")
async def list_images(request: web.Request) -> web.StreamResponse:
    images = request.app[ENGINE].images
    data = await asyncio.to_thread(
        images.list_images, all_images=_flag(request, "all"), filters=_filters(request)
    )
    version = api_version(request)
    return json_response([compat.image_summary(version, s) for s in data])


@routes.add("GET", "/images/{name:.+}/json")
async def inspect_image(request: web.Request) -> web.StreamResponse:
    images = request.app[ENGINE].images
    data = await asyncio.to_thread(images.inspect, request.match_info["name"])
    return json_response(compat.image_inspect(api_version(request), data))


@routes.add("GET", "/images/{name:.+}/history")
async def image_history(request: web.Request) -> web.StreamResponse:
    images = request.app[ENGINE].images
    return json_response(await asyncio.to_thread(images.history, request.match_info["name"]))


@routes.add("POST", "/images/{name:.+}/tag")
async def tag_image(request: web.Request) -> web.StreamResponse:
    images = request.app[ENGINE].images
    repo = request.query.get("repo", "")
    if not repo:
        raise InvalidArgument("tag: repo is required")
    name = request.match_info["name"]

    def tag() -> tuple[str, str]:
        image_id = images.resolve(name).id
        return image_id, images.tag(name, repo, request.query.get("tag") or None)

    image_id, tagged = await asyncio.to_thread(tag)
    _image_event(request, "tag", image_id, tagged)
    return web.Response(status=201)


def _image_event(request: web.Request, action: str, image_id: str, name: str) -> None:
    request.app[ENGINE].events.publish("image", action, image_id, {"name": name})


def _removal_events(
    request: web.Request, removed: list[dict[str, str]], image_id: str | None = None
) -> None:
    """dockerd's ``untag`` and ``delete`` events for an rmi's or prune's report (which
    lists an image's ``Untagged`` entries before its ``Deleted``); each names the image
    by its id."""
    untagged = 0
    for entry in removed:
        if "Untagged" in entry:
            untagged += 1
        elif "Deleted" in entry:
            for _ in range(untagged):
                _image_event(request, "untag", entry["Deleted"], entry["Deleted"])
            untagged = 0
            _image_event(request, "delete", entry["Deleted"], entry["Deleted"])
    if image_id is not None:  # names taken off an image that stays
        for _ in range(untagged):
            _image_event(request, "untag", image_id, image_id)


@routes.add("DELETE", "/images/{name:.+}")
async def remove_image(request: web.Request) -> web.StreamResponse:
    images = request.app[ENGINE].images
    name = request.match_info["name"]

    def remove() -> tuple[str, list[dict[str, str]]]:
        image_id = images.resolve(name).id
        removed = images.remove(
            name,
            force=_flag(request, "force"),
            prune=not _flag(request, "noprune"),
            in_use=request.app[ENGINE].containers.using_image,
        )
        return image_id, removed

    image_id, result = await asyncio.to_thread(remove)
    _removal_events(request, result, image_id)
    return json_response(result)


@routes.add("POST", "/images/prune")
async def prune_images(request: web.Request) -> web.StreamResponse:
    images = request.app[ENGINE].images
    filters = _filters(request)
    dangling = filters.get("dangling", ["true"])
    all_images = dangling and dangling[0] in ("false", "0")
    result = await asyncio.to_thread(images.prune, all_images=bool(all_images))
    _removal_events(request, result["ImagesDeleted"] or [])
    return json_response(result)


@routes.add("POST", "/images/load")
async def load_images(request: web.Request) -> web.StreamResponse:
    images = request.app[ENGINE].images
    body = body_of(request)

    def produce() -> Any:
        for name in images.load(body):
            yield {"stream": f"Loaded image: {name}\n"}

    return await stream_json_lines(request, produce)


@routes.add("GET", "/images/get")
async def save_images(request: web.Request) -> web.StreamResponse:
    images = request.app[ENGINE].images
    names = request.query.getall("names", [])
    if not names:
        raise InvalidArgument("save: no image names given")
    fmt = request.query.get("format", "docker")
    await asyncio.to_thread(images.check_exist, names)
    return await stream_bytes(request, lambda: images.save(names, fmt=fmt))


@routes.add("GET", "/images/{name:.+}/get")
async def save_image(request: web.Request) -> web.StreamResponse:
    images = request.app[ENGINE].images
    names = [request.match_info["name"]]
    await asyncio.to_thread(images.check_exist, names)
    fmt = request.query.get("format", "docker")
    return await stream_bytes(request, lambda: images.save(names, fmt=fmt))


@routes.add("POST", "/images/create")
async def create_image(request: web.Request) -> web.StreamResponse:
    if request.query.get("fromImage"):
        return await distribution.pull_image(request)
    images = request.app[ENGINE].images
    source = request.query.get("fromSrc")
    if source != "-":
        raise InvalidArgument("create: fromSrc=- (the request body) is the only import source")
    repo = request.query.get("repo") or None
    tag = request.query.get("tag") or None
    message = request.query.get("message", "")
    changes = request.query.getall("changes", [])
    body = body_of(request)

    def produce() -> Any:
        image_id = images.import_rootfs(body, repo=repo, tag=tag, message=message, changes=changes)
        yield {"status": image_id}

    return await stream_json_lines(request, produce)
