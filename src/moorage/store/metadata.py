"""The store's metadata database: one SQLite file, ``<root>/metadata.db``.

This module owns that file's schema, its migrations, and the records the store keeps in
it: images (name -> target descriptor), labels on content blobs, leases and the resources
they protect, and the extra garbage-collection roots other subsystems register (a
container's snapshot, the build cache's blobs). Blobs and snapshots themselves live on
disk; only their names appear here.

Several processes may open the database at once (the daemon, a ``moor`` command, a test):
it runs in WAL mode, so readers never block on a writer, every connection waits up to
``busy_timeout`` for the write lock instead of failing, and writes go through
``BEGIN IMMEDIATE`` so that two writers queue on the lock up front rather than deadlock
on an upgrade. Each thread gets its own connection (SQLite connections are not for
sharing), and a forked child never reuses its parent's.

Grouping writes::

    db = MetadataDB("/var/lib/moorage/metadata.db")
    with db.transaction():              # BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error
        db.put_image(record)
        db.delete_lease(lease_id)       # joins the open transaction

Reading a consistent view of several tables (what the garbage collector does)::

    with db.read_transaction():         # BEGIN (deferred): one WAL snapshot
        images = db.list_images()
        roots = db.list_roots()

Timestamps are timezone-aware UTC datetimes in the records and fixed-width ISO 8601
strings in the database, so SQL compares them as text. Labels are JSON objects of
strings. The schema version is the single row of ``schema_version``; ``_MIGRATIONS[n]``
takes a database from version ``n`` to ``n + 1``, so a new release only appends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import NamedTuple

from moorage.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    MoorageError,
    NotFound,
    Unavailable,
)
from moorage.store.sqlite import INHERITED_CONNECTIONS, migrate

__all__ = [
    "BUSY_TIMEOUT_MS",
    "RESOURCE_KINDS",
    "SCHEMA_VERSION",
    "GCRoot",
    "ImageRecord",
    "LeaseRecord",
    "LeaseResource",
    "MetadataDB",
]

# A writer waits this long for another process's write transaction before giving up.
BUSY_TIMEOUT_MS = 10_000

# What a lease or a GC root can hold on to.
RESOURCE_KINDS = ("content", "ingest", "snapshot")

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_NO_LABELS: Mapping[str, str] = MappingProxyType({})


# --------------------------------------------------------------------------- records


class ImageRecord(NamedTuple):
    """An image name and the descriptor it points at (a manifest or an index)."""

    name: str
    media_type: str
    digest: str
    size: int
    created_at: datetime
    updated_at: datetime
    labels: Mapping[str, str] = _NO_LABELS


class LeaseRecord(NamedTuple):
    """A lease: while it exists and has not expired, its resources are GC roots."""

    id: str
    created_at: datetime
    expires_at: datetime | None = None
    labels: Mapping[str, str] = _NO_LABELS


class LeaseResource(NamedTuple):
    lease_id: str
    kind: str  # one of RESOURCE_KINDS
    key: str  # a digest for content, a ref for an ingest, a key for a snapshot


class GCRoot(NamedTuple):
    """A root registered by another subsystem; ``owner`` says who removes it."""

    kind: str  # one of RESOURCE_KINDS
    key: str
    owner: str


# --------------------------------------------------------------------------- schema

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 0 -> 1: images, content labels, leases, gc roots
    (
        """CREATE TABLE images (
            name TEXT PRIMARY KEY,
            media_type TEXT NOT NULL,
            digest TEXT NOT NULL,
            size INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX images_by_digest ON images(digest)",
        """CREATE TABLE content_labels (
            digest TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (digest, key)
        )""",
        """CREATE TABLE leases (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            expires_at TEXT NULL,
            labels TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE lease_resources (
            lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('content', 'ingest', 'snapshot')),
            key TEXT NOT NULL,
            PRIMARY KEY (lease_id, kind, key)
        )""",
        """CREATE TABLE gc_roots (
            kind TEXT NOT NULL CHECK (kind IN ('content', 'ingest', 'snapshot')),
            key TEXT NOT NULL,
            owner TEXT NOT NULL,
            PRIMARY KEY (kind, key, owner)
        )""",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)


# --------------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(when: datetime) -> str:
    if when.tzinfo is None:
        raise InvalidArgument(f"timestamp must be timezone-aware: {when.isoformat()}")
    # Fixed width (microseconds, +00:00) so that text order is time order in SQL.
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _labels_json(labels: Mapping[str, str], what: str) -> str:
    for key, value in labels.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise InvalidArgument(f"{what}: labels must map non-empty strings to strings")
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def _labels(text: str) -> dict[str, str]:
    value = json.loads(text)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _check_digest(digest: str, what: str) -> None:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidArgument(f"{what}: invalid digest: {digest!r}")


def _check_kind(kind: str) -> None:
    if kind not in RESOURCE_KINDS:
        raise InvalidArgument(f"unknown resource kind: {kind!r} (want one of {RESOURCE_KINDS})")


def _image(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(
        name=row["name"],
        media_type=row["media_type"],
        digest=row["digest"],
        size=row["size"],
        created_at=_parse_ts(row["created_at"]),
        updated_at=_parse_ts(row["updated_at"]),
        labels=_labels(row["labels"]),
    )


def _lease(row: sqlite3.Row) -> LeaseRecord:
    expires = row["expires_at"]
    return LeaseRecord(
        id=row["id"],
        created_at=_parse_ts(row["created_at"]),
        expires_at=_parse_ts(expires) if expires is not None else None,
        labels=_labels(row["labels"]),
    )


# Connections open at once, at most: a thread that finds them all leased waits for one
# (up to the busy timeout). Bounded because each holds descriptors for good (below).
MAX_CONNECTIONS = 8


class _ThreadState(threading.local):
    conn: sqlite3.Connection | None = None  # leased from the pool while depth > 0
    depth: int = 0  # nested leases (a method called inside a transaction joins it)
    pid: int = 0
    mode: str | None = None  # None, "read" or "write": the open transaction, if any


# --------------------------------------------------------------------------- database


class MetadataDB:
    """The metadata database at ``path``; created and migrated on first open.

    Every method is its own transaction unless called inside :meth:`transaction` or
    :meth:`read_transaction`, which it then joins. Example::

        db = MetadataDB(root / "metadata.db")
        now = datetime.now(UTC)
        db.put_image(ImageRecord("docker.io/library/busybox:latest",
                                 "application/vnd.oci.image.index.v1+json",
                                 "sha256:9ae9...", 2295, now, now))
        db.get_image("docker.io/library/busybox:latest").size   # 2295
        lease = db.create_lease(ttl=timedelta(hours=1))
        db.add_lease_resource(lease.id, "content", "sha256:9ae9...")
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._state = _ThreadState()
        self._lock = threading.Lock()
        # Connections are leased per transaction (or per statement outside one), not
        # kept per thread: a daemon runs many short-lived threads. And they are kept
        # open, at most MAX_CONNECTIONS: SQLite may only close a connection's database
        # descriptor once no other connection in the process holds a lock, which in
        # WAL mode is never, so each connection closed would leave one behind.
        self._available = threading.Condition(self._lock)
        self._idle: list[sqlite3.Connection] = []
        self._open_count = 0  # this process's connections, leased or idle
        self._owner = os.getpid()  # whose they are: a forked child starts afresh
        self._generation = 0  # close() bumps it: older leased connections are closed
        with self._lease() as conn:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
        if str(mode).lower() != "wal":
            raise FailedPrecondition(f"metadata database {self.path}: cannot use WAL ({mode})")
        self._migrate()

    # ----------------------------------------------------------------- connections

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # leased to one thread at a time
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            # FULL: a committed transaction survives power loss, as blobs do.
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        return conn

    def _checkout(self) -> tuple[sqlite3.Connection, int]:
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        with self._available:
            if self._owner != os.getpid():
                # Forked: the parent's connections are never used (or closed) by the
                # child, as SQLite's locks and the WAL belong to the parent.
                INHERITED_CONNECTIONS.extend(self._idle)
                self._idle, self._open_count, self._owner = [], 0, os.getpid()
            while True:
                generation = self._generation
                if self._idle:
                    return self._idle.pop(), generation
                if self._open_count < MAX_CONNECTIONS:
                    self._open_count += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0 or not self._available.wait(left):
                    raise Unavailable(
                        f"metadata database is busy: {self.path} "
                        f"(all {MAX_CONNECTIONS} connections in use)"
                    )
        try:
            return self._open(), generation
        except BaseException:
            self._forget_one()
            raise

    def _forget_one(self) -> None:
        with self._available:
            if self._owner == os.getpid():
                self._open_count -= 1
                self._available.notify()

    def _checkin(self, conn: sqlite3.Connection, generation: int) -> None:
        if conn.in_transaction:  # never hand on an open transaction
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        with self._available:
            if generation == self._generation and self._owner == os.getpid():
                self._idle.append(conn)
                self._available.notify()
                return
        self._forget_one()
        conn.close()

    @contextlib.contextmanager
    def _lease(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection for the block: the one it already leased (nested
        calls join the outer transaction) or one from the pool."""
        state = self._state
        pid = os.getpid()
        if state.depth and state.pid == pid and state.conn is not None:
            state.depth += 1
            try:
                yield state.conn
            finally:
                state.depth -= 1
            return
        conn, generation = self._checkout()
        state.conn, state.depth, state.pid, state.mode = conn, 1, pid, None
        try:
            yield conn
        finally:
            state.conn, state.depth, state.mode = None, 0, None
            self._checkin(conn, generation)

    def close(self) -> None:
        """Close every idle connection; those in use are closed when given back. The
        object may be used again."""
        with self._available:
            self._generation += 1
            idle, self._idle = self._idle, []
            mine = self._owner == os.getpid()
            if mine:
                self._open_count -= len(idle)
                self._available.notify_all()
        for conn in idle:
            if mine:
                conn.close()
            else:
                INHERITED_CONNECTIONS.append(conn)

    def __enter__(self) -> MetadataDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _translate(self, exc: sqlite3.Error) -> MoorageError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return Unavailable(f"metadata database is busy: {self.path}")
        return FailedPrecondition(f"metadata database {self.path}: {text}")

    # ----------------------------------------------------------------- transactions

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction (BEGIN IMMEDIATE): commit on success, roll back on error.

        Nested calls join the outer transaction. Do not hold one while waiting for
        something another process needs in order to commit (a flock, a child's reply).
        """
        state = self._state
        with self._lease() as conn:
            if state.mode == "write":
                yield
                return
            if state.mode == "read":
                raise FailedPrecondition("metadata: a write cannot start inside a read transaction")
            yield from self._run(conn, "BEGIN IMMEDIATE", "write")

    @contextlib.contextmanager
    def read_transaction(self) -> Iterator[None]:
        """A read-only transaction: every read inside sees one consistent snapshot."""
        state = self._state
        with self._lease() as conn:
            if state.mode is not None:
                yield
                return
            yield from self._run(conn, "BEGIN DEFERRED", "read")

    def _run(self, conn: sqlite3.Connection, begin: str, mode: str) -> Iterator[None]:
        state = self._state
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        state.mode = mode
        try:
            yield
        except BaseException:
            state.mode = None
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        state.mode = None
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._translate(exc) from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self.transaction(), self._lease() as conn:
            try:
                yield conn
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lease() as conn:
            try:
                yield conn
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def _migrate(self) -> None:
        with self._write() as conn:
            migrate(conn, _MIGRATIONS, f"metadata database {self.path}")

    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])

    def integrity_check(self) -> list[str]:
        """SQLite's own consistency check: ``[]`` when the file is sound, else the problems."""
        with self._read() as conn:
            rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else rows

    # ----------------------------------------------------------------- images

    def put_image(self, rec: ImageRecord) -> ImageRecord:
        """Create or replace the image ``rec.name``; an update keeps the first created_at.

        Returns the record as stored.
        """
        if not isinstance(rec.name, str) or not rec.name:
            raise InvalidArgument(f"image name must be a non-empty string: {rec.name!r}")
        _check_digest(rec.digest, f"image {rec.name}")
        if not isinstance(rec.size, int) or rec.size < 0:
            raise InvalidArgument(f"image {rec.name}: invalid size: {rec.size!r}")
        labels = _labels_json(rec.labels, f"image {rec.name}")
        with self._write() as conn:
            conn.execute(
                """INSERT INTO images (name, media_type, digest, size, created_at, updated_at,
                                       labels)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (name) DO UPDATE SET
                       media_type = excluded.media_type, digest = excluded.digest,
                       size = excluded.size, updated_at = excluded.updated_at,
                       labels = excluded.labels""",
                (
                    rec.name,
                    rec.media_type,
                    rec.digest,
                    rec.size,
                    _ts(rec.created_at),
                    _ts(rec.updated_at),
                    labels,
                ),
            )
            return self.get_image(rec.name)

    def get_image(self, name: str) -> ImageRecord:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM images WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no such image: {name}")
        return _image(row)

    def list_images(self) -> list[ImageRecord]:
        with self._read() as conn:
            return [_image(r) for r in conn.execute("SELECT * FROM images ORDER BY name")]

    def delete_image(self, name: str) -> None:
        with self._write() as conn:
            if conn.execute("DELETE FROM images WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"no such image: {name}")

    def images_by_digest(self, digest: str) -> list[ImageRecord]:
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM images WHERE digest = ? ORDER BY name", (digest,))
            return [_image(r) for r in rows]

    # ----------------------------------------------------------------- content labels

    def set_content_labels(self, digest: str, labels: Mapping[str, str]) -> None:
        """Replace every label of blob ``digest`` with ``labels``."""
        _check_digest(digest, "content labels")
        _labels_json(labels, digest)
        with self._write() as conn:
            conn.execute("DELETE FROM content_labels WHERE digest = ?", (digest,))
            conn.executemany(
                "INSERT INTO content_labels (digest, key, value) VALUES (?, ?, ?)",
                [(digest, k, v) for k, v in labels.items()],
            )

    def update_content_labels(self, digest: str, labels: Mapping[str, str]) -> None:
        """Set the given labels of blob ``digest``, leaving its other labels as they are."""
        _check_digest(digest, "content labels")
        _labels_json(labels, digest)
        with self._write() as conn:
            conn.executemany(
                """INSERT INTO content_labels (digest, key, value) VALUES (?, ?, ?)
                   ON CONFLICT (digest, key) DO UPDATE SET value = excluded.value""",
                [(digest, k, v) for k, v in labels.items()],
            )

    def content_labels(self, digest: str) -> dict[str, str]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT key, value FROM content_labels WHERE digest = ? ORDER BY key", (digest,)
            )
            return {r["key"]: r["value"] for r in rows}

    def all_content_labels(self) -> dict[str, dict[str, str]]:
        """Every blob's labels, by digest (blobs without labels are absent)."""
        result: dict[str, dict[str, str]] = {}
        with self._read() as conn:
            for r in conn.execute("SELECT digest, key, value FROM content_labels"):
                result.setdefault(r["digest"], {})[r["key"]] = r["value"]
        return result

    def content_label_refs(self, prefix: str) -> list[tuple[str, str]]:
        """``(digest, value)`` of every content label whose key starts with ``prefix``."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT digest, value FROM content_labels WHERE substr(key, 1, ?) = ?",
                (len(prefix), prefix),
            )
            return [(r["digest"], r["value"]) for r in rows]

    def delete_content_labels(self, digests: Iterable[str]) -> None:
        with self._write() as conn:
            conn.executemany("DELETE FROM content_labels WHERE digest = ?", [(d,) for d in digests])

    # ----------------------------------------------------------------- leases

    def create_lease(
        self,
        id: str | None = None,
        ttl: timedelta | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> LeaseRecord:
        """A new lease; it expires ``ttl`` from now (never when ``ttl`` is None)."""
        lease_id = id if id is not None else secrets.token_hex(16)
        if not isinstance(lease_id, str) or not lease_id:
            raise InvalidArgument(f"lease id must be a non-empty string: {lease_id!r}")
        if ttl is not None and ttl <= timedelta(0):
            raise InvalidArgument(f"lease {lease_id}: ttl must be positive: {ttl}")
        now = _now()
        record = LeaseRecord(lease_id, now, now + ttl if ttl is not None else None, labels or {})
        text = _labels_json(record.labels, f"lease {lease_id}")
        with self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO leases (id, created_at, expires_at, labels) VALUES (?, ?, ?, ?)",
                    (
                        lease_id,
                        _ts(now),
                        _ts(record.expires_at) if record.expires_at else None,
                        text,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"lease already exists: {lease_id}") from exc
        return record

    def get_lease(self, lease_id: str) -> LeaseRecord:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM leases WHERE id = ?", (lease_id,)).fetchone()
        if row is None:
            raise NotFound(f"no such lease: {lease_id}")
        return _lease(row)

    def list_leases(self) -> list[LeaseRecord]:
        with self._read() as conn:
            return [_lease(r) for r in conn.execute("SELECT * FROM leases ORDER BY created_at")]

    def delete_lease(self, lease_id: str) -> None:
        """Delete the lease and (by cascade) its resources."""
        with self._write() as conn:
            if conn.execute("DELETE FROM leases WHERE id = ?", (lease_id,)).rowcount == 0:
                raise NotFound(f"no such lease: {lease_id}")

    def delete_expired_leases(self, now: datetime | None = None) -> list[str]:
        """Delete the leases that expired at ``now``; returns their ids."""
        cutoff = _ts(now or _now())
        with self._write() as conn:
            rows = conn.execute(
                "DELETE FROM leases WHERE expires_at IS NOT NULL AND expires_at <= ? RETURNING id",
                (cutoff,),
            )
            return sorted(r["id"] for r in rows)

    def add_lease_resource(self, lease_id: str, kind: str, key: str) -> None:
        """Protect resource ``kind``/``key`` for as long as the lease lives (idempotent)."""
        _check_kind(kind)
        if kind == "content":
            _check_digest(key, f"lease {lease_id}")
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease_id,)).fetchone() is None:
                raise NotFound(f"no such lease: {lease_id}")
            conn.execute(
                "INSERT OR IGNORE INTO lease_resources (lease_id, kind, key) VALUES (?, ?, ?)",
                (lease_id, kind, key),
            )

    def remove_lease_resource(self, lease_id: str, kind: str, key: str) -> None:
        with self._write() as conn:
            conn.execute(
                "DELETE FROM lease_resources WHERE lease_id = ? AND kind = ? AND key = ?",
                (lease_id, kind, key),
            )

    def lease_resources(self, lease_id: str) -> list[LeaseResource]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM lease_resources WHERE lease_id = ? ORDER BY kind, key",
                (lease_id,),
            )
            return [LeaseResource(r["lease_id"], r["kind"], r["key"]) for r in rows]

    def live_lease_resources(self, now: datetime | None = None) -> list[LeaseResource]:
        """The resources of every lease that has not expired at ``now``."""
        with self._read() as conn:
            rows = conn.execute(
                """SELECT r.lease_id, r.kind, r.key FROM lease_resources r
                   JOIN leases l ON l.id = r.lease_id
                   WHERE l.expires_at IS NULL OR l.expires_at > ?
                   ORDER BY r.lease_id, r.kind, r.key""",
                (_ts(now or _now()),),
            )
            return [LeaseResource(r["lease_id"], r["kind"], r["key"]) for r in rows]

    # ----------------------------------------------------------------- gc roots

    def add_root(self, kind: str, key: str, owner: str) -> None:
        """Register ``kind``/``key`` as a GC root held by ``owner`` (idempotent)."""
        _check_kind(kind)
        if not owner:
            raise InvalidArgument(f"gc root {kind}/{key}: owner must not be empty")
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO gc_roots (kind, key, owner) VALUES (?, ?, ?)",
                (kind, key, owner),
            )

    def remove_root(self, kind: str, key: str, owner: str) -> bool:
        """Drop ``owner``'s hold on ``kind``/``key``; False if it held none."""
        with self._write() as conn:
            cur = conn.execute(
                "DELETE FROM gc_roots WHERE kind = ? AND key = ? AND owner = ?", (kind, key, owner)
            )
            return cur.rowcount > 0

    def list_roots(self, kind: str | None = None, owner: str | None = None) -> list[GCRoot]:
        with self._read() as conn:
            rows = conn.execute(
                """SELECT kind, key, owner FROM gc_roots
                   WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR owner = ?2)
                   ORDER BY kind, key, owner""",
                (kind, owner),
            )
            return [GCRoot(r["kind"], r["key"], r["owner"]) for r in rows]
