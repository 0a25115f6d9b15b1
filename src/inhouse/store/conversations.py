"""Chat conversations kept on the server, one list per owner (a user, or a key bound to no user).

The web UI saves a conversation after every exchange (title, model, messages with their citations) so history
follows the person across browsers. The owner is derived from the caller's ``Actor`` and is part of every query:
another owner's id is indistinguishable from an unknown one (``NotFound``).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inhouse.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from inhouse.store.db import Database
    from inhouse.types import Actor

MAX_TITLE_CHARS = 200
MAX_MESSAGES = 500
MAX_STORED_BYTES = 2_000_000  # per conversation, messages as JSON
MAX_CONVERSATIONS_PER_OWNER = 1000


def owner_of(actor: Actor) -> str:
    """Conversations belong to the person (all their keys), or to the key itself when it has no user."""
    return f"user:{actor.user_id}" if actor.user_id else f"key:{actor.key_id}"


@dataclass(frozen=True)
class Conversation:
    id: str  # conv_…
    owner: str
    title: str
    model: str | None
    messages: list[dict[str, Any]]
    created_at: float
    updated_at: float

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "object": "conversation", "title": self.title, "model": self.model,
                "created_at": self.created_at, "updated_at": self.updated_at, "message_count": len(self.messages)}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "messages": self.messages}


class ConversationStore:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def list(self, actor: Actor, *, limit: int = 200) -> list[Conversation]:
        rows = self._db.query("SELECT * FROM conversations WHERE owner = ? ORDER BY updated_at DESC, id LIMIT ?",
                              (owner_of(actor), limit))
        return [_row(r) for r in rows]

    def get(self, actor: Actor, conversation_id: str) -> Conversation:
        row = self._db.query_one("SELECT * FROM conversations WHERE id = ? AND owner = ?",
                                 (conversation_id, owner_of(actor)))
        if row is None:
            raise NotFound(f"No conversation '{conversation_id}'.", param="conversation_id")
        return _row(row)

    def create(self, actor: Actor, *, title: str, model: str | None = None,
               messages: Sequence[dict[str, Any]] = ()) -> Conversation:
        owner, now = owner_of(actor), self._clock()
        blob = _encode(messages)
        cid = "conv_" + secrets.token_hex(8)
        with self._db.transaction() as conn:
            count = conn.execute("SELECT count(*) FROM conversations WHERE owner = ?", (owner,)).fetchone()[0]
            if count >= MAX_CONVERSATIONS_PER_OWNER:
                raise InvalidRequest(f"At most {MAX_CONVERSATIONS_PER_OWNER} conversations are kept; delete some.",
                                     code="too_many_conversations")
            conn.execute("INSERT INTO conversations (id, owner, title, model, messages, created_at, updated_at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", (cid, owner, _title(title), model, blob, now, now))
        return self.get(actor, cid)

    def update(self, actor: Actor, conversation_id: str, *, title: str | None = None, model: str | None = None,
               messages: Sequence[dict[str, Any]] | None = None) -> Conversation:
        current = self.get(actor, conversation_id)
        self._db.execute(
            "UPDATE conversations SET title = ?, model = ?, messages = ?, updated_at = ? WHERE id = ? AND owner = ?",
            (_title(title) if title is not None else current.title, model if model is not None else current.model,
             _encode(messages) if messages is not None else json.dumps(current.messages, ensure_ascii=False),
             self._clock(), current.id, current.owner))
        return self.get(actor, conversation_id)

    def delete(self, actor: Actor, conversation_id: str) -> None:
        if not self._db.execute("DELETE FROM conversations WHERE id = ? AND owner = ?",
                                (conversation_id, owner_of(actor))):
            raise NotFound(f"No conversation '{conversation_id}'.", param="conversation_id")


def _title(title: str) -> str:
    t = " ".join(title.split())[:MAX_TITLE_CHARS]
    return t or "New chat"


def _encode(messages: Sequence[dict[str, Any]]) -> str:
    if len(messages) > MAX_MESSAGES:
        raise InvalidRequest(f"At most {MAX_MESSAGES} messages per conversation.", param="messages")
    blob = json.dumps(list(messages), ensure_ascii=False)
    if len(blob.encode()) > MAX_STORED_BYTES:
        raise InvalidRequest("This conversation is too large to keep; start a new one.", param="messages")
    return blob


def _row(r: Any) -> Conversation:
    return Conversation(id=r["id"], owner=r["owner"], title=r["title"], model=r["model"],
                        messages=json.loads(r["messages"]), created_at=r["created_at"], updated_at=r["updated_at"])
