"""Content discovery: the tags of a repository, the catalog, and the referrers API.

Lists page with ``n`` (how many) and ``last`` (the item to start after), sorted as bytes.
When a page stops short of the end, its ``Link`` header names the next one: the server
fetches one item more than asked for to know. ``n=0`` asks for nothing and gets no Link.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

from moorage.oci import mediatypes
from moorage.registry.server.errors import NameUnknown, PaginationInvalid
from moorage.registry.server.names import check_digest
from moorage.registry.server.paths import Endpoint, next_link

if TYPE_CHECKING:
    from moorage.registry.server.app import Registry

__all__ = ["MAX_PAGE", "catalog", "list_tags", "page_of", "referrers"]

# A client may ask for any n; a page this long is what it gets at most (with a Link).
MAX_PAGE: Final = 10_000
_JSON = {"Content-Type": "application/json"}


def page_of(query: Mapping[str, str]) -> tuple[int | None, str]:
    """``(n, last)`` from a query; n is None when not given. PaginationInvalid if malformed."""
    text = query.get("n")
    last = query.get("last", "")
    if text is None or text == "":
        return None, last
    if not (text.isascii() and text.isdigit()):
        raise PaginationInvalid(f"invalid n: {text[:40]!r} (want a number of results)")
    return min(int(text), MAX_PAGE), last


def _paged(items: list[str], n: int | None, path: str) -> tuple[list[str], dict[str, str]]:
    headers = dict(_JSON)
    if n is not None and len(items) > n:
        items = items[:n]
        headers["Link"] = next_link(path, n, items[-1])
    return items, headers


def _fetch_limit(n: int | None) -> int:
    return -1 if n is None else n + 1


async def list_tags(registry: Registry, request: web.Request, endpoint: Endpoint) -> web.Response:
    name = endpoint.name
    n, last = page_of(request.query)
    db = registry.storage.db

    def read() -> list[str] | None:
        if not db.repository_exists(name):
            return None
        return [] if n == 0 else db.tags(name, last, _fetch_limit(n))

    tags = await asyncio.to_thread(read)
    if tags is None:
        raise NameUnknown(f"repository name not known to registry: {name}", detail={"name": name})
    tags, headers = _paged(tags, n, f"/v2/{name}/tags/list")
    return web.Response(body=orjson.dumps({"name": name, "tags": tags}), headers=headers)


async def catalog(registry: Registry, request: web.Request, endpoint: Endpoint) -> web.Response:
    n, last = page_of(request.query)
    db = registry.storage.db
    names = [] if n == 0 else await asyncio.to_thread(db.repositories, last, _fetch_limit(n))
    names, headers = _paged(names, n, "/v2/_catalog")
    return web.Response(body=orjson.dumps({"repositories": names}), headers=headers)


async def referrers(registry: Registry, request: web.Request, endpoint: Endpoint) -> web.Response:
    """The manifests in this repository whose subject is the digest, as an OCI index.

    Never 404, as the spec requires of a registry with the API: no referrers, or no such
    repository, is an empty index.
    """
    subject = check_digest(endpoint.reference)
    wanted = request.query.get("artifactType")
    records = await asyncio.to_thread(registry.storage.db.referrers, endpoint.name, subject)
    headers = {"Content-Type": mediatypes.OCI_INDEX}
    if wanted is not None:
        records = [r for r in records if r.artifact_type == wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    manifests: list[dict[str, Any]] = []
    for record in records:
        descriptor: dict[str, Any] = {
            "mediaType": record.media_type,
            "digest": record.digest,
            "size": record.size,
        }
        if record.artifact_type is not None:
            descriptor["artifactType"] = record.artifact_type
        if record.annotations:
            descriptor["annotations"] = dict(record.annotations)
        manifests.append(descriptor)
    body = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": manifests}
    return web.Response(body=orjson.dumps(body), headers=headers)
