"""Customer-service sessions kept on the server (table ``support_sessions``): the ``SessionStore`` protocol and the
one SQL implementation SQLite (``inhouse.db``) and PostgreSQL (``store.url``) share; the dialects
(``store/sqlite/assistants.py``, ``store/postgres/assistants.py``) supply the placeholder and the transaction that
serialises an owner's creates (the per-owner cap).

A save is conditional: it writes only when the stored session still has the messages (count) and status it had when
this copy was read (``Session.base``); otherwise it raises ``Conflict`` and writes nothing, and the caller re-reads
and merges (``SupportAssistant``). Messages are only ever appended, so their count is the session's version: two
nodes answering one session at the same time cannot overwrite each other's messages or a hand-over.

A session belongs to the owner of the key that opened it (``owner_of``: the user, or the key itself). Another
owner's session id is indistinguishable from an unknown one (``NotFound``). Ids are 96-bit random (``ses_…``):
a widget's scoped key is shared by every visitor of a web page, so the id is what keeps one visitor's
conversation from another's. Admins (the human agents) may read any session and list handed-over ones.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from inhouse.errors import Conflict, InvalidRequest, NotFound
from inhouse.store.conversations import owner_of
from inhouse.types import Actor

MAX_MESSAGES = 400  # per session; a longer conversation must start a new session
MAX_SESSIONS_PER_OWNER = 100_000


def new_session_id() -> str:
    return f"ses_{secrets.token_hex(12)}"


@dataclass
class Session:
    id: str
    owner: str
    collections: list[str]
    status: str  # 'open' | 'handed_over' | 'closed'
    misses: int
    handoff: dict[str, Any] | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    # (message count, status) as stored when this copy was read: what ``save`` requires to be unchanged. None: the
    # copy was not read from the store, its save is unconditional.
    base: tuple[int, str] | None = field(default=None, compare=False, repr=False)

    @property
    def handed_over(self) -> bool:
        return self.status == "handed_over"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "support.session", "collections": self.collections, "status": self.status,
                "handoff": self.handoff is not None, "handoff_details": self.handoff, "messages": self.messages,
                "created_at": self.created_at, "updated_at": self.updated_at}


def _row(row: Any) -> Session:
    messages = json.loads(row["messages"])
    return Session(row["id"], row["owner"], json.loads(row["collections"]), row["status"], row["misses"],
                   json.loads(row["handoff"]) if row["handoff"] else None, messages, row["created_at"],
                   row["updated_at"], base=(len(messages), row["status"]))


class SessionStore(Protocol):
    def create(self, actor: Actor, collections: Sequence[str]) -> Session:
        """``Conflict`` past ``MAX_SESSIONS_PER_OWNER``, checked in the insert's transaction."""
        ...

    def get(self, actor: Actor, session_id: str, *, for_update: bool = False) -> Session:
        """The caller's session (admins may read any; only the owner may add to one); ``NotFound`` otherwise."""
        ...

    def save(self, session: Session) -> Session:
        """Store status, misses, handoff and messages; ``InvalidRequest`` past ``MAX_MESSAGES``; ``Conflict`` (and
        nothing written) when the stored session changed since this copy was read (``Session.base``)."""
        ...

    def handed_over(self, *, limit: int = 100) -> list[Session]:
        """The queue of the human agents (admin edge only): handed-over sessions, oldest first."""
        ...


class SqlSessionStore:
    """The ``SessionStore`` over a SQL database."""

    placeholder = "?"
    message_count = "json_array_length(messages)"  # the dialect's count of a JSON text array

    def __init__(self, db: Any, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db  # query / query_one / execute / transaction, as both database helpers offer them
        self._clock = clock

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        """A write transaction in which no other create for ``owner`` runs."""
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    def create(self, actor: Actor, collections: Sequence[str]) -> Session:
        owner, now = owner_of(actor), self._clock()
        session = Session(new_session_id(), owner, list(collections), "open", 0, None, [], now, now,
                          base=(0, "open"))
        with self.owner_transaction(owner) as conn:
            n = conn.execute(self._sql("SELECT count(*) AS n FROM support_sessions WHERE owner = ?"),
                             (owner,)).fetchone()["n"]
            if n >= MAX_SESSIONS_PER_OWNER:
                raise Conflict("Too many support sessions for this key; ask an operator to archive old ones.")
            conn.execute(self._sql("INSERT INTO support_sessions (id, owner, collections, status, misses, handoff,"
                                   " messages, created_at, updated_at) VALUES (?, ?, ?, 'open', 0, NULL, '[]', ?, ?)"),
                         (session.id, owner, json.dumps(session.collections), now, now))
        return session

    def get(self, actor: Actor, session_id: str, *, for_update: bool = False) -> Session:
        row = self._db.query_one(self._sql("SELECT * FROM support_sessions WHERE id = ?"), (str(session_id)[:100],))
        mine = row is not None and row["owner"] == owner_of(actor)
        if row is None or not (mine or (actor.is_admin and not for_update)):
            raise NotFound("No such support session, or not yours.", param="session_id")
        return _row(row)

    def save(self, session: Session) -> Session:
        if len(session.messages) > MAX_MESSAGES:
            raise InvalidRequest(f"This session has reached {MAX_MESSAGES} messages; start a new one.",
                                 param="session_id")
        updated_at = self._clock()
        sql = ("UPDATE support_sessions SET status = ?, misses = ?, handoff = ?, messages = ?, updated_at = ?"
               " WHERE id = ? AND owner = ?")
        params: tuple[Any, ...] = (
            session.status, session.misses, json.dumps(session.handoff, ensure_ascii=False) if session.handoff
            else None, json.dumps(session.messages, ensure_ascii=False), updated_at, session.id, session.owner)
        if session.base is not None:
            # Compare and set in one statement: another request (this node or another) that saved since this copy
            # was read has added a message, so the count differs and nothing is overwritten.
            sql += f" AND {self.message_count} = ? AND status = ?"
            params += session.base
        if self._db.execute(self._sql(sql), params) == 0:
            if session.base is None:
                raise NotFound("No such support session, or not yours.", param="session_id")
            raise Conflict("A message of this support session is still being answered; send it again.",
                           param="session_id")
        session.updated_at = updated_at
        session.base = (len(session.messages), session.status)
        return session

    def handed_over(self, *, limit: int = 100) -> list[Session]:
        rows = self._db.query(self._sql("SELECT * FROM support_sessions WHERE status = 'handed_over'"
                                        " ORDER BY updated_at, id LIMIT ?"), (max(1, min(limit, 1000)),))
        return [_row(r) for r in rows]
