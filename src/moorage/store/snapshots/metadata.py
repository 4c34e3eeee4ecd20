"""Snapshot metadata in SQLite: which key is which directory id, its kind, parent and labels.

One table, ``snapshots``, in ``<root>/snapshots/metadata.db`` (WAL, full sync). A row's
``id`` (AUTOINCREMENT: sequential and never reused, so a crashed snapshot's directory
can never be mistaken for a new one) names the directory ``<root>/snapshots/<id>``.

A new snapshot is written in three steps: :meth:`MetaStore.reserve` inserts the row
with ``ready = 0`` (which also claims the key), the caller makes the directory, and
:meth:`MetaStore.mark_ready` flips ``ready``. Readers only see ready rows, so a crash at
any point leaves either an invisible pending row or a directory without a row; the
snapshotter's cleanup removes both.

Every method runs in one transaction (``BEGIN IMMEDIATE``: the write lock is taken up
front, so concurrent writers in other processes wait instead of failing mid-way) and is
safe to call from several threads.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import NamedTuple, cast

from moorage.errors import AlreadyExists, Conflict, FailedPrecondition, NotFound

__all__ = ["MetaStore", "Row", "recorded_driver"]

_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('active', 'committed', 'view')),
    parent INTEGER REFERENCES snapshots (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    size INTEGER,
    inodes INTEGER,
    ready INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots (parent);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_SELECT = """
SELECT s.id, s.key, s.kind, s.parent, p.key, s.created_at, s.updated_at, s.labels,
       s.size, s.inodes, s.ready
FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent
"""

# Ancestors of a snapshot, nearest first (depth 1 = the parent).
_CHAIN = """
WITH RECURSIVE chain (id, parent, depth) AS (
    SELECT id, parent, 0 FROM snapshots WHERE id = ?
    UNION ALL
    SELECT s.id, s.parent, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent
)
SELECT id FROM chain WHERE depth > 0 ORDER BY depth
"""


def recorded_driver(path: str) -> str | None:
    """The snapshotter that owns the database at ``path``; None if there is none yet."""
    if not os.path.exists(path):
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        raw = db.execute("SELECT value FROM settings WHERE name = 'driver'").fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return None if raw is None else str(raw[0])


class Row(NamedTuple):
    """One snapshot's metadata. Times are nanoseconds since the epoch; ``size`` and
    ``inodes`` are measured at commit (None before)."""

    id: int
    key: str
    kind: str
    parent_id: int | None
    parent_key: str | None
    created_at: int
    updated_at: int
    labels: dict[str, str]
    size: int | None
    inodes: int | None
    ready: bool


def _row(raw: tuple[object, ...]) -> Row:
    (id_, key, kind, parent_id, parent_key, created, updated, labels, size, inodes, ready) = raw
    return Row(
        id=cast(int, id_),
        key=cast(str, key),
        kind=cast(str, kind),
        parent_id=cast("int | None", parent_id),
        parent_key=cast("str | None", parent_key),
        created_at=cast(int, created),
        updated_at=cast(int, updated),
        labels=cast("dict[str, str]", json.loads(cast(str, labels))),
        size=cast("int | None", size),
        inodes=cast("int | None", inodes),
        ready=bool(ready),
    )


class MetaStore:
    """The ``snapshots`` table; see the module docstring for the protocol."""

    def __init__(self, path: str, driver: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            with self._tx() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > _SCHEMA_VERSION:
                    raise FailedPrecondition(
                        f"{path}: schema version {version} is newer than this moorage"
                    )
                # executescript would COMMIT first; run the statements in this transaction.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
                # The snapshotters lay out files differently: one root, one driver.
                db.execute(
                    "INSERT OR IGNORE INTO settings (name, value) VALUES ('driver', ?)", (driver,)
                )
                (recorded,) = db.execute(
                    "SELECT value FROM settings WHERE name = 'driver'"
                ).fetchone()
                if recorded != driver:
                    raise FailedPrecondition(
                        f"{path}: snapshots were made by the {recorded} snapshotter, not {driver}"
                    )
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @staticmethod
    def _get(db: sqlite3.Connection, key: str, *, pending: bool = False) -> Row | None:
        where = "WHERE s.key = ?" if pending else "WHERE s.key = ? AND s.ready = 1"
        raw = db.execute(f"{_SELECT} {where}", (key,)).fetchone()
        return None if raw is None else _row(raw)

    @staticmethod
    def _must_get(db: sqlite3.Connection, key: str) -> Row:
        row = MetaStore._get(db, key)
        if row is None:
            raise NotFound(f"no such snapshot: {key}")
        return row

    @staticmethod
    def _chain(db: sqlite3.Connection, id_: int) -> list[int]:
        return [r[0] for r in db.execute(_CHAIN, (id_,))]

    def reserve(
        self, key: str, kind: str, parent: str | None, labels: Mapping[str, str], now: int
    ) -> tuple[Row, list[int]]:
        """Insert a pending row for ``key``; return it and its ancestors' ids, nearest
        first. The parent must be a committed snapshot."""
        with self._tx() as db:
            if self._get(db, key, pending=True) is not None:
                raise AlreadyExists(f"snapshot already exists: {key}")
            parent_id: int | None = None
            chain: list[int] = []
            if parent is not None:
                prow = self._get(db, parent)
                if prow is None:
                    raise NotFound(f"no such parent snapshot: {parent}")
                if prow.kind != "committed":
                    raise Conflict(f"parent snapshot {parent} is {prow.kind}, not committed")
                parent_id = prow.id
                chain = [prow.id, *self._chain(db, prow.id)]
            cur = db.execute(
                "INSERT INTO snapshots (key, kind, parent, created_at, updated_at, labels)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, kind, parent_id, now, now, json.dumps(dict(labels), sort_keys=True)),
            )
            id_ = cast(int, cur.lastrowid)
            row = self._get(db, key, pending=True)
        assert row is not None
        assert row.id == id_
        return row, chain

    def mark_ready(self, id_: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE snapshots SET ready = 1 WHERE id = ?", (id_,))

    def drop(self, id_: int) -> None:
        """Delete a pending row (a prepare that failed)."""
        with self._tx() as db:
            db.execute("DELETE FROM snapshots WHERE id = ? AND ready = 0", (id_,))

    def get(self, key: str) -> Row:
        with self._lock:
            return self._must_get(self._db, key)

    def get_with_chain(self, key: str) -> tuple[Row, list[int]]:
        """Snapshot ``key`` and its ancestors' ids, nearest first, read consistently."""
        with self._tx() as db:
            row = self._must_get(db, key)
            return row, self._chain(db, row.id)

    def rows(self) -> list[Row]:
        """Every ready row, by id: parents come before their children."""
        with self._lock:
            return [_row(r) for r in self._db.execute(f"{_SELECT} WHERE s.ready = 1 ORDER BY s.id")]

    def commit(
        self,
        key: str,
        name: str,
        labels: Mapping[str, str] | None,
        usage: tuple[int, int],
        now: int,
    ) -> Row:
        with self._tx() as db:
            row = self._must_get(db, key)
            if row.kind != "active":
                raise Conflict(f"snapshot {key} is {row.kind}, not active")
            if self._get(db, name, pending=True) is not None:
                raise AlreadyExists(f"snapshot already exists: {name}")
            new_labels = row.labels if labels is None else dict(labels)
            db.execute(
                "UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, size = ?,"
                " inodes = ?, updated_at = ? WHERE id = ?",
                (name, json.dumps(new_labels, sort_keys=True), *usage, now, row.id),
            )
            return self._must_get(db, name)

    def remove(self, key: str) -> Row:
        """Delete snapshot ``key``'s row; it must have no children, not even pending ones."""
        with self._tx() as db:
            row = self._must_get(db, key)
            children = [
                r[0]
                for r in db.execute(
                    "SELECT key FROM snapshots WHERE parent = ? ORDER BY id LIMIT 4", (row.id,)
                )
            ]
            if children:
                raise FailedPrecondition(f"snapshot {key} has children: {', '.join(children)}")
            db.execute("DELETE FROM snapshots WHERE id = ?", (row.id,))
            return row

    def update_labels(self, key: str, labels: Mapping[str, str], now: int) -> Row:
        with self._tx() as db:
            row = self._must_get(db, key)
            db.execute(
                "UPDATE snapshots SET labels = ?, updated_at = ? WHERE id = ?",
                (json.dumps(dict(labels), sort_keys=True), now, row.id),
            )
            return self._must_get(db, key)

    def all_ids(self) -> set[int]:
        """The ids of every row, pending ones included."""
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM snapshots")}

    def drop_pending(self, keep: set[int]) -> list[int]:
        """Delete every pending row except those in ``keep``; return the deleted ids."""
        with self._tx() as db:
            ids = [
                r[0]
                for r in db.execute("SELECT id FROM snapshots WHERE ready = 0 ORDER BY id")
                if r[0] not in keep
            ]
            db.executemany("DELETE FROM snapshots WHERE id = ?", [(i,) for i in ids])
            return ids
