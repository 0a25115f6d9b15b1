"""``PostgresGovernanceStore``: the ``GovernanceStore`` shared by several inhouse nodes.

The SQL is ``SqlGovernanceStore``'s; here, PostgreSQL's side of it. ``transaction()`` takes one pooled connection,
begins, and takes the governance advisory lock, so changes are serialised across nodes as SQLite's write lock
serialises them across processes (the checks the services make inside a change, such as the number of a user's
active keys, stay true until the commit). Names match through ``lower()`` and sort in byte order, as SQLite's
``NOCASE`` does for the ASCII names allowed.

A change of this process waits for the ones before it on a lock of the process first, and only then takes a pooled
connection and the advisory lock: waiting on the advisory lock holds a connection, and sixteen admin changes at once
held every connection of the pool while they waited, so every other request of the node waited too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from inhouse.store.postgres.database import PostgresDatabase, lock_id
from inhouse.store.sql_governance import SqlGovernanceStore

GOVERNANCE_LOCK = lock_id("governance")


class PostgresGovernanceStore(SqlGovernanceStore):
    placeholder = "%s"
    name_eq = "lower(name) = lower(?)"
    name_order = 'lower(name) COLLATE "C"'

    def __init__(self, db: PostgresDatabase, *, conn: Any = None) -> None:
        super().__init__(db, conn=conn)
        self._turn = threading.Lock()  # this process's changes, one at a time (see the module docstring)

    @contextmanager
    def begin(self) -> Iterator[Any]:
        with self._turn, self._db.transaction(lock=GOVERNANCE_LOCK) as conn:
            yield conn

    def is_unique_violation(self, exc: Exception) -> bool:
        import psycopg

        return isinstance(exc, psycopg.errors.UniqueViolation)

    def savepoint(self, conn: Any) -> AbstractContextManager[Any]:
        return conn.transaction()  # type: ignore[no-any-return]
