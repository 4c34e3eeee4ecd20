"""GET, HEAD, PUT and DELETE ``/v2/<name>/manifests/<tag-or-digest>``.

A GET is the registry's hottest request, so it stays on the event loop: one indexed
SQLite read for the tag or digest and, for the bytes, the manifest cache (a worker
thread reads the content store only on a miss). Manifests are served with the media
type they were pushed as, whatever the Accept header says: the spec asks for the type
pushed, and converting between formats would change the digest.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from moorage.errors import NotFound
from moorage.oci.image import MAX_MANIFEST_SIZE
from moorage.registry.server.errors import ManifestTooLarge, ManifestUnknown, NameUnknown
from moorage.registry.server.names import check_digest, check_tag, is_digest, stored_digest
from moorage.registry.server.paths import Endpoint, manifest_location

if TYPE_CHECKING:
    from moorage.registry.server.app import Registry
    from moorage.registry.server.uploads import Body

__all__ = ["delete_manifest", "get_manifest", "put_manifest"]


def _unknown(registry: Registry, name: str, reference: str) -> Exception:
    separator = "@" if is_digest(reference) else ":"
    if not registry.storage.db.repository_exists(name):
        return NameUnknown(f"repository name not known to registry: {name}", detail={"name": name})
    return ManifestUnknown(
        f"manifest unknown: {name}{separator}{reference}", detail={"reference": reference}
    )


async def get_manifest(
    registry: Registry, request: web.Request, endpoint: Endpoint
) -> web.Response:
    name, reference = endpoint.name, endpoint.reference
    db = registry.storage.db
    digest: str
    if is_digest(reference):
        digest = check_digest(reference)
        found = db.manifest(name, digest)
        if found is None:
            raise _unknown(registry, name, reference)
        media_type, size = found
    else:
        tagged = db.tagged(name, check_tag(reference))
        if tagged is None:
            raise _unknown(registry, name, reference)
        digest, media_type, size = tagged
    headers = {
        "Content-Type": media_type,
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
    }
    if request.method == "HEAD":
        headers["Content-Length"] = str(size)
        return web.Response(headers=headers)
    raw = registry.storage.manifests.get(digest)
    if raw is None:
        try:
            raw = await asyncio.to_thread(registry.storage.read_manifest, digest)
        except NotFound:
            raise _unknown(registry, name, reference) from None
    return web.Response(body=raw, headers=headers)


async def read_limited(body: Body, limit: int, what: str) -> bytes:
    """The whole body, or ManifestTooLarge (413) as soon as it passes ``limit``."""
    parts: list[bytes] = []
    size = 0
    while chunk := await body.readany():
        size += len(chunk)
        if size > limit:
            raise ManifestTooLarge(f"{what} too large: more than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def put_manifest(
    registry: Registry, request: web.Request, endpoint: Endpoint
) -> web.Response:
    name, reference = endpoint.name, endpoint.reference
    if is_digest(reference):
        stored_digest(reference)
    else:
        check_tag(reference)
    length = request.content_length
    if length is not None and length > MAX_MANIFEST_SIZE:
        raise ManifestTooLarge(
            f"manifest too large: {length} bytes, the limit is {MAX_MANIFEST_SIZE}"
        )
    raw = await read_limited(request.content, MAX_MANIFEST_SIZE, "manifest")
    record = await asyncio.to_thread(
        registry.storage.put_manifest, name, reference, raw, request.headers.get("Content-Type")
    )
    headers = {
        "Location": manifest_location(name, record.digest),
        "Docker-Content-Digest": record.digest,
        "Content-Length": "0",
    }
    if record.subject is not None:
        headers["OCI-Subject"] = record.subject
    return web.Response(status=201, headers=headers)


async def delete_manifest(
    registry: Registry, request: web.Request, endpoint: Endpoint
) -> web.Response:
    """By digest: the manifest and its tags go. By tag: the tag alone goes (spec 1.1)."""
    name, reference = endpoint.name, endpoint.reference
    db = registry.storage.db
    if is_digest(reference):
        deleted = await asyncio.to_thread(db.delete_manifest, name, check_digest(reference))
    else:
        deleted = await asyncio.to_thread(db.delete_tag, name, check_tag(reference))
    if not deleted:
        raise _unknown(registry, name, reference)
    return web.Response(status=202, headers={"Content-Length": "0"})
