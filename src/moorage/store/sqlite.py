"""What every SQLite database of Moorage does the same way: versioned migrations, and
connections that belong to one thread."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence

from moorage.errors import FailedPrecondition


def migrate(conn: sqlite3.Connection, migrations: Sequence[Sequence[str]], what: str) -> None:
    """Bring the schema to ``len(migrations)``, inside the caller's write transaction.

    ``migrations[i]`` are the statements that take version i to i + 1. A database
    newer than this code is refused rather than guessed at.
    """
    target = len(migrations)
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    version = row[0] if row is not None else 0
    if version > target:
        raise FailedPrecondition(
            f"{what}: schema version {version} is newer than this moorage knows ({target})"
        )
    for statements in migrations[version:]:
        for statement in statements:
            conn.execute(statement)
    if row is None:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
    elif version != target:
        conn.execute("UPDATE schema_version SET version = ?", (target,))


# Connections a forked child inherited: never closed there (SQLite's locks and its WAL
# belong to the parent, and closing the last connection may checkpoint and delete it).
INHERITED_CONNECTIONS: list[sqlite3.Connection] = []


class ThreadConnection:
    """A thread's own connection, closed when that thread ends.

    Keep it in a ``threading.local``: those drop a thread's values as the thread exits,
    and this closes the connection then. A daemon runs many short-lived threads, and a
    connection kept past its thread holds descriptors (its WAL's, and its database
    file's, which SQLite may only close once no connection in the process holds a lock).
    """

    __slots__ = ("conn", "pid", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.pid = os.getpid()

    def close(self) -> None:
        if self.pid != os.getpid():
            INHERITED_CONNECTIONS.append(self.conn)
            return
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    def __del__(self) -> None:
        self.close()
