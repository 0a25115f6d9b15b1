"""``SqliteConversationStore``: the ``ConversationStore`` of the embedded install (table ``conversations`` of
``inhouse.db``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from inhouse.errors import NotFound
from inhouse.store.conversations import (
    Conversation,
    check_room,
    clean_title,
    conversation_from_row,
    encode_messages,
    merged,
    new_conversation_id,
    owner_of,
)
from inhouse.store.sqlite.database import Database
from inhouse.types import Actor


class SqliteConversationStore:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def list(self, actor: Actor, *, limit: int = 200) -> list[Conversation]:
        rows = self._db.query("SELECT * FROM conversations WHERE owner = ? ORDER BY updated_at DESC, id LIMIT ?",
                              (owner_of(actor), limit))
        return [conversation_from_row(r) for r in rows]

    def get(self, actor: Actor, conversation_id: str) -> Conversation:
        row = self._db.query_one("SELECT * FROM conversations WHERE id = ? AND owner = ?",
                                 (conversation_id, owner_of(actor)))
        if row is None:
            raise NotFound(f"No conversation '{conversation_id}'.", param="conversation_id")
        return conversation_from_row(row)

    def create(self, actor: Actor, *, title: str, model: str | None = None,
               messages: Sequence[dict[str, Any]] = ()) -> Conversation:
        owner, now = owner_of(actor), self._clock()
        blob = encode_messages(messages)
        cid = new_conversation_id()
        with self._db.transaction() as conn:
            count = conn.execute("SELECT count(*) FROM conversations WHERE owner = ?", (owner,)).fetchone()[0]
            check_room(count)
            conn.execute("INSERT INTO conversations (id, owner, title, model, messages, created_at, updated_at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", (cid, owner, clean_title(title), model, blob, now, now))
        return self.get(actor, cid)

    def update(self, actor: Actor, conversation_id: str, *, title: str | None = None, model: str | None = None,
               messages: Sequence[dict[str, Any]] | None = None) -> Conversation:
        current = self.get(actor, conversation_id)
        self._db.execute(
            "UPDATE conversations SET title = ?, model = ?, messages = ?, updated_at = ? WHERE id = ? AND owner = ?",
            (*merged(current, title=title, model=model, messages=messages), self._clock(), current.id,
             current.owner))
        return self.get(actor, conversation_id)

    def delete(self, actor: Actor, conversation_id: str) -> None:
        if not self._db.execute("DELETE FROM conversations WHERE id = ? AND owner = ?",
                                (conversation_id, owner_of(actor))):
            raise NotFound(f"No conversation '{conversation_id}'.", param="conversation_id")
