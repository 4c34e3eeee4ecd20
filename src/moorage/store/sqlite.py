"""What every SQLite database of Moorage does the same way: versioned migrations."""

from __future__ import annotations

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
