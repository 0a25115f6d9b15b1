"""``PostgresConversationStore``: the ``ConversationStore`` shared by several inhouse nodes (table
``conversations``). Creating one counts the owner's conversations and inserts under an advisory lock of that owner,
so two nodes cannot both pass the cap."""

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
from inhouse.store.postgres.database import PostgresDatabase, lock_id
from inhouse.types import Actor


class PostgresConversationStore:
    def __init__(self, db: PostgresDatabase, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def list(self, actor: Actor, *, limit: int = 200) -> list[Conversation]:
        rows = self._db.query("SELECT * FROM conversations WHERE owner = %s ORDER BY updated_at DESC, id LIMIT %s",
                              (owner_of(actor), limit))
        return [conversation_from_row(r) for r in rows]

    def get(self, actor: Actor, conversation_id: str) -> Conversation:
        row = self._db.query_one("SELECT * FROM conversations WHERE id = %s AND owner = %s",
                                 (conversation_id, owner_of(actor)))
        if row is None:
            raise NotFound(f"No conversation '{conversation_id}'.", param="conversation_id")
        return conversation_from_row(row)

    def create(self, actor: Actor, *, title: str, model: str | None = None,
               messages: Sequence[dict[str, Any]] = ()) -> Conversation:
        owner, now = owner_of(actor), self._clock()
        blob = encode_messages(messages)
        cid = new_conversation_id()
        with self._db.transaction(lock=lock_id(f"conversations:{owner}")) as conn:
            check_room(int(conn.execute("SELECT count(*) AS n FROM conversations WHERE owner = %s",
                                        (owner,)).fetchone()["n"]))
            conn.execute("INSERT INTO conversations (id, owner, title, model, messages, created_at, updated_at)"
                         " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                         (cid, owner, clean_title(title), model, blob, now, now))
        return self.get(actor, cid)

    def update(self, actor: Actor, conversation_id: str, *, title: str | None = None, model: str | None = None,
               messages: Sequence[dict[str, Any]] | None = None) -> Conversation:
        current = self.get(actor, conversation_id)
        self._db.execute(
            "UPDATE conversations SET title = %s, model = %s, messages = %s, updated_at = %s"
            " WHERE id = %s AND owner = %s",
            (*merged(current, title=title, model=model, messages=messages), self._clock(), current.id,
             current.owner))
        return self.get(actor, conversation_id)

    def delete(self, actor: Actor, conversation_id: str) -> None:
        if not self._db.execute("DELETE FROM conversations WHERE id = %s AND owner = %s",
                                (conversation_id, owner_of(actor))):
            raise NotFound(f"No conversation '{conversation_id}'.", param="conversation_id")
