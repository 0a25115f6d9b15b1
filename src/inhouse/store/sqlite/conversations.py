"""``SqliteConversationStore``: the ``ConversationStore`` of the embedded install (table ``conversations`` of
``inhouse.db``); a create's count and insert run in one SQLite write transaction. A delete empties the WAL once it
commits, so the conversation's text is gone from the disk (``Database.erase``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from inhouse.store.conversations import SqlConversationStore


class SqliteConversationStore(SqlConversationStore):
    placeholder = "?"

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        return self._db.transaction()  # type: ignore[no-any-return]
