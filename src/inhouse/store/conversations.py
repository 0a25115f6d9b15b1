"""Chat conversations kept on the server, one list per owner (a user, or a key bound to no user): the
``ConversationStore`` protocol and the rules every implementation applies.

The web UI saves a conversation after every exchange (title, model, messages with their citations) so history
follows the person across browsers. The owner is derived from the caller's ``Actor`` and is part of every query:
another owner's id is indistinguishable from an unknown one (``NotFound``). Titles are normalised by
``clean_title``, messages checked and serialised by ``encode_messages``, and an update merges through ``merged``:
implementations keep rows, these functions keep the rules (``inhouse.testing.conversation_contract`` checks both).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from inhouse.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
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


class ConversationStore(Protocol):
    def list(self, actor: Actor, *, limit: int = 200) -> list[Conversation]:
        """The owner's conversations, most recently updated first (then by id)."""
        ...

    def get(self, actor: Actor, conversation_id: str) -> Conversation:
        """``NotFound`` for an unknown id and for another owner's alike."""
        ...

    def create(self, actor: Actor, *, title: str, model: str | None = None,
               messages: Sequence[dict[str, Any]] = ()) -> Conversation:
        """``InvalidRequest`` (code ``too_many_conversations``) past ``MAX_CONVERSATIONS_PER_OWNER``, checked in the
        same transaction as the insert."""
        ...

    def update(self, actor: Actor, conversation_id: str, *, title: str | None = None, model: str | None = None,
               messages: Sequence[dict[str, Any]] | None = None) -> Conversation:
        """Replace the given fields (None: keep), stamp ``updated_at``."""
        ...

    def delete(self, actor: Actor, conversation_id: str) -> None: ...


def new_conversation_id() -> str:
    return "conv_" + secrets.token_hex(8)


def check_room(count: int) -> None:
    """Before adding a conversation to an owner who has ``count`` (checked in the insert's transaction)."""
    if count >= MAX_CONVERSATIONS_PER_OWNER:
        raise InvalidRequest(f"At most {MAX_CONVERSATIONS_PER_OWNER} conversations are kept; delete some.",
                             code="too_many_conversations")


def merged(current: Conversation, *, title: str | None, model: str | None,
           messages: Sequence[dict[str, Any]] | None) -> tuple[str, str | None, str]:
    """(title, model, messages as stored JSON) of an update: the given fields replace, None keeps."""
    return (clean_title(title) if title is not None else current.title,
            model if model is not None else current.model,
            encode_messages(messages) if messages is not None else json.dumps(current.messages, ensure_ascii=False))


def clean_title(title: str) -> str:
    t = " ".join(title.split())[:MAX_TITLE_CHARS]
    return t or "New chat"


def encode_messages(messages: Sequence[dict[str, Any]]) -> str:
    if len(messages) > MAX_MESSAGES:
        raise InvalidRequest(f"At most {MAX_MESSAGES} messages per conversation.", param="messages")
    blob = json.dumps(list(messages), ensure_ascii=False)
    if len(blob.encode()) > MAX_STORED_BYTES:
        raise InvalidRequest("This conversation is too large to keep; start a new one.", param="messages")
    return blob


def conversation_from_row(r: Any) -> Conversation:
    return Conversation(id=r["id"], owner=r["owner"], title=r["title"], model=r["model"],
                        messages=json.loads(r["messages"]), created_at=r["created_at"], updated_at=r["updated_at"])


class SqlConversationStore:
    """The ``ConversationStore`` over a SQL database: one implementation for SQLite and PostgreSQL, which differ
    in the parameter placeholder and in how the transaction of a create is serialised (``owner_transaction``)."""

    placeholder = "?"

    def __init__(self, db: Any, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db  # query / query_one / execute, as both database helpers offer them
        self._clock = clock

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        """A write transaction in which no other create for ``owner`` runs."""
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    def list(self, actor: Actor, *, limit: int = 200) -> list[Conversation]:
        rows = self._db.query(self._sql("SELECT * FROM conversations WHERE owner = ? ORDER BY updated_at DESC, id"
                                        " LIMIT ?"), (owner_of(actor), limit))
        return [conversation_from_row(r) for r in rows]

    def get(self, actor: Actor, conversation_id: str) -> Conversation:
        row = self._db.query_one(self._sql("SELECT * FROM conversations WHERE id = ? AND owner = ?"),
                                 (conversation_id, owner_of(actor)))
        if row is None:
            raise NotFound(f"No conversation '{conversation_id}'.", param="conversation_id")
        return conversation_from_row(row)

    def create(self, actor: Actor, *, title: str, model: str | None = None,
               messages: Sequence[dict[str, Any]] = ()) -> Conversation:
        owner, now = owner_of(actor), self._clock()
        blob = encode_messages(messages)
        cid = new_conversation_id()
        with self.owner_transaction(owner) as conn:
            check_room(int(conn.execute(self._sql("SELECT count(*) AS n FROM conversations WHERE owner = ?"),
                                        (owner,)).fetchone()["n"]))
            conn.execute(self._sql("INSERT INTO conversations (id, owner, title, model, messages, created_at,"
                                   " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                         (cid, owner, clean_title(title), model, blob, now, now))
        return self.get(actor, cid)

    def update(self, actor: Actor, conversation_id: str, *, title: str | None = None, model: str | None = None,
               messages: Sequence[dict[str, Any]] | None = None) -> Conversation:
        current = self.get(actor, conversation_id)
        self._db.execute(
            self._sql("UPDATE conversations SET title = ?, model = ?, messages = ?, updated_at = ?"
                      " WHERE id = ? AND owner = ?"),
            (*merged(current, title=title, model=model, messages=messages), self._clock(), current.id,
             current.owner))
        return self.get(actor, conversation_id)

    def delete(self, actor: Actor, conversation_id: str) -> None:
        if not self._db.erase(self._sql("DELETE FROM conversations WHERE id = ? AND owner = ?"),
                              (conversation_id, owner_of(actor))):
            raise NotFound(f"No conversation '{conversation_id}'.", param="conversation_id")
