"""Push: an image's blobs and manifest from the content store to a repository.

::

    result = await push(transport, store, resolve("localhost:5000/app:1"), root)
    result.digest, result.size     # the manifest as the registry now has it under the tag

``root`` is a manifest or an index in the store; an index is pushed with every manifest
it lists (all must be in the store). For each blob, a bounded number at a time:

1. ``HEAD``: the registry has it already: nothing to send (``exists``);
2. a cross-repository mount, when the blob's source label names another repository
   of the same registry (``mounted``);
3. otherwise an upload streamed from the store (``pushing``, then ``pushed``).

Then the manifests: an index's entries by digest, and the root by the target's tag.
Blobs are sent as stored, compressed layers included, so the manifest's digests hold.
Each blob pushed, mounted or found is labelled with the target repository, so that a
later push to another repository of the same registry can mount it.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from moorage.errors import InvalidArgument
from moorage.oci.descriptor import Descriptor
from moorage.oci.digest import Digest
from moorage.oci.image import Index, Manifest, parse_any
from moorage.registry.client import blobs
from moorage.registry.client.backoff import Sleep, default_sleep
from moorage.registry.client.manifests import put_manifest
from moorage.registry.client.progress import Progress, ProgressFn, ignore
from moorage.registry.client.resolve import Target
from moorage.registry.client.sources import sources_of, with_source
from moorage.registry.client.tasks import run_all
from moorage.registry.client.transport import Transport
from moorage.store.content import ContentStore

__all__ = ["DEFAULT_PUSH_CONCURRENCY", "PushResult", "push"]

DEFAULT_PUSH_CONCURRENCY = 3


class PushResult(NamedTuple):
    target: Target
    digest: Digest  # of the root manifest or index, as pushed
    size: int
    media_type: str
    layers: tuple[str, ...]  # the layer digests, in manifest order


async def push(
    transport: Transport,
    store: ContentStore,
    target: Target,
    root: Descriptor,
    *,
    progress: ProgressFn = ignore,
    concurrency: int = DEFAULT_PUSH_CONCURRENCY,
    chunk_size: int = blobs.DEFAULT_CHUNK_SIZE,
    sleep: Sleep = default_sleep,
) -> PushResult:
    """Push ``root`` (from ``store``) to ``target``, whose tag names it there."""
    tag = target.reference.tag
    if tag is None or target.reference.digest is not None:
        raise InvalidArgument(f"push: {target}: a push needs a tag and no digest")
    root_raw = await asyncio.to_thread(store.read_blob, str(root.digest))
    document = parse_any(root_raw, root.media_type, source=str(root.digest))
    manifests: list[tuple[Descriptor, bytes, Manifest]] = []
    if isinstance(document, Index):
        for entry in document.manifests:
            raw = await asyncio.to_thread(store.read_blob, str(entry.digest))
            child = parse_any(raw, entry.media_type, source=str(entry.digest))
            if not isinstance(child, Manifest):
                raise InvalidArgument(f"push: {target}: nested index {entry.digest}")
            manifests.append((entry, raw, child))
    else:
        manifests.append((root, root_raw, document))

    layers: dict[str, Descriptor] = {}
    configs: dict[str, Descriptor] = {}
    for _, _, manifest in manifests:
        configs.setdefault(str(manifest.config.digest), manifest.config)
        for layer in manifest.layers:
            layers.setdefault(str(layer.digest), layer)
    for digest, layer in layers.items():
        progress(Progress("waiting", digest, 0, layer.size))
    pusher = _Pusher(transport, store, target, progress, chunk_size, sleep)
    limit = asyncio.Semaphore(max(1, concurrency))

    async def one(descriptor: Descriptor, report: bool) -> None:
        async with limit:
            await pusher.blob(descriptor, report)

    await run_all(
        [
            *(one(layer, True) for layer in layers.values()),
            *(one(c, False) for c in configs.values()),
        ]
    )

    if isinstance(document, Index):
        for entry, raw, _ in manifests:
            await put_manifest(transport, target, str(entry.digest), raw, entry.media_type)
    digest = await put_manifest(transport, target, tag, root_raw, root.media_type)
    return PushResult(target, digest, len(root_raw), root.media_type, tuple(layers))


class _Pusher:
    def __init__(
        self,
        transport: Transport,
        store: ContentStore,
        target: Target,
        progress: ProgressFn,
        chunk_size: int,
        sleep: Sleep,
    ) -> None:
        self.transport = transport
        self.store = store
        self.target = target
        self.progress = progress
        self.chunk_size = chunk_size
        self.sleep = sleep

    async def blob(self, descriptor: Descriptor, report: bool) -> None:
        digest = str(descriptor.digest)
        info = await asyncio.to_thread(self.store.info, digest)
        if await blobs.exists(self.transport, self.target, digest):
            if report:
                self.progress(Progress("exists", digest, descriptor.size, descriptor.size))
        else:
            mounted = await blobs.upload(
                self.transport,
                self.target,
                descriptor,
                self.store,
                mount_from=sources_of(info.labels, self.target.host),
                progress=self.progress if report else None,
                chunk_size=self.chunk_size,
                sleep=self.sleep,
            )
            if report:
                if mounted is not None:
                    self.progress(Progress("mounted", digest, 0, descriptor.size, mounted))
                else:
                    self.progress(Progress("pushed", digest, descriptor.size, descriptor.size))
        update = with_source(info.labels, self.target.host, self.target.repository)
        if update:
            await asyncio.to_thread(self.store.set_labels, digest, update)
