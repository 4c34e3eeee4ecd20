"""The pull-through cache (``moor registry serve --proxy URL``): what the local storage
lacks is fetched from an upstream registry, verified, stored, and then served.

::

    proxy = Proxy(storage, "https://registry-1.docker.io")
    registry = Registry(storage, proxy=proxy)      # app.py routes reads through it
    ...
    await proxy.close()

What a read does, by endpoint (the repository name is the same upstream; for Docker
Hub the client's ``resolve`` adds ``library/`` to a one-component name):

- manifest by digest: served locally when the repository has it; else fetched (the
  client checks that the bytes hash to the digest), recorded, served. Content-addressed,
  so never fetched again;
- manifest by tag: served locally when the tag was checked upstream within ``ttl``
  (60 s). Otherwise a ``HEAD`` upstream: the same digest keeps the local tag, another
  one fetches the manifest (checked against the ``Docker-Content-Digest`` the upstream
  states) and moves the tag. An upstream that cannot be reached, or refuses, leaves the
  cached tag served, as distribution's proxy does; with nothing cached, its answer is
  the client's: 404 ``MANIFEST_UNKNOWN``, or 503 naming the upstream;
- blob ``GET``: fetched whole into the content store (the client's resumable, verified
  download) and linked into the repository, then served from the file as any blob.
  One fetch per digest at a time (:class:`KeyedLocks`): concurrent requests wait for it;
- blob ``HEAD``: answered from the upstream's ``HEAD`` without fetching, as
  distribution's proxy does (a client asks before it decides to download).

Writes are refused by the app (405 ``UNSUPPORTED``, as distribution's proxy answers
them); the tags list, the catalog and referrers are what has been cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import aiohttp
from aiohttp import web

from moorage.errors import MoorageError, NotFound, PermissionDenied, Unavailable
from moorage.oci.descriptor import Descriptor
from moorage.oci.digest import Digest
from moorage.registry.client.auth import repository_scope
from moorage.registry.client.backoff import Backoff
from moorage.registry.client.blobs import download
from moorage.registry.client.client import RegistryClient
from moorage.registry.client.credentials import Credentials
from moorage.registry.client.manifests import ACCEPT, fetch_manifest
from moorage.registry.client.pull import KeyedLocks
from moorage.registry.client.resolve import Target, normalize_server, resolve
from moorage.registry.server import routes_blobs, routes_manifests
from moorage.registry.server.config import parse_upstream
from moorage.registry.server.errors import (
    BlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    UpstreamInvalid,
    UpstreamUnavailable,
)
from moorage.registry.server.names import check_digest, check_tag, is_digest, stored_digest
from moorage.registry.server.paths import API_VERSION, API_VERSION_HEADER, Endpoint

if TYPE_CHECKING:
    from moorage.registry.server.app import Registry
    from moorage.registry.server.storage import Storage

__all__ = ["DEFAULT_TAG_TTL", "Proxy", "get_blob", "get_manifest"]

log = logging.getLogger(__name__)

DEFAULT_TAG_TTL: Final = 60.0  # seconds between upstream checks of a tag
# Fewer and shorter retries than a pull's: a client is waiting on the other side.
_BACKOFF: Final = Backoff(attempts=3, initial=0.25, maximum=2.0)
_UPSTREAM_ERRORS = (MoorageError, aiohttp.ClientError, asyncio.TimeoutError)
_OCTET_STREAM = "application/octet-stream"

Clock = Callable[[], float]


class Proxy:
    """A cache of ``upstream`` (``http(s)://host[:port]``) over the server's storage."""

    def __init__(
        self,
        storage: Storage,
        upstream: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ttl: float = DEFAULT_TAG_TTL,
        clock: Clock = time.monotonic,
        backoff: Backoff = _BACKOFF,
    ) -> None:
        scheme, netloc = parse_upstream(upstream)
        self.storage = storage
        self.url = f"{scheme}://{netloc}"
        # The registry as references name it: docker.io for Docker Hub's API host.
        self.host = normalize_server(netloc)
        self.ttl = ttl
        self._clock = clock
        creds = Credentials(username or "", password or "")

        def credentials(host: str) -> Credentials | None:
            return creds if host == self.host and not creds.anonymous else None

        # An http:// upstream is named insecure, so the client may speak plain HTTP to it.
        self.client = RegistryClient(
            insecure=[self.host] if scheme == "http" else [],
            credentials=credentials,
            backoff=backoff,
        )
        self._checked: dict[tuple[str, str], float] = {}  # (name, tag) -> when, by clock
        self._locks = KeyedLocks()

    async def close(self) -> None:
        await self.client.close()

    def _target(self, name: str, reference: str = "") -> Target:
        return resolve(f"{self.host}/{name}{reference}")

    # ----------------------------------------------------------------- manifests

    async def ensure_manifest(self, name: str, reference: str) -> None:
        """Make the manifest ``name`` + tag or digest servable from the local storage."""
        db = self.storage.db
        if is_digest(reference):
            digest = check_digest(reference)
            if db.manifest(name, digest) is not None:
                return
            stored_digest(digest)  # only sha256 content is stored: DIGEST_INVALID
            async with self._locks.hold(f"manifest {name}@{digest}"):
                if db.manifest(name, digest) is None:
                    await self._fetch_manifest(name, "@" + digest, None)
            return
        tag = check_tag(reference)
        if self._fresh(name, tag):
            return
        async with self._locks.hold(f"tag {name}:{tag}"):
            if not self._fresh(name, tag):  # else another request has just checked it
                await self._refresh_tag(name, tag)

    def _fresh(self, name: str, tag: str) -> bool:
        checked = self._checked.get((name, tag))
        return (
            checked is not None
            and self._clock() - checked < self.ttl
            and self.storage.db.tagged(name, tag) is not None
        )

    async def _refresh_tag(self, name: str, tag: str) -> None:
        cached = self.storage.db.tagged(name, tag)
        try:
            if cached is not None:
                stated = await self._head_manifest(name, tag)
                if stated == cached[0]:
                    self._checked[(name, tag)] = self._clock()
                    return
            await self._fetch_manifest(name, ":" + tag, tag)
        except (UpstreamUnavailable, UpstreamInvalid, ManifestUnknown) as exc:
            if cached is None:
                raise
            log.warning("%s:%s: upstream check failed, serving the cached tag: %s", name, tag, exc)
        self._checked[(name, tag)] = self._clock()

    async def _head_manifest(self, name: str, tag: str) -> str | None:
        """The digest the upstream states for ``name:tag`` (None if it states none)."""
        target = self._target(name, ":" + tag)
        try:
            response = await self.client.transport.request(
                "HEAD",
                target.host,
                f"/v2/{target.repository}/manifests/{tag}",
                scopes=[repository_scope(target.repository, "pull")],
                headers={"Accept": ACCEPT},
            )
            async with response:
                status = response.status
                stated = response.headers.get("Docker-Content-Digest")
        except _UPSTREAM_ERRORS as exc:
            raise self._translate(exc, ManifestUnknown, f"{name}:{tag}") from exc
        if status == 200:
            return stated
        if status in (401, 403, 404):
            raise ManifestUnknown(
                f"manifest unknown: {name}:{tag} (upstream {self.url}: http {status})",
                detail={"reference": tag, "upstream": self.url},
            )
        raise UpstreamUnavailable(
            f"upstream registry {self.url}: {name}:{tag}: http {status}",
            detail={"upstream": self.url},
        )

    async def _fetch_manifest(self, name: str, reference: str, tag: str | None) -> None:
        target = self._target(name, reference)
        what = f"{name}{reference}"
        try:
            fetched = await fetch_manifest(self.client.transport, target)
        except _UPSTREAM_ERRORS as exc:
            raise self._translate(exc, ManifestUnknown, what) from exc
        try:
            await asyncio.to_thread(
                self.storage.cache_manifest, name, fetched.raw, fetched.descriptor.media_type, tag
            )
        except ManifestInvalid as exc:
            raise UpstreamInvalid(
                f"upstream registry {self.url} sent an invalid manifest for {what}: {exc}",
                detail={"upstream": self.url},
            ) from exc
        log.info("%s: cached %s from %s", what, fetched.descriptor.digest, self.url)

    # ----------------------------------------------------------------- blobs

    def has_blob(self, name: str, digest: str) -> bool:
        return self.storage.db.has_blob(name, digest) and self.storage.content.exists(digest)

    async def stat_blob(self, name: str, digest: str) -> int:
        """The size of blob ``digest`` of ``name`` upstream (``HEAD``)."""
        target = self._target(name)
        try:
            response = await self.client.transport.request(
                "HEAD",
                target.host,
                f"/v2/{target.repository}/blobs/{digest}",
                scopes=[repository_scope(target.repository, "pull")],
            )
            async with response:
                status, length = response.status, response.content_length
        except _UPSTREAM_ERRORS as exc:
            raise self._translate(exc, BlobUnknown, f"{name}@{digest}") from exc
        if status == 200 and length is not None:
            return length
        if status in (401, 403, 404):
            raise BlobUnknown(
                f"blob unknown to registry: {name}@{digest} (upstream {self.url}: http {status})",
                detail={"digest": digest, "upstream": self.url},
            )
        raise UpstreamUnavailable(
            f"upstream registry {self.url}: {name}@{digest}: "
            + ("no Content-Length" if status == 200 else f"http {status}"),
            detail={"upstream": self.url},
        )

    async def ensure_blob(self, name: str, digest: str) -> None:
        """Make blob ``digest`` of ``name`` servable from the local storage."""
        if self.has_blob(name, digest):
            return
        stored_digest(digest)
        # By digest, not repository: two repositories asking for one layer fetch it once.
        async with self._locks.hold(f"blob {digest}"):
            for _ in range(2):  # a collection may sweep it between the fetch and the link
                if self.has_blob(name, digest):
                    return
                # Asked even when another repository brought the bytes: this one must
                # have the blob upstream to serve it (as a mount needs the source's).
                size = await self.stat_blob(name, digest)
                if not self.storage.content.exists(digest):
                    await self._download(name, digest, size)
                if await asyncio.to_thread(self.storage.link_cached, name, digest):
                    return
        raise UpstreamUnavailable(
            f"blob {name}@{digest} from {self.url} was removed while being cached",
            detail={"upstream": self.url},
        )

    async def _download(self, name: str, digest: str, size: int) -> None:
        target = self._target(name)
        descriptor = Descriptor(_OCTET_STREAM, Digest(digest), size)
        try:
            await download(
                self.client.transport,
                target,
                descriptor,
                self.storage.content,
                backoff=self.client.transport.backoff,
            )
        except _UPSTREAM_ERRORS as exc:
            raise self._translate(exc, BlobUnknown, f"{name}@{digest}") from exc
        log.info("%s@%s: cached from %s (%d bytes)", name, digest, self.url, size)

    # ----------------------------------------------------------------- errors

    def _translate(
        self, exc: BaseException, unknown: type[ManifestUnknown | BlobUnknown], what: str
    ) -> MoorageError:
        """An upstream failure as the spec's reply: 404 for what upstream has not (or
        will not show us), 503 when it cannot be reached, 502 when it sent bad content."""
        detail = {"upstream": self.url}
        if isinstance(exc, NotFound | PermissionDenied):
            kind = "manifest unknown" if unknown is ManifestUnknown else "blob unknown to registry"
            return unknown(f"{kind}: {what} (upstream {self.url}: {exc})", detail=detail)
        if isinstance(exc, Unavailable | aiohttp.ClientError | asyncio.TimeoutError):
            return UpstreamUnavailable(
                f"upstream registry {self.url} unavailable: {exc or type(exc).__name__}",
                detail=detail,
            )
        # A digest mismatch, a manifest that does not parse, schema 1, another refusal.
        return UpstreamInvalid(f"upstream registry {self.url}: {exc}", detail=detail)


# --------------------------------------------------------------------------- routes


async def get_manifest(
    registry: Registry, request: web.Request, endpoint: Endpoint
) -> web.StreamResponse:
    assert registry.proxy is not None
    await registry.proxy.ensure_manifest(endpoint.name, endpoint.reference)
    return await routes_manifests.get_manifest(registry, request, endpoint)


async def get_blob(
    registry: Registry, request: web.Request, endpoint: Endpoint
) -> web.StreamResponse:
    proxy = registry.proxy
    assert proxy is not None
    name, digest = endpoint.name, check_digest(endpoint.reference)
    if not proxy.has_blob(name, digest):
        if request.method == "HEAD":
            size = await proxy.stat_blob(name, digest)
            return web.Response(
                headers={
                    "Content-Type": _OCTET_STREAM,
                    "Content-Length": str(size),
                    "Docker-Content-Digest": digest,
                    "ETag": f'"{digest}"',
                    API_VERSION_HEADER: API_VERSION,
                }
            )
        await proxy.ensure_blob(name, digest)
    return await routes_blobs.get_blob(registry, request, endpoint)
