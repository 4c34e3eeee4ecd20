"""Images to and from registries: the images service's pull, push and login checks.

A pull stores an image exactly as ``load`` does, so everything else (``images``,
``inspect``, ``run``, ``save``, GC) treats it like any other:

1. the registry client fetches the manifest(s), config and layers into the content
   store, under an engine lease (so a collection meanwhile keeps them, and a daemon
   killed mid-pull leaves only garbage and resumable ingests);
2. the layers are unpacked into snapshots, as for a load;
3. the name gets an image record, and so a repo digest (``name@sha256:...``).

What the record points at: for a reference to an index, the index itself when the
chosen manifest is the one this host would choose anyway (so the repo digest is the
index's, as ``docker pull`` shows it, and the image resolves to the same manifest);
for another ``--platform``, the chosen manifest. A pull by digest is recorded under
``name@digest``, which has a repo digest and no tag, as in Docker.

A push sends what the store has, compressed layers as stored: the record's index with
its manifests when all of them are here, else the manifest the image resolves to.

Progress goes to a callback as :class:`~moorage.registry.client.progress.Progress`
records; besides the client's, a pull reports ``complete`` for each layer once the
image is unpacked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from moorage.engine.images import ENGINE_LEASE, ImageService, Resolved
from moorage.errors import InvalidArgument, NotFound
from moorage.oci import mediatypes as mt
from moorage.oci.descriptor import Descriptor
from moorage.oci.digest import parse_digest
from moorage.oci.image import Index, parse_any, parse_image_config
from moorage.oci.platform import host_platform, parse_platform, select_manifest
from moorage.oci.reference import Reference, parse_reference
from moorage.registry.client.client import RegistryClient
from moorage.registry.client.credentials import Credentials
from moorage.registry.client.progress import Progress, ProgressFn, ignore
from moorage.registry.client.pull import KeyedLocks, PullResult
from moorage.registry.client.push import PushResult
from moorage.registry.client.resolve import normalize_server, resolve
from moorage.store.metadata import ImageRecord

__all__ = ["PullOutcome", "PushItem", "Transfers"]

log = logging.getLogger(__name__)


class PullOutcome(NamedTuple):
    reference: Reference  # as asked for, completed
    name: str  # the image record's name
    digest: str  # what the reference points at on the registry (the repo digest)
    image_id: str
    updated: bool  # False: the name pointed at this image already
    layers: tuple[str, ...]


class PushItem(NamedTuple):
    reference: Reference  # name:tag, local and remote
    root: Descriptor  # what goes up under the tag


class Transfers:
    """Registry transfers for one images service (one per daemon)."""

    def __init__(self, images: ImageService, insecure: Sequence[str] = ()) -> None:
        self.images = images
        self.insecure = tuple(insecure)
        # Two pulls of images that share a layer download it once.
        self.locks = KeyedLocks()

    def client(self, credentials: Credentials | None) -> RegistryClient:
        return RegistryClient(insecure=self.insecure, credentials=lambda host: credentials)

    # --- pull ----------------------------------------------------------------------

    async def pull(
        self,
        reference: str,
        *,
        platform: str | None = None,
        credentials: Credentials | None = None,
        progress: ProgressFn = ignore,
    ) -> PullOutcome:
        ref = parse_reference(reference)
        want = parse_platform(platform) if platform else host_platform()
        images = self.images
        lease = await asyncio.to_thread(images.leases.create, labels=ENGINE_LEASE)
        try:

            def protect(digest: str) -> None:
                images.leases.add_resource(lease, "content", digest)

            async with self.client(credentials) as client:
                result = await client.pull(
                    images.content,
                    resolve(ref),
                    platform=want,
                    progress=progress,
                    protect=protect,
                    locks=self.locks,
                )
            outcome = await asyncio.to_thread(self._record, ref, result)
        finally:
            with contextlib.suppress(NotFound):
                await asyncio.to_thread(images.leases.delete, lease)
        for digest in result.downloaded:
            progress(Progress("complete", digest))
        return outcome

    def _record(self, ref: Reference, result: PullResult) -> PullOutcome:
        """Unpack the pulled image and give it its name (in a worker thread)."""
        images = self.images
        manifest = result.image
        config = parse_image_config(
            images.content.read_blob(str(manifest.config.digest)),
            source=f"{ref.name}@{manifest.config.digest}",
        )
        target = result.manifest
        if result.root_index is not None:
            try:
                native = select_manifest(result.root_index.manifests, host_platform())
            except NotFound:
                native = None
            if native is not None and native.digest == result.manifest.digest:
                target = result.root
        name = str(ref) if ref.digest is None else f"{ref.name}@{ref.digest}"
        now = datetime.now(UTC)
        record = ImageRecord(name, target.media_type, str(target.digest), target.size, now, now, {})
        images.unpack(
            Resolved((record,), result.manifest.digest, manifest, manifest.config.digest, config)
        )
        try:
            previous = images.db.get_image(name)
        except NotFound:
            previous = None
        images.set_name(record)
        return PullOutcome(
            reference=ref,
            name=name,
            digest=str(result.root.digest),
            image_id=str(manifest.config.digest),
            updated=previous is None or previous.digest != record.digest,
            layers=tuple(str(layer.digest) for layer in manifest.layers),
        )

    # --- push ----------------------------------------------------------------------

    def push_plan(self, name: str, tag: str | None = None) -> list[PushItem]:
        """What ``push name[:tag]`` sends: one item per tag (every tag of the repository
        when neither ``name`` nor ``tag`` has one, as dockerd does). In a worker thread."""
        ref = parse_reference(name, default_tag=None)
        if ref.digest is not None:
            raise InvalidArgument(f"push: cannot push a digest reference: {name}")
        if tag:
            refs = [ref.with_tag(tag)]
        elif ref.tag is not None:
            refs = [ref]
        else:
            refs = []
            for record in self.images.db.list_images():
                try:
                    other = parse_reference(record.name, default_tag=None)
                except InvalidArgument:
                    continue
                if other.name == ref.name and other.tag is not None and other.digest is None:
                    refs.append(other)
            if not refs:
                raise NotFound(f"an image does not exist locally with the tag: {ref.familiar()}")
        return [PushItem(r, self._root(r)) for r in sorted(refs, key=str)]

    def _root(self, ref: Reference) -> Descriptor:
        images = self.images
        try:
            record = images.db.get_image(str(ref))
        except NotFound:
            raise NotFound(
                f"an image does not exist locally with the tag: {ref.familiar()}"
            ) from None
        root = Descriptor(record.media_type, parse_digest(record.digest), record.size)
        if mt.is_index(record.media_type):
            index = parse_any(images.content.read_blob(record.digest), record.media_type)
            assert isinstance(index, Index)
            if all(images.content.exists(str(d.digest)) for d in index.manifests):
                return root
            # A pull keeps the manifests of one platform: push the one this image is.
            resolved = images.resolve(str(ref))
            raw = images.content.read_blob(str(resolved.manifest_digest))
            document = parse_any(raw)
            media_type = document.media_type or mt.OCI_MANIFEST
            return Descriptor(media_type, resolved.manifest_digest, len(raw))
        return root

    async def push(
        self,
        item: PushItem,
        *,
        credentials: Credentials | None = None,
        progress: ProgressFn = ignore,
    ) -> PushResult:
        async with self.client(credentials) as client:
            return await client.push(
                self.images.content, resolve(item.reference), item.root, progress=progress
            )

    # --- login ---------------------------------------------------------------------

    async def login(self, server: str, credentials: Credentials) -> str:
        """Check ``credentials`` against registry ``server``; returns its normalised host."""
        host = normalize_server(server)
        async with self.client(credentials) as client:
            await client.check_login(host)
        return host
