"""``SqliteGovernanceStore``: the ``GovernanceStore`` of the embedded install, tables of ``inhouse.db``.

The SQL is ``SqlGovernanceStore``'s; here, SQLite's side of it: one ``Database`` (one connection and its lock), its
write transaction serialising governance changes with every other writer of the file, names compared through the
columns' ``COLLATE NOCASE``.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import Any

from inhouse.store.sql_governance import SqlGovernanceStore
from inhouse.store.sqlite.database import Database


class SqliteGovernanceStore(SqlGovernanceStore):
    placeholder = "?"
    name_eq = "name = ?"
    name_order = "name"

    def __init__(self, db: Database, *, conn: Any = None) -> None:
        super().__init__(db, conn=conn)

    def begin(self) -> AbstractContextManager[Any]:
        return self._db.transaction()  # type: ignore[no-any-return]

    def is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)
