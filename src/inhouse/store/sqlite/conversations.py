"""``SqliteConversationStore``: the ``ConversationStore`` of the embedded install (table ``conversations`` of
``inhouse.db``); a create's count and insert run in one SQLite write transaction. A delete empties the WAL once it
commits, so the conversation's text is gone from the disk (``Database.purge_after_commit``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from inhouse.store.conversations import SqlConversationStore

if TYPE_CHECKING:
    from inhouse.types import Actor


class SqliteConversationStore(SqlConversationStore):
    placeholder = "?"

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        return self._db.transaction()  # type: ignore[no-any-return]

    def delete(self, actor: Actor, conversation_id: str) -> None:
        with self._db.transaction():
            self._db.purge_after_commit()
            super().delete(actor, conversation_id)
