"""The assistants' stores shared by several inhouse nodes (tables ``schedule_events`` and ``support_sessions``). A
create counts the owner's rows and inserts under an advisory lock of that owner, so two nodes cannot both pass the
cap; a calendar's updates hold the same lock. A support session's save is a compare-and-set on its message count
(``apps/support/store.py``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from inhouse.apps.schedule.store import SqlEventStore
from inhouse.apps.support.store import SqlSessionStore
from inhouse.store.postgres.database import lock_id


class PostgresEventStore(SqlEventStore):
    placeholder = "%s"

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        return self._db.transaction(lock=lock_id(f"schedule:{owner}"))  # type: ignore[no-any-return]

    def is_unique_violation(self, exc: Exception) -> bool:
        import psycopg

        return isinstance(exc, psycopg.errors.UniqueViolation)


class PostgresSessionStore(SqlSessionStore):
    placeholder = "%s"
    message_count = "json_array_length(messages::json)"  # the column is text

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        return self._db.transaction(lock=lock_id(f"support:{owner}"))  # type: ignore[no-any-return]
