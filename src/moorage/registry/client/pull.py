"""Pull: a reference's manifest, config and layers into the content store.

::

    result = await pull(transport, store, resolve("busybox"), platform=host_platform())
    result.root        # what the tag points at: an index or a manifest (descriptor)
    result.manifest    # the image manifest for the platform (== root without an index)

The order of the work, and why:

1. the root manifest (by tag or digest), then for an index the platform's manifest
   (read from the store when it is there already);
2. the config, then the layers, a bounded number at a time (``concurrency``; the
   registry and the disk are shared), each one skipped when the store has it;
3. every blob goes through :func:`moorage.registry.client.blobs.download`: resumable,
   verified, never visible in the store under a digest it does not have.

``protect(digest)`` is called (in a thread) before each blob is written or relied on:
the caller's lease, so that a garbage collection running meanwhile keeps them. Blobs
are labelled with the repository they came from (:mod:`.sources`), for later mounts.
Concurrent pulls of the same blob in one process wait for each other through
:class:`KeyedLocks`; across processes, a pull that finds the blob's ingest locked waits
for it to be released.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

from moorage.errors import InvalidArgument, Unavailable
from moorage.oci import mediatypes as mt
from moorage.oci.descriptor import Descriptor
from moorage.oci.image import Index, Manifest, parse_any
from moorage.oci.platform import Platform, host_platform
from moorage.registry.client import blobs
from moorage.registry.client.backoff import Sleep, default_sleep
from moorage.registry.client.errors import DigestMismatch, RegistryNotSupported
from moorage.registry.client.manifests import choose, fetch_manifest
from moorage.registry.client.progress import Progress, ProgressFn, ignore
from moorage.registry.client.resolve import Target
from moorage.registry.client.sources import with_source
from moorage.registry.client.tasks import run_all
from moorage.registry.client.transport import Transport
from moorage.store.content import ContentStore

__all__ = ["DEFAULT_CONCURRENCY", "KeyedLocks", "PullResult", "pull"]

# Docker's default for max-concurrent-downloads.
DEFAULT_CONCURRENCY = 3
_LOCKED_WAIT_MAX = 1.0  # seconds between looks at an ingest another process holds


class PullResult(NamedTuple):
    target: Target
    root: Descriptor  # what the reference points at (an index or a manifest)
    manifest: Descriptor  # the image manifest for the platform (the root, without an index)
    image: Manifest
    root_index: Index | None  # the root, when it is one
    downloaded: tuple[str, ...]  # the layers fetched now; the others were in the store


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: Counter[str] = Counter()

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                del self._locks[key]


async def pull(
    transport: Transport,
    store: ContentStore,
    target: Target,
    *,
    platform: Platform | None = None,
    progress: ProgressFn = ignore,
    protect: Callable[[str], None] | None = None,
    locks: KeyedLocks | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    sleep: Sleep = default_sleep,
) -> PullResult:
    """Fetch ``target`` for ``platform`` (the host's by default) into ``store``."""
    want = platform or host_platform()
    locks = locks or KeyedLocks()
    what = str(target.reference)
    puller = _Puller(transport, store, target, progress, protect, locks, sleep)

    fetched = await fetch_manifest(transport, target)
    await puller.keep(fetched.descriptor, fetched.raw)
    progress(Progress("resolved", str(fetched.descriptor.digest)))
    index: Index | None = None
    manifest_descriptor = fetched.descriptor
    document = fetched.document
    if isinstance(document, Index):
        index = document
        chosen = choose(document, want, what)
        raw = await puller.manifest(chosen)
        document = parse_any(
            raw, chosen.media_type, source=f"{target.reference.name}@{chosen.digest}"
        )
        manifest_descriptor = chosen._replace(platform=None, annotations={})
    if not isinstance(document, Manifest):
        raise RegistryNotSupported(f"{what}: the index entry for {want} is itself an index")
    _check_image(document, what)

    await puller.blob(document.config)
    layers = list({str(layer.digest): layer for layer in document.layers}.values())
    present = await asyncio.gather(*(puller.present(layer) for layer in layers))
    for layer, here in zip(layers, present, strict=True):
        progress(Progress("exists" if here else "waiting", str(layer.digest), 0, layer.size))
    limit = asyncio.Semaphore(max(1, concurrency))
    downloaded: list[str] = []

    async def one(layer: Descriptor) -> None:
        async with limit:
            if await puller.blob(layer, report=True):
                downloaded.append(str(layer.digest))

    await run_all(one(layer) for layer, here in zip(layers, present, strict=True) if not here)
    return PullResult(
        target,
        fetched.descriptor,
        manifest_descriptor,
        document,
        index,
        tuple(d for d in (str(x.digest) for x in layers) if d in downloaded),
    )


def _check_image(manifest: Manifest, what: str) -> None:
    """Refuse artifacts (signatures, helm charts): they have no image config to run."""
    if not mt.is_config(manifest.config.media_type):
        raise RegistryNotSupported(
            f"{what}: not a container image: config media type {manifest.config.media_type}"
        )
    for layer in manifest.layers:
        if not mt.is_layer(layer.media_type):
            raise RegistryNotSupported(
                f"{what}: not a container image: layer media type {layer.media_type}"
            )


class _Puller:
    def __init__(
        self,
        transport: Transport,
        store: ContentStore,
        target: Target,
        progress: ProgressFn,
        protect: Callable[[str], None] | None,
        locks: KeyedLocks,
        sleep: Sleep,
    ) -> None:
        self.transport = transport
        self.store = store
        self.target = target
        self.progress = progress
        self._protect = protect
        self.locks = locks
        self.sleep = sleep

    def _labels(self) -> dict[str, str]:
        return with_source({}, self.target.host, self.target.repository)

    async def protect(self, digest: str) -> None:
        if self._protect is not None:
            await asyncio.to_thread(self._protect, digest)

    async def present(self, descriptor: Descriptor) -> bool:
        """Whether the store has the blob (protected first, and labelled with our source)."""
        digest = str(descriptor.digest)
        await self.protect(digest)
        return await asyncio.to_thread(self._present, digest)

    def _present(self, digest: str) -> bool:
        if not self.store.exists(digest):
            return False
        try:
            labels = self.store.info(digest).labels
            update = with_source(labels, self.target.host, self.target.repository)
            if update:
                self.store.set_labels(digest, update)
        except InvalidArgument:
            pass  # a label we cannot merge is no reason to fetch the blob again
        return True

    async def keep(self, descriptor: Descriptor, raw: bytes) -> None:
        """Store a fetched (and verified) manifest."""
        if await self.present(descriptor):
            return
        await asyncio.to_thread(self._write_small, str(descriptor.digest), raw)

    def _write_small(self, digest: str, raw: bytes) -> None:
        self.store.write_blob(raw, expected=digest, ref=blobs.ingest_ref(digest))
        self.store.set_labels(digest, self._labels())

    async def manifest(self, chosen: Descriptor) -> bytes:
        """The raw manifest ``chosen`` names: from the store when it is there."""
        digest = str(chosen.digest)
        if await self.present(chosen):
            return await asyncio.to_thread(self.store.read_blob, digest)
        fetched = await fetch_manifest(self.transport, self.target, digest)
        if fetched.descriptor.size != chosen.size:
            raise DigestMismatch(
                f"{self.target.reference.name}@{digest}: the index gives {chosen.size} bytes, "
                f"the registry sent {fetched.descriptor.size}"
            )
        await asyncio.to_thread(self._write_small, digest, fetched.raw)
        return fetched.raw

    async def blob(self, descriptor: Descriptor, *, report: bool = False) -> bool:
        """Make sure the store has the blob; True when it was downloaded now."""
        digest = str(descriptor.digest)
        async with self.locks.hold(digest):
            if await self.present(descriptor):
                if report:
                    self.progress(Progress("exists", digest, 0, descriptor.size))
                return False
            wait = 0.05
            while True:
                try:
                    await blobs.download(
                        self.transport,
                        self.target,
                        descriptor,
                        self.store,
                        labels=self._labels(),
                        progress=self.progress if report else None,
                        sleep=self.sleep,
                    )
                except Unavailable as exc:
                    if not str(exc).startswith("ref locked"):
                        raise
                    # Another process is fetching it: wait for it to finish or give up.
                    await self.sleep(wait)
                    wait = min(wait * 2, _LOCKED_WAIT_MAX)
                    if await self.present(descriptor):
                        if report:
                            self.progress(Progress("exists", digest, 0, descriptor.size))
                        return False
                    continue
                if report:
                    self.progress(Progress("downloaded", digest, descriptor.size, descriptor.size))
                return True
