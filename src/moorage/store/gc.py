"""Garbage collection of the store: mark what is reachable from the roots, sweep the rest.

This module owns the policy, not the storage: what counts as a root, how references are
followed, in what order things are removed. It reads roots from the metadata database,
reaches blobs through a :class:`~moorage.store.content.Collectable` content store and
snapshots through any object with ``walk()`` and ``remove(key)``, and learns what a blob
refers to from a ``references(media_type, raw)`` function the caller passes in (the image
code knows manifests; this module does not).

Roots:

- every image record's target digest (with the record's media type);
- the resources of every lease that has not expired (content, ingest, snapshot);
- every ``gc_roots`` row (content, ingest, snapshot), registered by other subsystems;
- for snapshots, also ``snapshot_roots_of(image, read_blob)`` for every image: the
  image's chain ids, computed by the caller.

Edges: from a blob to whatever ``references`` returns for it, and to the value of each
of its labels named ``moorage.gc.ref.content.<anything>``; from a snapshot to its parent.
``references`` may return digests, or ``(digest, media_type)`` pairs (or descriptors
with ``digest`` and ``media_type``) when it knows the child's media type, which is then
passed on when the child is read; a blob reached without one gets ``""`` and
``references`` must sniff, return nothing, or raise (the blob is then a leaf). Blobs larger
than :data:`MAX_REFERRING_BLOB` are never read: manifests, indexes and configs are small.

One collection, and why it never loses a blob that is being written (see also the
commit fence in :mod:`moorage.store.content`)::

    gc lock (exclusive; one collection at a time)
      fence: stamp every blob, list snapshots          <- the mark starts here
      read the roots (one consistent database read); mark (reads blobs, no lock held)
      fence: read the roots again and mark what is new; then delete every stamped,
             unmarked blob whose copy is still the stamped one; remove unmarked listed
             snapshots, children before parents
      prune old ingests that no live lease protects and no writer holds
      delete expired leases

Reading the roots again under the fence closes the window in which a caller adds a
reference (a lease resource, an image) after the first read and relies on a blob it saw
with ``exists()``: either the reference was added before the sweep, and is seen, or
after, and the blob is gone already, which the caller then sees. Snapshots created
after the listing, and their ancestors, are kept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol

from moorage.errors import InvalidArgument, MoorageError, NotFound
from moorage.store.content import Collectable
from moorage.store.metadata import ImageRecord, MetadataDB

__all__ = [
    "GC_REF_LABEL_PREFIX",
    "MAX_REFERRING_BLOB",
    "GCResult",
    "References",
    "SnapshotRootsOf",
    "Snapshots",
    "collect",
]

log = logging.getLogger(__name__)

# A content label ``moorage.gc.ref.content.<name>=sha256:...`` keeps that blob alive.
GC_REF_LABEL_PREFIX = "moorage.gc.ref.content."
# Registries refuse manifests above 4 MiB; a bigger blob is a leaf (a layer).
MAX_REFERRING_BLOB = 4 << 20

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

References = Callable[[str, bytes], Iterable[str | tuple[str, str]]]
"""``references(media_type, raw)``: the digests blob ``raw`` refers to (or pairs of
digest and media type). ``media_type`` is ``""`` when unknown. Example for an OCI
manifest: its config's and its layers' digests."""

SnapshotRootsOf = Callable[[ImageRecord, Callable[[str], bytes]], Iterable[str]]
"""``snapshot_roots_of(image, read_blob)``: the snapshot keys image ``image`` needs
(its layers' chain ids), reading blobs through ``read_blob(digest)``."""


class _SnapshotEntry(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def parent(self) -> str | None: ...


class Snapshots(Protocol):
    """The snapshot side of a collection: list every snapshot with its parent, remove one.

    ``walk()`` yields ``(key, parent)`` pairs or records with ``key`` and ``parent``
    attributes (a snapshotter's ``SnapshotInfo``); ``parent`` is None or "" for a base.
    """

    def walk(self) -> Iterable[tuple[str, str | None] | _SnapshotEntry]: ...

    def remove(self, key: str) -> None: ...


class GCResult(NamedTuple):
    removed_blobs: tuple[str, ...]  # digests
    removed_snapshots: tuple[str, ...]  # keys, in the order they were removed
    removed_ingests: tuple[str, ...]  # refs
    bytes_freed: int  # blobs and ingest data; snapshot sizes are not known here


class _Roots(NamedTuple):
    content: dict[str, str]  # digest -> media type ("" when unknown)
    ingests: set[str]
    snapshots: set[str]
    images: list[ImageRecord]
    label_edges: dict[str, set[str]]


def _read_roots(db: MetadataDB, now: datetime) -> _Roots:
    content: dict[str, str] = {}
    ingests: set[str] = set()
    snapshots: set[str] = set()
    with db.read_transaction():
        images = db.list_images()
        resources = [(r.kind, r.key) for r in db.live_lease_resources(now)]
        resources += [(r.kind, r.key) for r in db.list_roots()]
        label_refs = db.content_label_refs(GC_REF_LABEL_PREFIX)
    for image in images:
        # An image's own media type beats a lease's "unknown" for the same blob.
        content[image.digest] = image.media_type or content.get(image.digest, "")
    for kind, key in resources:
        if kind == "content":
            content.setdefault(key, "")
        elif kind == "ingest":
            ingests.add(key)
        elif kind == "snapshot":
            snapshots.add(key)
    edges: dict[str, set[str]] = {}
    for digest, value in label_refs:
        if _DIGEST.fullmatch(value):
            edges.setdefault(digest, set()).add(value)
        else:
            log.debug("gc: ignoring label ref of %s to %r: not a digest", digest, value)
    return _Roots(content, ingests, snapshots, images, edges)


class _Marker:
    """The set of reachable blobs, grown from roots; each blob is read at most once."""

    def __init__(self, content: Collectable, references: References) -> None:
        self.content = content
        self.references = references
        self.marked: set[str] = set()

    def mark(self, roots: Iterable[tuple[str, str]], label_edges: Mapping[str, set[str]]) -> None:
        stack = list(roots)
        # Label edges may have been added to blobs marked in an earlier pass.
        stack += [(c, "") for d in self.marked for c in label_edges.get(d, ())]
        while stack:
            digest, media_type = stack.pop()
            if digest in self.marked:
                continue
            self.marked.add(digest)
            stack += [(c, "") for c in label_edges.get(digest, ())]
            stack += self._children(digest, media_type)

    def _children(self, digest: str, media_type: str) -> list[tuple[str, str]]:
        try:
            raw = self.content.read_blob(digest, MAX_REFERRING_BLOB)
        except (NotFound, InvalidArgument):
            return []  # absent, or too big to be a manifest
        try:
            found = list(self.references(media_type, raw))
        except (MoorageError, ValueError) as exc:
            # A blob the caller cannot parse refers to nothing we can know of. Unknown
            # media type: most likely a small layer or a config, so not worth a warning.
            level = logging.WARNING if media_type else logging.DEBUG
            log.log(level, "gc: cannot read the references of %s: %s", digest, exc)
            return []
        children: list[tuple[str, str]] = []
        for item in found:
            child, child_type = _child(item)
            if _DIGEST.fullmatch(child):
                children.append((child, child_type))
            else:
                log.debug("gc: %s refers to %r, not a sha256 digest", digest, child)
        return children


def _child(item: object) -> tuple[str, str]:
    """A digest, a (digest, media type) pair, or a descriptor-like object."""
    if isinstance(item, str):
        return item, ""
    if isinstance(item, tuple) and len(item) == 2:
        return str(item[0]), str(item[1] or "")
    digest, media_type = getattr(item, "digest", ""), getattr(item, "media_type", "")
    return str(digest), str(media_type or "")


def _walk_snapshots(snapshots: Snapshots) -> dict[str, str | None]:
    parents: dict[str, str | None] = {}
    for item in snapshots.walk():
        if isinstance(item, tuple) and len(item) == 2:
            key, parent = item
        else:
            key, parent = item.key, item.parent
        parents[key] = parent or None
    return parents


def _with_ancestors(keys: Iterable[str], parents: Mapping[str, str | None]) -> set[str]:
    marked: set[str] = set()
    for key in keys:
        current: str | None = key
        while current is not None and current not in marked:
            marked.add(current)
            current = parents.get(current)
    return marked


def _depth(key: str, parents: Mapping[str, str | None]) -> int:
    depth, seen = 0, {key}
    parent = parents.get(key)
    while parent is not None and parent not in seen:
        seen.add(parent)
        depth += 1
        parent = parents.get(parent)
    return depth


def collect(
    db: MetadataDB,
    content: Collectable,
    *,
    references: References,
    snapshots: Snapshots | None = None,
    snapshot_roots_of: SnapshotRootsOf | None = None,
    dry_run: bool = False,
    ingest_max_age: timedelta = timedelta(hours=24),
) -> GCResult:
    """Remove every blob, snapshot and old ingest that no root reaches.

    With ``dry_run`` nothing changes and the result says what would have gone. Example::

        result = collect(db, content, references=referenced_digests,
                         snapshots=snapshotter, snapshot_roots_of=chain_ids_of_image)
        result.removed_blobs        # ("sha256:...", ...)
        result.bytes_freed          # 52428800
    """
    if snapshots is not None and snapshot_roots_of is None:
        # Without it every image's unpacked layers would look unreferenced.
        raise InvalidArgument("gc: collecting snapshots needs snapshot_roots_of")
    with content.gc_lock():
        with content.commit_fence():
            stamps = content.stamps()
        listed = _walk_snapshots(snapshots) if snapshots is not None else {}

        roots = _read_roots(db, datetime.now(UTC))
        marker = _Marker(content, references)
        marker.mark(roots.content.items(), roots.label_edges)
        snapshot_roots = set(roots.snapshots)
        snapshot_sweep = snapshots is not None
        image_keys = {(i.name, i.digest) for i in roots.images}
        if snapshot_roots_of is not None:
            snapshot_sweep = _add_image_snapshots(
                snapshot_roots, roots.images, snapshot_roots_of, content
            )

        with content.commit_fence():
            now = datetime.now(UTC)
            again = _read_roots(db, now)
            marker.mark(again.content.items(), again.label_edges)
            unmarked = [s for d, s in stamps.items() if d not in marker.marked]
            removed = content.delete_unchanged(unmarked, dry_run=dry_run)

            removed_snapshots: list[str] = []
            if snapshots is not None and snapshot_sweep:
                assert snapshot_roots_of is not None
                snapshot_roots |= again.snapshots
                new_images = [i for i in again.images if (i.name, i.digest) not in image_keys]
                if _add_image_snapshots(snapshot_roots, new_images, snapshot_roots_of, content):
                    removed_snapshots = _sweep_snapshots(snapshots, listed, snapshot_roots, dry_run)

        pruned = content.prune_ingests(
            now - ingest_max_age, roots.ingests | again.ingests, dry_run=dry_run
        )
        if not dry_run:
            expired = db.delete_expired_leases(now)
            if expired:
                log.info("gc: deleted %d expired leases", len(expired))

    result = GCResult(
        removed_blobs=tuple(sorted(s.digest for s in removed)),
        removed_snapshots=tuple(removed_snapshots),
        removed_ingests=tuple(sorted(i.ref for i in pruned)),
        bytes_freed=sum(s.size for s in removed) + sum(i.offset for i in pruned),
    )
    log.info(
        "gc%s: %d blobs, %d snapshots, %d ingests, %d bytes",
        " (dry run)" if dry_run else "",
        len(result.removed_blobs),
        len(result.removed_snapshots),
        len(result.removed_ingests),
        result.bytes_freed,
    )
    return result


def _add_image_snapshots(
    into: set[str],
    images: Iterable[ImageRecord],
    snapshot_roots_of: SnapshotRootsOf,
    content: Collectable,
) -> bool:
    """Add each image's snapshot roots to ``into``; False if one could not be computed.

    Then no snapshot is removed this time: a missing root would lose a live snapshot.
    """
    for image in images:
        try:
            into.update(snapshot_roots_of(image, content.read_blob))
        except MoorageError as exc:
            log.warning("gc: skipping snapshots, no roots for image %s: %s", image.name, exc)
            return False
    return True


def _sweep_snapshots(
    snapshots: Snapshots,
    listed: Mapping[str, str | None],
    roots: set[str],
    dry_run: bool,
) -> list[str]:
    current = _walk_snapshots(snapshots)
    parents = {**listed, **current}
    # A snapshot made after the listing is in use by whoever made it, and so is its chain.
    keep = _with_ancestors(roots | (current.keys() - listed.keys()), parents)
    doomed = [k for k in listed if k in current and k not in keep]
    doomed.sort(key=lambda k: _depth(k, parents), reverse=True)
    removed: list[str] = []
    for key in doomed:
        if not dry_run:
            try:
                snapshots.remove(key)
            except MoorageError as exc:
                log.warning("gc: cannot remove snapshot %s: %s", key, exc)
                continue
        removed.append(key)
    return removed
