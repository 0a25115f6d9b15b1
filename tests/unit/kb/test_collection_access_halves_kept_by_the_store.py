"""A collection's ``PATCH`` that gives one half of its access list (groups or keys) keeps the other half as the store's
write transaction finds it, on SQLite and PostgreSQL: two admins changing one half each both stand. It was merged
from a read before the write, so one admin's acknowledged removal of a group was undone by another's added key.

The interleaving is made by running the other admin's change just before the store's ``update_collection``."""

from __future__ import annotations

from typing import Any

import pytest

from inhouse.kb.access import Acl
from inhouse.kb.index.protocol import IndexStore
from inhouse.kb.service import KnowledgeBase
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

ADMIN = Actor(key_id="key_admin", name="admin", role="admin")


@pytest.fixture
def kb(index_store: IndexStore) -> KnowledgeBase:
    kb = KnowledgeBase(index_store, FakeEmbedder())
    kb.create_collection(ADMIN, "shared", groups=["eng"], keys=["key_old"])
    return kb


def _meanwhile(monkeypatch: pytest.MonkeyPatch, kb: KnowledgeBase, **change: Any) -> None:
    """Another admin's ``update_collection(**change)``, committed just before the next write of a collection."""
    real = kb.store.update_collection
    done: list[int] = []

    def update(*args: Any, **kwargs: Any) -> Any:
        if not done:
            done.append(1)
            kb.update_collection(ADMIN, "shared", **change)
        return real(*args, **kwargs)

    monkeypatch.setattr(kb.store, "update_collection", update)


def test_a_group_removed_meanwhile_stays_removed_when_keys_are_changed(
        kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    _meanwhile(monkeypatch, kb, groups=[])
    col = kb.update_collection(ADMIN, "shared", keys=["key_new"])
    assert col.acl == Acl(keys=frozenset({"key_new"})) == kb.store.get_collection(col.id).acl


def test_a_key_added_meanwhile_stays_when_groups_are_changed(
        kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    _meanwhile(monkeypatch, kb, keys=["key_old", "key_new"])
    col = kb.update_collection(ADMIN, "shared", groups=["eng", "ops"], description="shared drive")
    assert col.acl == Acl(groups=frozenset({"eng", "ops"}), keys=frozenset({"key_old", "key_new"}))
    assert col.description == "shared drive"


def test_a_deleted_groups_name_taken_off_meanwhile_is_not_written_back(
        kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    real = kb.store.update_collection

    def update(*args: Any, **kwargs: Any) -> Any:
        kb.forget_group("eng")
        return real(*args, **kwargs)

    monkeypatch.setattr(kb.store, "update_collection", update)
    col = kb.update_collection(ADMIN, "shared", keys=["key_new"])
    assert col.acl == Acl(keys=frozenset({"key_new"}))


def test_both_halves_or_the_whole_list_replace_it(kb: KnowledgeBase) -> None:
    col = kb.update_collection(ADMIN, "shared", groups=[" ops "], keys=[])
    assert col.acl == Acl(groups=frozenset({"ops"}))
    assert kb.store.update_collection(col.id, acl=Acl(keys=frozenset({"k"}))).acl == Acl(keys=frozenset({"k"}))
    assert kb.store.update_collection(col.id, description="d").acl == Acl(keys=frozenset({"k"}))  # no list: kept
