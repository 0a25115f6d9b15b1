"""Stores chosen by one setting, ``store.url``: empty for the embedded SQLite files, a PostgreSQL URL for a store
shared by several nodes. The services receive protocols and never learn which.

The requests/minute windows of the quotas are kept in memory with SQLite (one process serves) and in PostgreSQL with
a shared store (several ingress processes admit against one window per key: docs/governance.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from inhouse.governance.audit.log import AuditLog
from inhouse.store.answer_labels import SqlAnswerLabels

if TYPE_CHECKING:
    from inhouse.apps.schedule.store import EventStore
    from inhouse.apps.support.store import SessionStore
    from inhouse.config import Settings
    from inhouse.governance.quotas import RequestWindows
    from inhouse.governance.store import GovernanceStore
    from inhouse.kb.index.protocol import IndexStore
    from inhouse.store.conversations import ConversationStore
    from inhouse.store.responses import ResponseStore
    from inhouse.store.sqlite.database import Database


@dataclass
class Stores:
    governance: GovernanceStore
    conversations: ConversationStore
    responses: ResponseStore  # stored Responses API answers (previous_response_id)
    audit: AuditLog  # the log over its store: every security action and request is recorded here
    events: EventStore  # the schedule assistant's calendars
    sessions: SessionStore  # the support assistant's sessions
    request_windows: RequestWindows  # requests/minute per key: in memory (SQLite) or shared (PostgreSQL)
    kind: str  # "sqlite" or "postgresql"
    answer_labels: SqlAnswerLabels  # labels of answers given from labelled material (governance/answer_labels.py)
    # One round trip to the database server, raising StoreUnavailable when it cannot be reached (/ready); None for
    # the embedded files.
    ping: Callable[[], None] | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        self.audit.close()
        for close in reversed(self._closers):
            close()
        self._closers.clear()


def uses_postgres(settings: Settings) -> bool:
    return bool(settings.store.url)


def node_name(settings: Settings) -> str:
    """This node's name in a chain shared by several nodes (``store.node``, else the host name)."""
    import socket

    return settings.store.node or socket.gethostname()


def build_stores(settings: Settings, db: Database) -> Stores:
    """The governance, conversation, response, audit and assistants' stores and the request windows. ``db``: the
    embedded ``inhouse.db`` (used when ``store.url`` is empty; its owner closes it)."""
    key_path = settings.data_dir / "audit.key"
    if not uses_postgres(settings):
        from inhouse.governance.quotas import MemoryRequestWindows
        from inhouse.store.sqlite.assistants import SqliteEventStore, SqliteSessionStore
        from inhouse.store.sqlite.audit import open_sqlite_audit_log
        from inhouse.store.sqlite.conversations import SqliteConversationStore
        from inhouse.store.sqlite.governance import SqliteGovernanceStore
        from inhouse.store.sqlite.responses import SqliteResponseStore

        return Stores(SqliteGovernanceStore(db), SqliteConversationStore(db), SqliteResponseStore(db),
                      # A node name only where one is set (a cluster's ingress replica): its started records then
                      # name their process, so the replica that replaces a dead one (or a head run again) closes them.
                      open_sqlite_audit_log(settings.data_dir / "audit.db", key_path=key_path,
                                            node=settings.store.node or None),
                      SqliteEventStore(db), SqliteSessionStore(db), MemoryRequestWindows(), "sqlite",
                      SqlAnswerLabels(db))
    from inhouse.store.postgres.assistants import PostgresEventStore, PostgresSessionStore
    from inhouse.store.postgres.audit import PostgresAuditStore
    from inhouse.store.postgres.conversations import PostgresConversationStore
    from inhouse.store.postgres.database import PostgresDatabase, migrate
    from inhouse.store.postgres.governance import PostgresGovernanceStore
    from inhouse.store.postgres.rates import PostgresRequestWindows
    from inhouse.store.postgres.responses import PostgresResponseStore
    from inhouse.store.postgres.schema import AUDIT, INHOUSE

    pg = PostgresDatabase(settings.store.url, max_size=settings.store.pool_size)
    try:
        migrate(pg, "inhouse", INHOUSE)
        migrate(pg, "audit", AUDIT)
    except BaseException:
        pg.close()
        raise
    try:
        audit = AuditLog(PostgresAuditStore(pg), key_path=key_path, node=node_name(settings))
    except BaseException:
        pg.close()
        raise
    return Stores(PostgresGovernanceStore(pg), PostgresConversationStore(pg), PostgresResponseStore(pg), audit,
                  PostgresEventStore(pg), PostgresSessionStore(pg), PostgresRequestWindows(pg), "postgresql",
                  SqlAnswerLabels(pg, placeholder="%s"), ping=pg.ping, _closers=[pg.close])


def open_audit_log(settings: Settings) -> AuditLog | None:
    """The audit log alone (``inhouse audit …``); None when the embedded install has none yet."""
    key_path = settings.data_dir / "audit.key"
    if not uses_postgres(settings):
        from inhouse.store.sqlite.audit import open_sqlite_audit_log

        path = settings.data_dir / "audit.db"
        return open_sqlite_audit_log(path, key_path=key_path) if path.exists() else None
    from inhouse.store.postgres.audit import PostgresAuditStore
    from inhouse.store.postgres.database import PostgresDatabase, migrate
    from inhouse.store.postgres.schema import AUDIT

    pg = PostgresDatabase(settings.store.url, max_size=2)
    try:
        migrate(pg, "audit", AUDIT)
    except BaseException:
        pg.close()
        raise
    return AuditLog(PostgresAuditStore(pg, owns_db=True), key_path=key_path, node=node_name(settings))


def build_index_store(settings: Settings, *, dim: int) -> IndexStore:
    """The knowledge index: ``<data_dir>/kb.db``, or the ``kb_*`` tables of the PostgreSQL database."""
    if not uses_postgres(settings):
        from inhouse.kb.index.sqlite import SqliteIndexStore

        return SqliteIndexStore(settings.kb_path, dim=dim)
    from inhouse.kb.index.postgres import PostgresIndexStore

    return PostgresIndexStore(settings.store.url, dim=dim, pool_size=settings.store.pool_size,
                              resident_max_chunks=settings.store.resident_vectors_max_chunks)
