"""Leases: short-lived GC roots that protect what an operation is still putting together.

A pull writes blobs one by one and only at the end records the image that makes them
reachable; in between, the blobs are protected by a lease. This module is the facade
over the lease tables of :mod:`moorage.store.metadata` that such code uses::

    leases = Leases(db)
    with leases.lease() as lease:                       # deleted again on exit
        leases.add_resource(lease, "content", manifest_digest)   # before writing it
        content.write_blob(raw_manifest, expected=manifest_digest)
        ...
        db.put_image(record)                            # now the image keeps them
    # the lease is gone; anything no image reaches is garbage again

Add a resource before the write or the ``exists()`` check that relies on it, so that a
collection running meanwhile sees it (see :mod:`moorage.store.gc`). The lease has a
time to live so that a process killed mid-pull does not pin its blobs for ever.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from datetime import timedelta

from moorage.errors import NotFound
from moorage.store.metadata import LeaseRecord, LeaseResource, MetadataDB

__all__ = ["DEFAULT_LEASE_TTL", "Leases"]

log = logging.getLogger(__name__)

# Long enough for a slow pull of a large image; a crashed one is collectable after it.
DEFAULT_LEASE_TTL = timedelta(hours=24)


def _lease_id(lease: LeaseRecord | str) -> str:
    return lease.id if isinstance(lease, LeaseRecord) else lease


class Leases:
    """Create, fill and drop leases in ``db``; a lease is named by its record or its id."""

    def __init__(self, db: MetadataDB) -> None:
        self.db = db

    def create(
        self,
        *,
        ttl: timedelta | None = DEFAULT_LEASE_TTL,
        labels: Mapping[str, str] | None = None,
        lease_id: str | None = None,
    ) -> LeaseRecord:
        """A new lease that expires after ``ttl`` (never, when None)."""
        return self.db.create_lease(lease_id, ttl, labels)

    def add_resource(self, lease: LeaseRecord | str, kind: str, key: str) -> None:
        """Protect ``kind`` ("content", "ingest" or "snapshot") ``key`` while the lease lives."""
        self.db.add_lease_resource(_lease_id(lease), kind, key)

    def remove_resource(self, lease: LeaseRecord | str, kind: str, key: str) -> None:
        self.db.remove_lease_resource(_lease_id(lease), kind, key)

    def resources(self, lease: LeaseRecord | str) -> list[LeaseResource]:
        return self.db.lease_resources(_lease_id(lease))

    def delete(self, lease: LeaseRecord | str) -> None:
        self.db.delete_lease(_lease_id(lease))

    def list_leases(self) -> list[LeaseRecord]:
        return self.db.list_leases()

    @contextlib.contextmanager
    def lease(
        self,
        *,
        ttl: timedelta | None = DEFAULT_LEASE_TTL,
        labels: Mapping[str, str] | None = None,
    ) -> Iterator[LeaseRecord]:
        """A new lease for the ``with`` block, deleted when it ends (error or not)."""
        record = self.create(ttl=ttl, labels=labels)
        try:
            yield record
        finally:
            try:
                self.delete(record)
            except NotFound:
                log.debug("lease %s was deleted before its block ended", record.id)
