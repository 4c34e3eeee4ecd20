"""Manifests over the wire: fetched by tag or digest, checked, and put by tag.

A fetch asks for every image media type this client reads, both families::

    OCI index, Docker manifest list, OCI manifest, Docker schema 2 manifest

and checks, before anything is parsed or stored:

- size: over :data:`~moorage.oci.image.MAX_MANIFEST_SIZE` (4 MiB) is refused, from the
  ``Content-Length`` when the registry sends one and while reading when it does not;
- digest: fetched by digest, the bytes must hash to it; fetched by tag, they must hash
  to the ``Docker-Content-Digest`` the registry states, when it states one (a tag has
  nothing else to check against);
- media type: the ``Content-Type``, or failing a known one the document's own
  ``mediaType``; schema 1 is refused as unsupported.

For an index, :func:`choose` picks the manifest for a platform with
:func:`moorage.oci.platform.select_manifest`.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import aiohttp

from moorage.errors import NotFound
from moorage.oci import mediatypes as mt
from moorage.oci.descriptor import Descriptor
from moorage.oci.digest import ALGORITHMS, Digest, is_valid_digest
from moorage.oci.image import MAX_MANIFEST_SIZE, Index, Manifest, parse_any
from moorage.oci.platform import Platform, select_manifest
from moorage.registry.client.auth import repository_scope
from moorage.registry.client.errors import (
    DigestMismatch,
    ManifestTooLarge,
    RegistryNotFound,
    RegistryNotSupported,
    error_for_status,
)
from moorage.registry.client.resolve import Target
from moorage.registry.client.transport import Transport

__all__ = ["ACCEPT", "Fetched", "choose", "fetch_manifest", "put_manifest"]

ACCEPT = ", ".join(
    (
        mt.OCI_INDEX,
        mt.DOCKER_MANIFEST_LIST,
        mt.OCI_MANIFEST,
        mt.DOCKER_MANIFEST,
        # Asked for only to recognise them and refuse clearly, rather than get a
        # registry's conversion or a bare 404.
        mt.DOCKER_MANIFEST_V1_SIGNED,
        mt.DOCKER_MANIFEST_V1,
    )
)
_SCHEMA1 = frozenset({mt.DOCKER_MANIFEST_V1, mt.DOCKER_MANIFEST_V1_SIGNED})
_KNOWN = frozenset({mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST})


class Fetched(NamedTuple):
    descriptor: Descriptor  # media type, digest and size of ``raw``
    raw: bytes
    document: Manifest | Index


def digest_of(raw: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(f"{algorithm}:{hashlib.new(algorithm, raw).hexdigest()}")


async def fetch_manifest(
    transport: Transport, target: Target, reference: str | None = None
) -> Fetched:
    """The manifest or index ``reference`` (a tag or digest; default: the target's)."""
    wanted = reference or target.object
    by_digest = is_valid_digest(wanted)
    what = f"{target.reference.name}@{wanted}" if by_digest else f"{target.reference.name}:{wanted}"
    response = await transport.request(
        "GET",
        target.host,
        f"/v2/{target.repository}/manifests/{wanted}",
        scopes=[repository_scope(target.repository, "pull")],
        headers={"Accept": ACCEPT},
    )
    async with response:
        if response.status != 200:
            body = await response.content.read(64 * 1024)
            raise error_for_status(response.status, what, body)
        length = response.content_length
        if length is not None and length > MAX_MANIFEST_SIZE:
            raise ManifestTooLarge(
                f"{what}: manifest too large: {length} bytes (the limit is {MAX_MANIFEST_SIZE})"
            )
        raw = await _read_capped(response.content, what)
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        stated = response.headers.get("Docker-Content-Digest", "")
    algorithm = wanted.partition(":")[0] if by_digest else _algorithm_of(stated)
    actual = digest_of(raw, algorithm)
    if by_digest and actual != wanted:
        raise DigestMismatch(f"{what}: the registry sent a manifest whose digest is {actual}")
    if not by_digest and stated and is_valid_digest(stated) and stated != actual:
        raise DigestMismatch(
            f"{what}: the manifest's digest is {actual}, the registry says {stated}"
        )
    if content_type in _SCHEMA1:
        raise RegistryNotSupported(f"{what}: schema 1 manifests are not supported")
    media_type = content_type if content_type in _KNOWN else None
    document = parse_any(raw, media_type, source=what)
    if media_type is None:
        media_type = document.media_type or (
            mt.OCI_INDEX if isinstance(document, Index) else mt.OCI_MANIFEST
        )
    return Fetched(Descriptor(media_type, actual, len(raw)), raw, document)


async def _read_capped(content: aiohttp.StreamReader, what: str) -> bytes:
    data = bytearray()
    while chunk := await content.read(64 * 1024):
        data += chunk
        if len(data) > MAX_MANIFEST_SIZE:
            raise ManifestTooLarge(f"{what}: manifest too large: over {MAX_MANIFEST_SIZE} bytes")
    return bytes(data)


def _algorithm_of(digest: str) -> str:
    algorithm = digest.partition(":")[0]
    return algorithm if algorithm in ALGORITHMS else "sha256"


def choose(index: Index, platform: Platform, what: str) -> Descriptor:
    """The entry of ``index`` for ``platform``; :class:`RegistryNotFound` if none fits."""
    try:
        chosen = select_manifest(index.manifests, platform)
    except NotFound:
        available = sorted({str(d.platform) for d in index.manifests if d.platform is not None})
        raise RegistryNotFound(
            f"{what}: no manifest for platform {platform} (the index has "
            f"{', '.join(available) or 'none'})"
        ) from None
    if not mt.is_manifest(chosen.media_type):
        raise RegistryNotSupported(
            f"{what}: the entry for {platform} is not an image manifest: {chosen.media_type}"
        )
    return chosen


async def put_manifest(
    transport: Transport, target: Target, reference: str, raw: bytes, media_type: str
) -> Digest:
    """``PUT /v2/<name>/manifests/<reference>``; returns the digest the registry stored."""
    what = f"{target.reference.name}:{reference}"
    response = await transport.request(
        "PUT",
        target.host,
        f"/v2/{target.repository}/manifests/{reference}",
        scopes=[repository_scope(target.repository, "pull", "push")],
        headers={"Content-Type": media_type},
        body=raw,
    )
    async with response:
        body = await response.content.read(64 * 1024)
        if response.status not in (200, 201, 202):
            raise error_for_status(response.status, what, body)
        stated = response.headers.get("Docker-Content-Digest", "")
    ours = digest_of(raw)
    if stated and is_valid_digest(stated) and stated.startswith("sha256:") and stated != ours:
        raise DigestMismatch(f"{what}: the registry stored the manifest as {stated}, not {ours}")
    return ours
