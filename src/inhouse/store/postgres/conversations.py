"""``PostgresConversationStore``: the ``ConversationStore`` shared by several inhouse nodes (table
``conversations``). A create counts the owner's conversations and inserts under an advisory lock of that owner,
so two nodes cannot both pass the cap."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from inhouse.store.conversations import SqlConversationStore
from inhouse.store.postgres.database import lock_id


class PostgresConversationStore(SqlConversationStore):
    placeholder = "%s"

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        return self._db.transaction(lock=lock_id(f"conversations:{owner}"))  # type: ignore[no-any-return]
