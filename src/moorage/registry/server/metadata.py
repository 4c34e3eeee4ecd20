"""The registry's names: one SQLite file, ``<root>/registry.db``, in WAL mode.

Blob bytes live in the content store; this file holds everything a repository *is*::

    repositories  name                                      created on first push
    manifests     (repo, digest) -> media type, size, subject, artifactType, annotations
    tags          (repo, tag) -> digest                     cascades from manifests
    blobs         (repo, digest), linked_at                 a blob is visible in a repo
                                                            only once pushed or mounted there
    uploads       id -> repo, started_at                    open upload sessions

Reads are point lookups on primary keys (microseconds), so the server makes them on
its event loop; writes go through ``BEGIN IMMEDIATE`` in a worker thread, since a
commit waits for an fsync. Several processes may use the file at once (the server and
``moor registry gc``): WAL keeps readers off the writers' lock and every connection
waits for the write lock instead of failing. Each thread has its own connection.

Tags are sorted as bytes (SQLite's BINARY collation, Go's ``sort.Strings``), which
the spec allows and which makes ``last`` a plain index seek.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson

from moorage.errors import FailedPrecondition, MoorageError, Unavailable
from moorage.store.sqlite import ThreadConnection, migrate

__all__ = ["ManifestRecord", "RegistryDB", "UploadRecord"]

_BUSY_TIMEOUT_MS = 10_000
_NO_ANNOTATIONS: Mapping[str, str] = MappingProxyType({})

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE repositories (
            name TEXT PRIMARY KEY,
            created_at TEXT NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE manifests (
            repo TEXT NOT NULL,
            digest TEXT NOT NULL,
            media_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            subject TEXT,
            artifact_type TEXT,
            annotations TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            PRIMARY KEY (repo, digest)
        ) WITHOUT ROWID""",
        "CREATE INDEX manifests_by_subject ON manifests(repo, subject) WHERE subject IS NOT NULL",
        "CREATE INDEX manifests_by_digest ON manifests(digest)",
        """CREATE TABLE tags (
            repo TEXT NOT NULL,
            tag TEXT NOT NULL,
            digest TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (repo, tag),
            FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
        ) WITHOUT ROWID""",
        "CREATE INDEX tags_by_digest ON tags(repo, digest)",
        """CREATE TABLE blobs (
            repo TEXT NOT NULL,
            digest TEXT NOT NULL,
            linked_at TEXT NOT NULL,
            PRIMARY KEY (repo, digest)
        ) WITHOUT ROWID""",
        "CREATE INDEX blobs_by_digest ON blobs(digest)",
        "CREATE INDEX blobs_by_time ON blobs(linked_at)",
        """CREATE TABLE uploads (
            id TEXT PRIMARY KEY,
            repo TEXT NOT NULL,
            started_at TEXT NOT NULL
        ) WITHOUT ROWID""",
    ),
)


class ManifestRecord(NamedTuple):
    digest: str
    media_type: str
    size: int
    subject: str | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = _NO_ANNOTATIONS


class UploadRecord(NamedTuple):
    id: str
    repo: str
    started_at: datetime


def _ts(when: datetime) -> str:
    # Fixed width, so that text order is time order in SQL.
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _now() -> str:
    return _ts(datetime.now(UTC))


class _Local(threading.local):
    owned: ThreadConnection | None = None


class RegistryDB:
    """The database at ``path``, created and migrated on first open. Thread-safe."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._local = _Local()
        self._lock = threading.Lock()
        self._conns: weakref.WeakSet[ThreadConnection] = weakref.WeakSet()
        with self._guard():
            conn = self._conn()
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise FailedPrecondition(f"registry database {self.path}: cannot use WAL ({mode})")
        with self._write() as conn:
            migrate(conn, _MIGRATIONS, f"registry database {self.path}")

    # ----------------------------------------------------------------- plumbing

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        if local.owned is not None and local.owned.pid == os.getpid():
            return local.owned.conn
        # A connection inherited through fork() belongs to the parent: open a new one.
        conn = sqlite3.connect(
            self.path,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        # FULL: a pushed manifest survives power loss, as its blobs do.
        conn.execute("PRAGMA synchronous = FULL")
        local.owned = ThreadConnection(conn)
        with self._lock:
            self._conns.add(local.owned)
        return conn

    def close(self) -> None:
        with self._lock:
            mine = [c for c in self._conns if c.pid == os.getpid()]
            self._conns = weakref.WeakSet()
        for owned in mine:
            owned.close()
        self._local = _Local()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: sqlite3.Error) -> MoorageError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return Unavailable(f"registry database is busy: {self.path}")
        return FailedPrecondition(f"registry database {self.path}: {text}")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._guard():
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # Rows are SQLite's, typed by the schema above.
    def _one(self, sql: str, args: tuple[object, ...]) -> tuple[Any, ...] | None:
        with self._guard():
            row: tuple[Any, ...] | None = self._conn().execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._guard():
            return list(self._conn().execute(sql, args).fetchall())

    # ----------------------------------------------------------------- repositories

    def repository_exists(self, repo: str) -> bool:
        return self._one("SELECT 1 FROM repositories WHERE name = ?", (repo,)) is not None

    def repositories(self, last: str = "", limit: int = -1) -> list[str]:
        """Repository names after ``last``, sorted, at most ``limit`` (-1: all)."""
        rows = self._all(
            "SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?", (last, limit)
        )
        return [str(r[0]) for r in rows]

    @staticmethod
    def _ensure_repository(conn: sqlite3.Connection, repo: str, now: str) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO repositories (name, created_at) VALUES (?, ?)", (repo, now)
        )

    # ----------------------------------------------------------------- manifests

    def manifest(self, repo: str, digest: str) -> tuple[str, int] | None:
        """``(media type, size)`` of the manifest ``digest`` in ``repo``, if it is there."""
        row = self._one(
            "SELECT media_type, size FROM manifests WHERE repo = ? AND digest = ?", (repo, digest)
        )
        return None if row is None else (str(row[0]), int(row[1]))

    def tagged(self, repo: str, tag: str) -> tuple[str, str, int] | None:
        """``(digest, media type, size)`` of the manifest ``tag`` points at."""
        row = self._one(
            """SELECT m.digest, m.media_type, m.size FROM tags t
               JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
               WHERE t.repo = ? AND t.tag = ?""",
            (repo, tag),
        )
        if row is None:
            return None
        return str(row[0]), str(row[1]), int(row[2])

    def missing_manifests(self, repo: str, digests: Iterable[str]) -> list[str]:
        return [d for d in digests if self.manifest(repo, d) is None]

    def put_manifest(self, repo: str, record: ManifestRecord, tag: str | None) -> None:
        """Record the manifest in ``repo`` (again: it keeps its first date) and point ``tag``."""
        now = _now()
        annotations = orjson.dumps(dict(record.annotations)).decode()
        with self._write() as conn:
            self._ensure_repository(conn, repo, now)
            conn.execute(
                """INSERT INTO manifests (repo, digest, media_type, size, subject, artifact_type,
                                          annotations, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (repo, digest) DO UPDATE SET
                       media_type = excluded.media_type, size = excluded.size,
                       subject = excluded.subject, artifact_type = excluded.artifact_type,
                       annotations = excluded.annotations""",
                (
                    repo,
                    record.digest,
                    record.media_type,
                    record.size,
                    record.subject,
                    record.artifact_type,
                    annotations,
                    now,
                ),
            )
            if tag is not None:
                conn.execute(
                    """INSERT INTO tags (repo, tag, digest, updated_at) VALUES (?, ?, ?, ?)
                       ON CONFLICT (repo, tag) DO UPDATE SET
                           digest = excluded.digest, updated_at = excluded.updated_at""",
                    (repo, tag, record.digest, now),
                )

    def delete_manifest(self, repo: str, digest: str) -> bool:
        """Remove the manifest from ``repo`` with every tag on it; False if it was not there."""
        with self._write() as conn:
            cur = conn.execute(
                "DELETE FROM manifests WHERE repo = ? AND digest = ?", (repo, digest)
            )
            return cur.rowcount > 0

    def delete_tag(self, repo: str, tag: str) -> bool:
        with self._write() as conn:
            cur = conn.execute("DELETE FROM tags WHERE repo = ? AND tag = ?", (repo, tag))
            return cur.rowcount > 0

    def tags(self, repo: str, last: str = "", limit: int = -1) -> list[str]:
        rows = self._all(
            "SELECT tag FROM tags WHERE repo = ? AND tag > ? ORDER BY tag LIMIT ?",
            (repo, last, limit),
        )
        return [str(r[0]) for r in rows]

    def referrers(self, repo: str, subject: str) -> list[ManifestRecord]:
        """The manifests in ``repo`` whose subject is ``subject``, oldest first."""
        rows = self._all(
            """SELECT digest, media_type, size, subject, artifact_type, annotations
               FROM manifests WHERE repo = ? AND subject = ?
               ORDER BY created_at, digest""",
            (repo, subject),
        )
        return [
            ManifestRecord(
                digest=str(r[0]),
                media_type=str(r[1]),
                size=int(r[2]),
                subject=str(r[3]),
                artifact_type=None if r[4] is None else str(r[4]),
                annotations=orjson.loads(r[5]) if r[5] not in (None, "{}") else _NO_ANNOTATIONS,
            )
            for r in rows
        ]

    # ----------------------------------------------------------------- blob links

    def has_blob(self, repo: str, digest: str) -> bool:
        return (
            self._one("SELECT 1 FROM blobs WHERE repo = ? AND digest = ?", (repo, digest))
            is not None
        )

    def missing_blobs(self, repo: str, digests: Iterable[str]) -> list[str]:
        return [d for d in digests if not self.has_blob(repo, d)]

    def link_blob(self, repo: str, digest: str, *, end_upload: str | None = None) -> None:
        """Make blob ``digest`` visible in ``repo`` (dated now), ending upload ``end_upload``."""
        now = _now()
        with self._write() as conn:
            self._ensure_repository(conn, repo, now)
            conn.execute(
                """INSERT INTO blobs (repo, digest, linked_at) VALUES (?, ?, ?)
                   ON CONFLICT (repo, digest) DO UPDATE SET linked_at = excluded.linked_at""",
                (repo, digest, now),
            )
            if end_upload is not None:
                conn.execute("DELETE FROM uploads WHERE id = ?", (end_upload,))

    def unlink_blob(self, repo: str, digest: str) -> bool:
        with self._write() as conn:
            cur = conn.execute("DELETE FROM blobs WHERE repo = ? AND digest = ?", (repo, digest))
            return cur.rowcount > 0

    # ----------------------------------------------------------------- uploads

    def add_upload(self, upload_id: str, repo: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO uploads (id, repo, started_at) VALUES (?, ?, ?)",
                (upload_id, repo, _now()),
            )

    def upload_repo(self, upload_id: str) -> str | None:
        row = self._one("SELECT repo FROM uploads WHERE id = ?", (upload_id,))
        return None if row is None else str(row[0])

    def delete_upload(self, upload_id: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,)).rowcount > 0

    def uploads(self) -> list[UploadRecord]:
        rows = self._all("SELECT id, repo, started_at FROM uploads ORDER BY id", ())
        return [UploadRecord(str(r[0]), str(r[1]), datetime.fromisoformat(str(r[2]))) for r in rows]

    # ----------------------------------------------------------------- garbage collection

    def all_manifests(self) -> list[tuple[str, str]]:
        """``(digest, media type)`` of every manifest of every repository."""
        rows = self._all("SELECT DISTINCT digest, media_type FROM manifests", ())
        return [(str(r[0]), str(r[1])) for r in rows]

    def blobs_linked_since(self, since: datetime) -> list[str]:
        rows = self._all("SELECT DISTINCT digest FROM blobs WHERE linked_at >= ?", (_ts(since),))
        return [str(r[0]) for r in rows]

    def unlink_everywhere(self, digests: Iterable[str]) -> None:
        """Forget blobs that are gone from the store, in every repository."""
        with self._write() as conn:
            conn.executemany("DELETE FROM blobs WHERE digest = ?", [(d,) for d in digests])
