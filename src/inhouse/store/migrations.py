"""Ordered schema migrations. Append only: never edit a migration that has shipped.

Each migration runs in its own transaction together with the row that records it in
``schema_migrations``, so a crash leaves the database either before or after a version, never between.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inhouse.store.db import Database


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "api_keys",
        """
        CREATE TABLE api_keys (
            id           TEXT PRIMARY KEY,          -- 'key_…', its suffix is embedded in the secret
            name         TEXT NOT NULL,
            prefix       TEXT NOT NULL,             -- public start of the secret, shown in listings
            secret_hash  TEXT NOT NULL,             -- sha256 hex of the whole secret
            role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
            -- Users and groups arrive in a later migration, then this column will then reference users(id).
            user_id      TEXT NULL,
            created_at   REAL NOT NULL,             -- unix seconds
            expires_at   REAL NULL,
            revoked_at   REAL NULL,
            last_used_at REAL NULL
        );
        CREATE INDEX api_keys_user ON api_keys (user_id);
        """,
    ),
)


def _split(sql: str) -> list[str]:
    # Our migrations contain no semicolons inside literals or triggers, so a plain split is exact;
    # executescript() would commit implicitly and break the one-transaction-per-version rule.
    return [s.strip() for s in sql.split(";") if s.strip()]


def apply_migrations(db: Database, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError("migration versions must be unique and increasing")
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    applied: list[int] = []
    for m in migrations:
        with db.transaction() as conn:
            # Checked inside the write transaction: two processes migrating at once cannot both apply it.
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (m.version,)).fetchone():
                continue
            for stmt in _split(m.sql):
                conn.execute(stmt)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (m.version, m.name, time.time()),
            )
        applied.append(m.version)
    return applied


def current_version(db: Database) -> int:
    exists = db.scalar("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_migrations'")
    if not exists:
        return 0
    return int(db.scalar("SELECT coalesce(max(version), 0) FROM schema_migrations"))
