"""Stored answers of the Responses API (``store: true``, OpenAI's default), one list per owner: the
``ResponseStore`` protocol and the one SQL implementation SQLite and PostgreSQL share.

``previous_response_id`` continues a stored response: the conversation kept with it (chat messages, its answer
included; never its ``instructions``, which OpenAI does not carry over either) comes before the new input. Owners
are those of the chat history (``store/conversations.owner_of``): another owner's id is ``NotFound`` like an
unknown one. The oldest responses of an owner beyond ``MAX_RESPONSES_PER_OWNER`` are dropped, in the transaction
of the insert (``inhouse.testing.response_contract`` checks every implementation alike).

Each keeps the sensitivity label of what its answer may hold (``label``: the conversation's, the passages' it was
grounded on, the previous response's…): a continuation counts it in the egress decision, so "translate your
answer" cannot carry a confidential answer to a provider the first turn was kept from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from inhouse.errors import InvalidRequest, NotFound
from inhouse.governance.labels import Label, parse_label
from inhouse.store.conversations import owner_of

if TYPE_CHECKING:
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
    label: Label | None = None  # what the answer may hold; None: stored before labels were kept


class ResponseStore(Protocol):
    def get(self, actor: Actor, response_id: str) -> StoredResponse:
        """``NotFound`` for an unknown id and for another owner's alike."""
        ...

    def save(self, actor: Actor, *, response_id: str, model: str, previous_id: str | None,
             messages: Sequence[dict[str, Any]], input_items: Sequence[dict[str, Any]], body: dict[str, Any],
             label: Label | None = None) -> None:
        """``InvalidRequest`` past ``MAX_STORED_BYTES``; keeps the owner's newest ``MAX_RESPONSES_PER_OWNER``."""
        ...

    def delete(self, actor: Actor, response_id: str) -> None: ...


def encode_response(messages: Sequence[dict[str, Any]], input_items: Sequence[dict[str, Any]],
                    body: dict[str, Any]) -> list[str]:
    """The three JSON columns of a stored response, refused together past ``MAX_STORED_BYTES``."""
    blobs = [json.dumps(list(messages), ensure_ascii=False), json.dumps(list(input_items), ensure_ascii=False),
             json.dumps(body, ensure_ascii=False)]
    if sum(len(b.encode()) for b in blobs) > MAX_STORED_BYTES:
        raise InvalidRequest("This conversation is too large to store; send it without previous_response_id "
                             "or with store=false.", param="store")
    return blobs


class SqlResponseStore:
    """The ``ResponseStore`` over a SQL database (table ``responses``): SQLite and PostgreSQL differ in the
    parameter placeholder and in how a save is serialised with the other saves of its owner
    (``owner_transaction``), so the cap keeps exactly the newest."""

    placeholder = "?"

    def __init__(self, db: Any, *, clock: Callable[[], float] = time.time,
                 max_per_owner: int = MAX_RESPONSES_PER_OWNER) -> None:
        self._db = db  # query_one / execute / transaction, as both database helpers offer them
        self._clock = clock
        self._max = int(max_per_owner)

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        """A write transaction in which no other save for ``owner`` runs."""
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    def get(self, actor: Actor, response_id: str) -> StoredResponse:
        row = self._db.query_one(self._sql("SELECT * FROM responses WHERE id = ? AND owner = ?"),
                                 (response_id, owner_of(actor)))
        if row is None:
            raise NotFound(f"No response '{response_id}'.", param="response_id")
        return StoredResponse(row["id"], row["model"], row["previous_id"], json.loads(row["messages"]),
                              json.loads(row["input_items"]), json.loads(row["body"]), row["created_at"],
                              parse_label(row["label"]) if row["label"] else None)

    def save(self, actor: Actor, *, response_id: str, model: str, previous_id: str | None,
             messages: Sequence[dict[str, Any]], input_items: Sequence[dict[str, Any]], body: dict[str, Any],
             label: Label | None = None) -> None:
        blobs = encode_response(messages, input_items, body)
        owner = owner_of(actor)
        with self.owner_transaction(owner) as conn:
            conn.execute(self._sql("INSERT INTO responses (id, owner, model, previous_id, messages, input_items,"
                                   " body, created_at, label) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                         (response_id, owner, model, previous_id, *blobs, self._clock(),
                          label.value if label is not None else None))
            conn.execute(self._sql("DELETE FROM responses WHERE owner = ? AND id NOT IN (SELECT id FROM responses"
                                   " WHERE owner = ? ORDER BY created_at DESC, id DESC LIMIT ?)"),
                         (owner, owner, self._max))

    def delete(self, actor: Actor, response_id: str) -> None:
        if not self._db.erase(self._sql("DELETE FROM responses WHERE id = ? AND owner = ?"),
                              (response_id, owner_of(actor))):
            raise NotFound(f"No response '{response_id}'.", param="response_id")
