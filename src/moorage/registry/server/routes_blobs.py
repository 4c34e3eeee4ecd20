"""GET, HEAD and DELETE ``/v2/<name>/blobs/<digest>``.

A blob is served from its file in the content store with sendfile(2): the bytes go
from the page cache to the socket without passing through Python. One range per
request is honoured (206), for clients resuming a download. A blob is only served by
a repository it was pushed or mounted to, as distribution does, so that pull access
to one repository reveals nothing of another's.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, BinaryIO

from aiohttp import web

from moorage.registry.server.errors import BlobUnknown, NameUnknown
from moorage.registry.server.names import check_digest
from moorage.registry.server.paths import API_VERSION, API_VERSION_HEADER, Endpoint
from moorage.registry.server.ranges import parse_range

if TYPE_CHECKING:
    from moorage.registry.server.app import Registry

__all__ = ["delete_blob", "get_blob"]

log = logging.getLogger(__name__)


def _unknown(registry: Registry, name: str, digest: str, exc: BlobUnknown | None) -> Exception:
    if not registry.storage.db.repository_exists(name):
        return NameUnknown(f"repository name not known to registry: {name}", detail={"name": name})
    return exc or BlobUnknown(
        f"blob unknown to registry: {name}@{digest}", detail={"digest": digest}
    )


async def get_blob(
    registry: Registry, request: web.Request, endpoint: Endpoint
) -> web.StreamResponse:
    name = endpoint.name
    digest = check_digest(endpoint.reference)
    try:
        blob = registry.storage.open_blob(name, digest)
    except BlobUnknown as exc:
        raise _unknown(registry, name, digest, exc) from None
    with blob:
        size = os.fstat(blob.fileno()).st_size
        wanted = parse_range(request.headers.get("Range"), size)
        headers = {
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": digest,
            "ETag": f'"{digest}"',
            "Accept-Ranges": "bytes",
            # Content-addressed: what this URL returns can never change.
            "Cache-Control": "max-age=31536000",
            API_VERSION_HEADER: API_VERSION,
        }
        offset, count, status = 0, size, 200
        if wanted is not None:
            offset, count, status = wanted.start, wanted.length, 206
            headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end}/{size}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = count
        await response.prepare(request)
        if request.method != "HEAD" and count:
            try:
                await _send(request, blob, offset, count)
            except (ConnectionError, OSError) as exc:
                # Headers are out: no error reply is possible, only closing the connection.
                log.debug("blob %s to %s cut off: %s", digest, request.remote, exc)
                response.force_close()
                return response
        await response.write_eof()
        return response


async def _send(request: web.Request, blob: BinaryIO, offset: int, count: int) -> None:
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("connection closed")
    # sendfile(2) for plain TCP; asyncio falls back to reads and writes under TLS.
    await asyncio.get_running_loop().sendfile(transport, blob, offset, count)


async def delete_blob(registry: Registry, request: web.Request, endpoint: Endpoint) -> web.Response:
    """Unlink the blob from the repository; ``moor registry gc`` frees its bytes."""
    name = endpoint.name
    digest = check_digest(endpoint.reference)
    if not await asyncio.to_thread(registry.storage.db.unlink_blob, name, digest):
        raise _unknown(registry, name, digest, None)
    return web.Response(status=202, headers={"Content-Length": "0"})
