"""Stored answers of the Responses API (``store: true``, OpenAI's default), one list per owner.

``previous_response_id`` continues a stored response: the conversation kept with it (chat messages, its answer
included; never its ``instructions``, which OpenAI does not carry over either) comes before the new input. Owners
are those of the chat history (``store/conversations.owner_of``): another owner's id is ``NotFound`` like an
unknown one. The oldest responses of an owner beyond ``MAX_RESPONSES_PER_OWNER`` are dropped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inhouse.errors import InvalidRequest, NotFound
from inhouse.store.conversations import owner_of

if TYPE_CHECKING:
    from inhouse.store.db import Database
    from inhouse.types import Actor

MAX_RESPONSES_PER_OWNER = 10_000
MAX_STORED_BYTES = 4_000_000  # per response: its conversation, input items and body as JSON


@dataclass(frozen=True)
class StoredResponse:
    id: str
    model: str
    previous_id: str | None
    messages: list[dict[str, Any]]  # the conversation up to and including this response's answer
    input_items: list[dict[str, Any]]
    body: dict[str, Any]
    created_at: float


class ResponseStore:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def get(self, actor: Actor, response_id: str) -> StoredResponse:
        row = self._db.query_one("SELECT * FROM responses WHERE id = ? AND owner = ?", (response_id, owner_of(actor)))
        if row is None:
            raise NotFound(f"No response '{response_id}'.", param="response_id")
        return StoredResponse(row["id"], row["model"], row["previous_id"], json.loads(row["messages"]),
                              json.loads(row["input_items"]), json.loads(row["body"]), row["created_at"])

    def save(self, actor: Actor, *, response_id: str, model: str, previous_id: str | None,
             messages: Sequence[dict[str, Any]], input_items: Sequence[dict[str, Any]], body: dict[str, Any]) -> None:
        blobs = [json.dumps(list(messages), ensure_ascii=False), json.dumps(list(input_items), ensure_ascii=False),
                 json.dumps(body, ensure_ascii=False)]
        if sum(len(b.encode()) for b in blobs) > MAX_STORED_BYTES:
            raise InvalidRequest("This conversation is too large to store; send it without previous_response_id "
                                 "or with store=false.", param="store")
        owner = owner_of(actor)
        with self._db.transaction() as conn:
            conn.execute("INSERT INTO responses (id, owner, model, previous_id, messages, input_items, body, "
                         "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (response_id, owner, model, previous_id, *blobs, self._clock()))
            conn.execute("DELETE FROM responses WHERE owner = ? AND id NOT IN (SELECT id FROM responses WHERE owner = ?"
                         " ORDER BY created_at DESC, id DESC LIMIT ?)", (owner, owner, MAX_RESPONSES_PER_OWNER))

    def delete(self, actor: Actor, response_id: str) -> None:
        if not self._db.execute("DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner_of(actor))):
            raise NotFound(f"No response '{response_id}'.", param="response_id")
