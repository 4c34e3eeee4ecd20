"""The push side of blobs: ``/v2/<name>/blobs/uploads/[<id>]``.

::

    POST   uploads/                        202, a session (Location, Range 0-0)
    POST   uploads/?digest=D               201, the whole blob in this one request
    POST   uploads/?mount=D&from=OTHER     201 if OTHER has D (linked, nothing copied);
                                           otherwise 202 and a session, as the spec asks
    PATCH  uploads/<id>                    202, a chunk (Content-Range) or a stream
    PUT    uploads/<id>?digest=D           201, an optional last chunk, then the commit
    GET    uploads/<id>                    204, the offset (Range) to resume from
    DELETE uploads/<id>                    204, the session and its data are gone
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from moorage.oci.digest import is_valid_digest
from moorage.registry.server.errors import DigestInvalid
from moorage.registry.server.names import check_name, stored_digest
from moorage.registry.server.paths import Endpoint, blob_location, upload_location
from moorage.registry.server.ranges import parse_content_range, upload_range

if TYPE_CHECKING:
    from moorage.registry.server.app import Registry

__all__ = ["delete_upload", "get_upload", "patch_upload", "put_upload", "start_upload"]


def _created(name: str, digest: str) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "Location": blob_location(name, digest),
            "Docker-Content-Digest": digest,
            "Content-Length": "0",
        },
    )


def _session_headers(name: str, upload_id: str, offset: int) -> dict[str, str]:
    return {
        "Location": upload_location(name, upload_id),
        "Range": upload_range(offset),
        "Docker-Upload-UUID": upload_id,
    }


async def start_upload(
    registry: Registry, request: web.Request, endpoint: Endpoint
) -> web.Response:
    name = endpoint.name
    query = request.query
    mount, source = query.get("mount"), query.get("from")
    if mount is not None and source is not None:
        check_name(source)
        # A digest this store cannot hold cannot be mounted either: fall back to an upload.
        mountable = is_valid_digest(mount) and mount.startswith("sha256:")
        if mountable and await asyncio.to_thread(registry.storage.mount, name, mount, source):
            return _created(name, mount)
    elif "digest" in query:
        digest = stored_digest(query["digest"])
        await registry.uploads.whole(name, digest, request.content, request.content_length)
        return _created(name, digest)
    upload_id = await registry.uploads.start(name)
    headers = _session_headers(name, upload_id, 0)
    headers["Content-Length"] = "0"
    return web.Response(status=202, headers=headers)


async def patch_upload(
    registry: Registry, request: web.Request, endpoint: Endpoint
) -> web.Response:
    name, upload_id = endpoint.name, endpoint.reference
    content_range = request.headers.get("Content-Range")
    chunk = parse_content_range(content_range) if content_range else None
    offset = await registry.uploads.append(
        name, upload_id, request.content, chunk, request.content_length
    )
    headers = _session_headers(name, upload_id, offset)
    headers["Content-Length"] = "0"
    return web.Response(status=202, headers=headers)


async def put_upload(registry: Registry, request: web.Request, endpoint: Endpoint) -> web.Response:
    name, upload_id = endpoint.name, endpoint.reference
    text = request.query.get("digest")
    if text is None:
        raise DigestInvalid(f"upload {upload_id[:64]}: the digest query parameter is missing")
    digest = stored_digest(text)
    content_range = request.headers.get("Content-Range")
    has_body = request.can_read_body
    chunk = parse_content_range(content_range) if content_range and has_body else None
    await registry.uploads.finish(
        name,
        upload_id,
        digest,
        request.content if has_body else None,
        chunk,
        request.content_length if has_body else None,
    )
    return _created(name, digest)


async def get_upload(registry: Registry, request: web.Request, endpoint: Endpoint) -> web.Response:
    name, upload_id = endpoint.name, endpoint.reference
    offset = await registry.uploads.offset(name, upload_id)
    return web.Response(status=204, headers=_session_headers(name, upload_id, offset))


async def delete_upload(
    registry: Registry, request: web.Request, endpoint: Endpoint
) -> web.Response:
    await registry.uploads.cancel(endpoint.name, endpoint.reference)
    return web.Response(status=204)
