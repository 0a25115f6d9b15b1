"""ConversationStore: per-owner chat history; another owner's id behaves exactly like an unknown one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.errors import InvalidRequest, NotFound
from inhouse.store.conversations import MAX_MESSAGES, ConversationStore, owner_of
from inhouse.store.sqlite.conversations import SqliteConversationStore
from inhouse.store.sqlite.inhouse_db import open_inhouse_db
from inhouse.types import Actor

ANN = Actor("key_a1", "ann laptop", user_id="usr_ann")
ANN_PHONE = Actor("key_a2", "ann phone", user_id="usr_ann")
BOB = Actor("key_b1", "bob", user_id="usr_bob")
ROBOT = Actor("key_r1", "robot")  # a key bound to no user


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConversationStore]:
    db = open_inhouse_db(tmp_path / "c.db")
    clock = iter(float(t) for t in range(1000, 2000))
    yield SqliteConversationStore(db, clock=lambda: next(clock))
    db.close()


def test_owner_is_the_user_or_the_key() -> None:
    assert owner_of(ANN) == owner_of(ANN_PHONE) == "user:usr_ann"
    assert owner_of(ROBOT) == "key:key_r1"


def test_create_update_list_delete(store: ConversationStore) -> None:
    msgs = [{"role": "user", "content": "Hi 你好"}, {"role": "assistant", "content": "Hello [1]",
                                                     "citations": [{"index": 1, "title": "T"}]}]
    conv = store.create(ANN, title="  First   question \n", model="m", messages=msgs)
    assert conv.id.startswith("conv_") and conv.title == "First question" and conv.messages == msgs
    # The same person from another key sees it; nobody else does.
    assert [c.id for c in store.list(ANN_PHONE)] == [conv.id]
    assert store.list(BOB) == [] and store.list(ROBOT) == []
    updated = store.update(ANN_PHONE, conv.id, messages=[*msgs, {"role": "user", "content": "more"}])
    assert len(updated.messages) == 3 and updated.title == "First question" and updated.model == "m"
    assert updated.updated_at > conv.updated_at
    second = store.create(ANN, title="")
    assert second.title == "New chat"
    assert [c.id for c in store.list(ANN)] == [second.id, conv.id]  # most recent first
    store.delete(ANN, conv.id)
    with pytest.raises(NotFound):
        store.get(ANN, conv.id)


def test_someone_elses_conversation_is_not_found_and_unchanged(store: ConversationStore) -> None:
    conv = store.create(ANN, title="secret plans", messages=[{"role": "user", "content": "x"}])
    for call in (lambda: store.get(BOB, conv.id), lambda: store.update(BOB, conv.id, title="mine"),
                 lambda: store.delete(BOB, conv.id), lambda: store.get(ROBOT, conv.id),
                 lambda: store.get(BOB, "conv_doesnotexist")):
        with pytest.raises(NotFound):
            call()
    assert store.get(ANN, conv.id).title == "secret plans"


def test_limits(store: ConversationStore) -> None:
    with pytest.raises(InvalidRequest):
        store.create(ANN, title="x", messages=[{"role": "user", "content": "m"}] * (MAX_MESSAGES + 1))
    with pytest.raises(InvalidRequest):
        store.create(ANN, title="x", messages=[{"role": "user", "content": "m" * 2_100_000}])
    assert store.create(ANN, title="t" * 500).title == "t" * 200
