"""The registry's storage: blobs in a Moorage content store, names in ``registry.db``.

::

    <root>/content/blobs/sha256/<hex>     every blob and manifest, once, whatever the repo
    <root>/content/ingest/<ref>/          uploads in progress (ref registry-upload-<id>)
    <root>/metadata.db                    the content store's own labels (unused here)
    <root>/registry.db                    repositories, manifests, tags, blob links, uploads
    <root>/registry.lock                  the write fence (below)

The write fence, and why a push never loses a blob to ``moor registry gc``. A push
checks that what it refers to exists, then records the reference: a mount checks the
blob is in the source repository and links it; a manifest PUT checks every blob and
child manifest it names and records the manifest. The collector's sweep must not fall
between the check and the record, so both hold ``registry.lock``: pushes shared, the
sweep exclusive (see :mod:`moorage.registry.server.gc`). Uploads need no fence: a
commit renames a fresh inode into place, which the content store's own fence already
protects from a running collection.

Blocking work (commits, which fsync; database writes) is for worker threads. What the
hot read paths need (a link lookup, a manifest record, a cached manifest) is cheap
enough for the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

from moorage.errors import InvalidArgument, NotFound, NotSupported
from moorage.oci import mediatypes
from moorage.oci.digest import Digest
from moorage.oci.image import Index, Manifest, parse_any
from moorage.registry.server.errors import (
    BlobUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
)
from moorage.registry.server.metadata import ManifestRecord, RegistryDB
from moorage.store.content import ContentStore, ContentWriter

__all__ = ["MANIFEST_TYPES", "ManifestCache", "Storage", "describe_manifest"]

MANIFEST_TYPES: Final = frozenset(
    {
        mediatypes.OCI_MANIFEST,
        mediatypes.OCI_INDEX,
        mediatypes.DOCKER_MANIFEST,
        mediatypes.DOCKER_MANIFEST_LIST,
    }
)


class ManifestCache:
    """Manifest bytes by digest, least recently used out first, at most ``max_bytes``.

    Content-addressed bytes never go stale, so there is nothing to invalidate: whether a
    repository may serve a digest is always asked of the database first.
    """

    def __init__(self, max_bytes: int = 64 << 20, max_entry: int = 1 << 20) -> None:
        self.max_bytes = max_bytes
        self.max_entry = max_entry
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # worker threads fill it, the loop reads it

    def get(self, digest: str) -> bytes | None:
        with self._lock:
            raw = self._entries.get(digest)
            if raw is not None:
                self._entries.move_to_end(digest)
            return raw

    def put(self, digest: str, raw: bytes) -> None:
        if len(raw) > self.max_entry:
            return
        with self._lock:
            if digest in self._entries:
                return
            self._entries[digest] = raw
            self._bytes += len(raw)
            while self._bytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= len(old)


def _children(document: Manifest | Index) -> tuple[list[str], list[str]]:
    """``(blobs, manifests)`` a manifest names and that must exist for it to be accepted.

    Not its subject (the spec: a referrer may come before what it refers to), nor a
    layer with ``urls`` (a foreign layer lives elsewhere by design).
    """
    if isinstance(document, Index):
        return [], list(dict.fromkeys(d.digest for d in document.manifests))
    blobs = [document.config.digest]
    blobs += [d.digest for d in document.layers if not d.urls]
    return list(dict.fromkeys(blobs)), []


def describe_manifest(raw: bytes, content_type: str | None) -> tuple[Manifest | Index, str]:
    """Parse a pushed manifest; returns it with the media type to serve it as.

    The document's ``mediaType`` wins; a known Content-Type must agree with it and
    stands in for it when the document has none (the spec makes both the client's to
    set); failing both, the document's shape decides.
    """
    declared = (content_type or "").partition(";")[0].strip()
    known = declared if declared in MANIFEST_TYPES else None
    try:
        document = parse_any(raw, known, source="manifest")
    except (InvalidArgument, NotSupported) as exc:
        raise ManifestInvalid(f"invalid manifest: {exc}") from exc
    media_type = document.media_type or known
    if media_type is None:
        media_type = (
            mediatypes.OCI_INDEX if isinstance(document, Index) else mediatypes.OCI_MANIFEST
        )
    return document, media_type


def _record(
    digest: Digest, raw: bytes, document: Manifest | Index, media_type: str
) -> ManifestRecord:
    artifact_type = document.artifact_type
    if artifact_type is None and isinstance(document, Manifest):
        artifact_type = document.config.media_type
    return ManifestRecord(
        digest=digest,
        media_type=media_type,
        size=len(raw),
        subject=None if document.subject is None else document.subject.digest,
        artifact_type=artifact_type,
        annotations=document.annotations,
    )


class Storage:
    """Everything the server and the collector keep under ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.content = ContentStore(self.root)
        self.db = RegistryDB(self.root / "registry.db")
        self.manifests = ManifestCache()
        self._fence = self.root / "registry.lock"

    def close(self) -> None:
        self.db.close()
        self.content.close()

    @contextlib.contextmanager
    def write_fence(self, *, exclusive: bool = False) -> Iterator[None]:
        """Shared around a push's check-then-record; exclusive around a collector's sweep."""
        fd = os.open(self._fence, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # ----------------------------------------------------------------- blobs

    def open_blob(self, repo: str, digest: str) -> BinaryIO:
        """The blob as a file, if ``repo`` may serve it; BlobUnknown otherwise."""
        if not self.db.has_blob(repo, digest):
            raise BlobUnknown(
                f"blob unknown to registry: {repo}@{digest}", detail={"digest": digest}
            )
        try:
            return self.content.reader(digest)
        except NotFound as exc:
            raise BlobUnknown(
                f"blob unknown to registry: {repo}@{digest}", detail={"digest": digest}
            ) from exc

    def mount(self, repo: str, digest: str, source: str) -> bool:
        """Link a blob of ``source`` into ``repo``; False if ``source`` has no such blob."""
        with self.write_fence():
            if not self.db.has_blob(source, digest) or not self.content.exists(digest):
                return False
            self.db.link_blob(repo, digest)
        return True

    def commit_upload(
        self, repo: str, writer: ContentWriter, digest: Digest, upload_id: str | None
    ) -> None:
        """Verify and commit an upload's data as ``digest`` and link it into ``repo``.

        A mismatch deletes the data (the content store keeps nothing of a failed commit)
        and ends the session: DigestInvalid.
        """
        try:
            writer.commit(expected=digest)
        except InvalidArgument as exc:
            if upload_id is not None:
                self.db.delete_upload(upload_id)
            raise DigestInvalid(
                f"digest mismatch for upload to {repo}: {exc}", detail={"digest": digest}
            ) from exc
        self.db.link_blob(repo, digest, end_upload=upload_id)

    # ----------------------------------------------------------------- manifests

    def read_manifest(self, digest: str) -> bytes:
        raw = self.manifests.get(digest)
        if raw is None:
            raw = self.content.read_blob(digest)
            self.manifests.put(digest, raw)
        return raw

    def put_manifest(
        self, repo: str, reference: str, raw: bytes, content_type: str | None
    ) -> ManifestRecord:
        """Validate and store a pushed manifest under a tag, or a digest (``reference``)."""
        digest = Digest("sha256:" + hashlib.sha256(raw).hexdigest())
        tag: str | None = reference
        if ":" in reference:
            tag = None
            if reference != digest:
                raise DigestInvalid(
                    f"manifest digest mismatch: {repo}@{reference}, the body is {digest}",
                    detail={"digest": reference},
                )
        document, media_type = describe_manifest(raw, content_type)
        blobs, manifests = _children(document)
        record = _record(digest, raw, document, media_type)
        with self.write_fence():
            missing = self.db.missing_blobs(repo, blobs)
            missing += [d for d in blobs if d not in missing and not self.content.exists(d)]
            missing += self.db.missing_manifests(repo, manifests)
            if missing:
                raise ManifestBlobUnknown(
                    f"manifest for {repo} refers to what the repository does not have: "
                    + ", ".join(missing),
                    detail={"digests": missing},
                )
            # Written even if it exists: a fresh inode tells a running collector that
            # this blob is in use (store/content.py, the commit fence).
            self.content.write_blob(raw, expected=digest)
            self.db.put_manifest(repo, record, tag)
        self.manifests.put(digest, raw)
        return record

    # ----------------------------------------------------------------- a pull-through cache

    def cache_manifest(
        self, repo: str, raw: bytes, media_type: str, tag: str | None
    ) -> ManifestRecord:
        """Record a manifest fetched (and verified) from an upstream, and point ``tag``.

        Unlike a push, what it names need not be here: a cache fetches blobs and child
        manifests when they are asked for.
        """
        digest = Digest("sha256:" + hashlib.sha256(raw).hexdigest())
        document, media_type = describe_manifest(raw, media_type)
        record = _record(digest, raw, document, media_type)
        with self.write_fence():
            self.content.write_blob(raw, expected=digest)
            self.db.put_manifest(repo, record, tag)
        self.manifests.put(digest, raw)
        return record

    def link_cached(self, repo: str, digest: str) -> bool:
        """Link a blob fetched from an upstream into ``repo``; False if it is gone again
        (a collection swept it between the fetch and now)."""
        with self.write_fence():
            if not self.content.exists(digest):
                return False
            self.db.link_blob(repo, digest)
        return True
