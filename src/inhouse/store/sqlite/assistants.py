"""The assistants' stores of the embedded install (tables ``schedule_events`` and ``support_sessions`` of
``inhouse.db``): a create's count and insert run in one SQLite write transaction. Deleting an event empties the WAL
once it commits, so its text is gone from the disk (``Database.erase``)."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import Any

from inhouse.apps.schedule.store import SqlEventStore
from inhouse.apps.support.store import SqlSessionStore


class SqliteEventStore(SqlEventStore):
    placeholder = "?"

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        return self._db.transaction()  # type: ignore[no-any-return]

    def is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)


class SqliteSessionStore(SqlSessionStore):
    placeholder = "?"

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        return self._db.transaction()  # type: ignore[no-any-return]
