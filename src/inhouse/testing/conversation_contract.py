"""``ConversationStoreContract``: the conformance suite every ``ConversationStore`` passes. Subclass it and provide a
``store`` fixture: an empty store whose clock gives 1000.0, 1001.0, … on successive calls::

    class TestSqliteConversationStore(ConversationStoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            db = open_inhouse_db(tmp_path / "inhouse.db")
            yield SqliteConversationStore(db, clock=ticking_clock())
            db.close()
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from inhouse.errors import InvalidRequest, NotFound
from inhouse.store.conversations import MAX_CONVERSATIONS_PER_OWNER, MAX_MESSAGES, ConversationStore, owner_of
from inhouse.types import Actor

ANN = Actor("key_a1", "ann laptop", user_id="usr_ann")
ANN_PHONE = Actor("key_a2", "ann phone", user_id="usr_ann")
BOB = Actor("key_b1", "bob", user_id="usr_bob")
ROBOT = Actor("key_r1", "robot")  # a key bound to no user


def ticking_clock() -> Callable[[], float]:
    """1000.0, 1001.0, … : every call a second later."""
    ticks = itertools.count(1000)
    return lambda: float(next(ticks))


class ConversationStoreContract:
    @pytest.fixture
    def store(self, tmp_path: Any) -> ConversationStore:  # pragma: no cover - overridden
        raise NotImplementedError

    def test_owner_is_the_user_or_the_key(self) -> None:
        assert owner_of(ANN) == owner_of(ANN_PHONE) == "user:usr_ann"
        assert owner_of(ROBOT) == "key:key_r1"

    def test_create_update_list_delete(self, store: ConversationStore) -> None:
        msgs: list[dict[str, Any]] = [
            {"role": "user", "content": "Hi 你好"},
            {"role": "assistant", "content": "Hello [1]", "citations": [{"index": 1, "title": "T"}]}]
        conv = store.create(ANN, title="  First   question \n", model="m", messages=msgs)
        assert conv.id.startswith("conv_") and conv.title == "First question" and conv.messages == msgs
        # The same person from another key sees it; nobody else does.
        assert [c.id for c in store.list(ANN_PHONE)] == [conv.id]
        assert store.list(BOB) == [] and store.list(ROBOT) == []
        updated = store.update(ANN_PHONE, conv.id, messages=[*msgs, {"role": "user", "content": "more"}])
        assert len(updated.messages) == 3 and updated.title == "First question" and updated.model == "m"
        assert updated.updated_at > conv.updated_at and updated.created_at == conv.created_at
        second = store.create(ANN, title="")
        assert second.title == "New chat" and second.model is None and second.messages == []
        assert [c.id for c in store.list(ANN)] == [second.id, conv.id]  # most recent first
        assert [c.id for c in store.list(ANN, limit=1)] == [second.id]
        renamed = store.update(ANN, conv.id, title="Renamed", model="other")
        assert (renamed.title, renamed.model, renamed.messages) == ("Renamed", "other", updated.messages)
        assert [c.id for c in store.list(ANN)] == [conv.id, second.id]
        store.delete(ANN, conv.id)
        with pytest.raises(NotFound):
            store.get(ANN, conv.id)
        with pytest.raises(NotFound):
            store.delete(ANN, conv.id)

    def test_someone_elses_conversation_is_not_found_and_unchanged(self, store: ConversationStore) -> None:
        conv = store.create(ANN, title="secret plans", messages=[{"role": "user", "content": "x"}])
        for call in (lambda: store.get(BOB, conv.id), lambda: store.update(BOB, conv.id, title="mine"),
                     lambda: store.delete(BOB, conv.id), lambda: store.get(ROBOT, conv.id),
                     lambda: store.get(BOB, "conv_doesnotexist")):
            with pytest.raises(NotFound):
                call()
        assert store.get(ANN, conv.id).title == "secret plans"

    def test_limits(self, store: ConversationStore) -> None:
        with pytest.raises(InvalidRequest):
            store.create(ANN, title="x", messages=[{"role": "user", "content": "m"}] * (MAX_MESSAGES + 1))
        with pytest.raises(InvalidRequest):
            store.create(ANN, title="x", messages=[{"role": "user", "content": "m" * 2_100_000}])
        assert store.create(ANN, title="t" * 500).title == "t" * 200

    def test_at_most_so_many_conversations_per_owner(self, store: ConversationStore,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        import inhouse.store.conversations as rules

        assert MAX_CONVERSATIONS_PER_OWNER > 3
        monkeypatch.setattr(rules, "MAX_CONVERSATIONS_PER_OWNER", 3)
        for i in range(3):
            store.create(ANN, title=f"c{i}")
        with pytest.raises(InvalidRequest) as err:
            store.create(ANN_PHONE, title="one too many")
        assert err.value.code == "too_many_conversations"
        store.create(BOB, title="another owner's count is their own")
