"""``SqliteConversationStore`` passes the conversation store conformance suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.store.sqlite.conversations import SqliteConversationStore
from inhouse.store.sqlite.inhouse_db import open_inhouse_db
from inhouse.testing.conversation_contract import ConversationStoreContract, ticking_clock


class TestSqliteConversationStore(ConversationStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SqliteConversationStore]:
        db = open_inhouse_db(tmp_path / "c.db")
        yield SqliteConversationStore(db, clock=ticking_clock())
        db.close()
