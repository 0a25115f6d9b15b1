"""Customer-service sessions kept on the server (SQLite, ``support_sessions``).

A session belongs to the owner of the key that opened it (``owner_of``: the user, or the key itself). Another
owner's session id is indistinguishable from an unknown one (``NotFound``). Ids are 96-bit random (``ses_…``):
a widget's scoped key is shared by every visitor of a web page, so the id is what keeps one visitor's
conversation from another's. Admins (the human agents) may read any session and list handed-over ones.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from inhouse.errors import Conflict, InvalidRequest, NotFound
from inhouse.store.conversations import owner_of
from inhouse.store.sqlite.database import Database
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

    @property
    def handed_over(self) -> bool:
        return self.status == "handed_over"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "support.session", "collections": self.collections, "status": self.status,
                "handoff": self.handoff is not None, "handoff_details": self.handoff, "messages": self.messages,
                "created_at": self.created_at, "updated_at": self.updated_at}


def _row(row: sqlite3.Row) -> Session:
    return Session(row["id"], row["owner"], json.loads(row["collections"]), row["status"], row["misses"],
                   json.loads(row["handoff"]) if row["handoff"] else None, json.loads(row["messages"]),
                   row["created_at"], row["updated_at"])


class SessionStore:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def create(self, actor: Actor, collections: Sequence[str]) -> Session:
        owner, now = owner_of(actor), self._clock()
        session = Session(new_session_id(), owner, list(collections), "open", 0, None, [], now, now)
        with self._db.transaction() as conn:
            n = conn.execute("SELECT count(*) FROM support_sessions WHERE owner = ?", (owner,)).fetchone()[0]
            if n >= MAX_SESSIONS_PER_OWNER:
                raise Conflict("Too many support sessions for this key; ask an operator to archive old ones.")
            conn.execute("INSERT INTO support_sessions (id, owner, collections, status, misses, handoff, messages,"
                         " created_at, updated_at) VALUES (?, ?, ?, 'open', 0, NULL, '[]', ?, ?)",
                         (session.id, owner, json.dumps(session.collections), now, now))
        return session

    def get(self, actor: Actor, session_id: str, *, for_update: bool = False) -> Session:
        """The caller's session (admins may read any; only the owner may add to one)."""
        row = self._db.query_one("SELECT * FROM support_sessions WHERE id = ?", (str(session_id)[:100],))
        mine = row is not None and row["owner"] == owner_of(actor)
        if row is None or not (mine or (actor.is_admin and not for_update)):
            raise NotFound("No such support session, or not yours.", param="session_id")
        return _row(row)

    def save(self, session: Session) -> Session:
        if len(session.messages) > MAX_MESSAGES:
            raise InvalidRequest(f"This session has reached {MAX_MESSAGES} messages; start a new one.",
                                 param="session_id")
        session.updated_at = self._clock()
        self._db.execute(
            "UPDATE support_sessions SET status = ?, misses = ?, handoff = ?, messages = ?, updated_at = ?"
            " WHERE id = ? AND owner = ?",
            (session.status, session.misses, json.dumps(session.handoff, ensure_ascii=False) if session.handoff
             else None, json.dumps(session.messages, ensure_ascii=False), session.updated_at, session.id,
             session.owner))
        return session

    def handed_over(self, *, limit: int = 100) -> list[Session]:
        """The queue of the human agents (admin edge only): handed-over sessions, oldest first."""
        rows = self._db.query("SELECT * FROM support_sessions WHERE status = 'handed_over' ORDER BY updated_at"
                              " LIMIT ?", (max(1, min(limit, 1000)),))
        return [_row(r) for r in rows]
