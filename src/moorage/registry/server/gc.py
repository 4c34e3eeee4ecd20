"""``moor registry gc``: delete the blobs no manifest of any repository reaches.

Roots are every manifest of every repository, every blob linked into a repository
within the grace period (a push uploads layers first and the manifest that makes them
reachable last; distribution has no such period and must be run read-only, this one
may run beside a live server), and every upload session. From each manifest the mark
follows what it names: an index its manifests, a manifest its config and layers, both
their subject. Whatever is left is swept; links to swept blobs are dropped from every
repository, so none claims a blob it no longer has.

One collection, and why it races neither uploads nor pushes::

    content gc lock                       (one collection at a time)
      content fence: stamp every blob     (the mark starts)
      read the roots, mark                (no lock held: pushes go on)
      registry write fence, exclusive     (no mount or manifest PUT is between its
      + content fence:                     check and its record)
        read the roots again, mark what is new
        delete each stamped, unmarked blob whose inode is still the stamped one
        drop the links to what was deleted
    prune upload data not written for a day, and the sessions it belonged to

An upload committed during the mark is a new inode the stamps do not know, so it is
never swept (store/content.py); a live upload's ingest is held by its writer, or
was written recently, so it is never pruned.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from moorage.errors import InvalidArgument, MoorageError, NotFound
from moorage.oci.image import MAX_MANIFEST_SIZE, Manifest, parse_any
from moorage.registry.server.metadata import RegistryDB
from moorage.registry.server.storage import MANIFEST_TYPES, Storage
from moorage.registry.server.uploads import UPLOAD_REF_PREFIX
from moorage.store.content import ContentStore

__all__ = ["DEFAULT_GRACE", "UPLOAD_MAX_AGE", "GCReport", "collect"]

log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(hours=1)
UPLOAD_MAX_AGE = timedelta(hours=24)


class GCReport(NamedTuple):
    removed_blobs: tuple[str, ...]
    removed_uploads: tuple[str, ...]  # upload ids
    bytes_freed: int
    kept_blobs: int


def _roots(db: RegistryDB, grace_start: datetime) -> dict[str, str]:
    """digest -> media type ("" when it is a plain blob) of everything that must stay."""
    roots = {digest: "" for digest in db.blobs_linked_since(grace_start)}
    for digest, media_type in db.all_manifests():
        roots[digest] = media_type
    return roots


class _Marker:
    """The reachable set, grown from roots; each manifest is read once, nothing else is."""

    def __init__(self, content: ContentStore) -> None:
        self.content = content
        self.marked: set[str] = set()

    def mark(self, roots: Iterable[tuple[str, str]]) -> None:
        stack = list(roots)
        while stack:
            digest, media_type = stack.pop()
            if digest in self.marked:
                continue
            self.marked.add(digest)
            if media_type in MANIFEST_TYPES:
                stack += self._children(digest, media_type)

    def _children(self, digest: str, media_type: str) -> list[tuple[str, str]]:
        """What a manifest names, with the media types its descriptors give."""
        try:
            raw = self.content.read_blob(digest, MAX_MANIFEST_SIZE)
        except (NotFound, InvalidArgument):
            return []  # gone (a manifest's blob is never swept while it is recorded)
        try:
            document = parse_any(raw, media_type)
        except (MoorageError, ValueError) as exc:
            log.warning("gc: cannot read manifest %s: %s", digest, exc)
            return []
        if isinstance(document, Manifest):
            descriptors = [document.config, *document.layers]
        else:
            descriptors = list(document.manifests)
        if document.subject is not None:
            descriptors.append(document.subject)
        return [(d.digest, d.media_type) for d in descriptors]


def collect(
    root: str | Path,
    *,
    dry_run: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    upload_max_age: timedelta = UPLOAD_MAX_AGE,
) -> GCReport:
    """Collect the registry under ``root``; with ``dry_run`` report what would go.

    Safe beside a running server on the same root.
    """
    storage = Storage(root)
    try:
        return _collect(storage, dry_run, grace, upload_max_age)
    finally:
        storage.close()


def _collect(
    storage: Storage, dry_run: bool, grace: timedelta, upload_max_age: timedelta
) -> GCReport:
    content, db = storage.content, storage.db
    with content.gc_lock():
        with content.commit_fence():
            stamps = content.stamps()
        marker = _Marker(content)
        marker.mark(_roots(db, datetime.now(UTC) - grace).items())
        with storage.write_fence(exclusive=True), content.commit_fence():
            marker.mark(_roots(db, datetime.now(UTC) - grace).items())
            unmarked = [s for d, s in stamps.items() if d not in marker.marked]
            removed = content.delete_unchanged(unmarked, dry_run=dry_run)
            if removed and not dry_run:
                db.unlink_everywhere(s.digest for s in removed)
        removed_uploads, upload_bytes = _prune_uploads(storage, upload_max_age, dry_run)
    report = GCReport(
        removed_blobs=tuple(sorted(s.digest for s in removed)),
        removed_uploads=removed_uploads,
        bytes_freed=sum(s.size for s in removed) + upload_bytes,
        kept_blobs=len(stamps) - len(removed),
    )
    log.info(
        "registry gc%s: %d blobs, %d uploads, %d bytes",
        " (dry run)" if dry_run else "",
        len(report.removed_blobs),
        len(report.removed_uploads),
        report.bytes_freed,
    )
    return report


def _prune_uploads(
    storage: Storage, max_age: timedelta, dry_run: bool
) -> tuple[tuple[str, ...], int]:
    """Remove upload data idle for ``max_age`` and the sessions left without data."""
    content, db = storage.content, storage.db
    cutoff = datetime.now(UTC) - max_age
    pruned = content.prune_ingests(cutoff, keep=(), dry_run=dry_run)
    gone = {s.ref.removeprefix(UPLOAD_REF_PREFIX) for s in pruned}
    live = {s.ref.removeprefix(UPLOAD_REF_PREFIX) for s in content.ingests()} - gone
    removed: list[str] = []
    for upload in db.uploads():
        if upload.id in live or (upload.id not in gone and upload.started_at >= cutoff):
            continue
        if not dry_run:
            db.delete_upload(upload.id)
        removed.append(upload.id)
    return tuple(sorted(removed)), sum(s.offset for s in pruned)
