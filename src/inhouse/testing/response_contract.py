"""``ResponseStoreContract``: the conformance suite every ``ResponseStore`` passes. Subclass it and provide a
``store`` fixture: an empty store whose clock gives 1000.0, 1001.0, … on successive calls (``ticking_clock``),
and a ``capped`` fixture: the same with ``max_per_owner=3``."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from inhouse.errors import InvalidRequest, NotFound
from inhouse.store.responses import MAX_STORED_BYTES, ResponseStore
from inhouse.testing.conversation_contract import ANN, ANN_PHONE, BOB, ROBOT


def save(store: ResponseStore, actor: Any, rid: str, *, previous: str | None = None, text: str = "Hello") -> None:
    store.save(actor, response_id=rid, model="m", previous_id=previous,
               messages=[{"role": "user", "content": "Hi 你好"}, {"role": "assistant", "content": text}],
               input_items=[{"type": "message", "role": "user", "content": "Hi 你好"}],
               body={"id": rid, "object": "response", "output_text": text})


class ResponseStoreContract:
    @pytest.fixture
    def store(self) -> ResponseStore:  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture
    def capped(self) -> ResponseStore:  # pragma: no cover - overridden
        raise NotImplementedError

    def test_saved_as_given_and_read_back_by_the_same_owner(self, store: ResponseStore) -> None:
        save(store, ANN, "resp_1")
        save(store, ANN_PHONE, "resp_2", previous="resp_1", text="again 再见")
        got = store.get(ANN, "resp_2")  # the same person from another key
        assert (got.id, got.model, got.previous_id) == ("resp_2", "m", "resp_1")
        assert got.messages[-1] == {"role": "assistant", "content": "again 再见"}
        assert got.input_items == [{"type": "message", "role": "user", "content": "Hi 你好"}]
        assert got.body == {"id": "resp_2", "object": "response", "output_text": "again 再见"}
        assert store.get(ANN, "resp_1").created_at < got.created_at

    def test_another_owner_sees_nothing_and_cannot_delete(self, store: ResponseStore) -> None:
        save(store, ANN, "resp_1")
        save(store, ROBOT, "resp_r")
        for actor, rid in ((BOB, "resp_1"), (ROBOT, "resp_1"), (ANN, "resp_r"), (ANN, "resp_unknown")):
            with pytest.raises(NotFound):
                store.get(actor, rid)
            with pytest.raises(NotFound):
                store.delete(actor, rid)
        assert store.get(ANN, "resp_1").id == "resp_1" and store.get(ROBOT, "resp_r").id == "resp_r"

    def test_delete(self, store: ResponseStore) -> None:
        save(store, ANN, "resp_1")
        store.delete(ANN_PHONE, "resp_1")
        with pytest.raises(NotFound):
            store.get(ANN, "resp_1")
        with pytest.raises(NotFound):
            store.delete(ANN, "resp_1")

    def test_too_large_is_refused_and_nothing_is_stored(self, store: ResponseStore) -> None:
        with pytest.raises(InvalidRequest) as e:
            save(store, ANN, "resp_big", text="x" * MAX_STORED_BYTES)
        assert e.value.param == "store"
        with pytest.raises(NotFound):
            store.get(ANN, "resp_big")

    def test_the_oldest_beyond_the_cap_are_dropped_per_owner(self, capped: ResponseStore) -> None:
        for i in range(5):
            save(capped, ANN, f"resp_a{i}")
        save(capped, BOB, "resp_b0")
        kept = []
        for i in range(5):
            with contextlib.suppress(NotFound):
                kept.append(capped.get(ANN, f"resp_a{i}").id)
        assert kept == ["resp_a2", "resp_a3", "resp_a4"]
        assert capped.get(BOB, "resp_b0").id == "resp_b0"  # another owner's cap is their own
