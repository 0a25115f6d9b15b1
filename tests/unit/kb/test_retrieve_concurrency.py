"""The keyword query runs beside the embedding and the vector query, not after them; its errors still reach the
caller, and ``search_threads=0`` runs it inline."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from tinyindex import put_texts

from inhouse.errors import StorageFull
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.index.protocol import Scored, SearchFilters
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.retrieve import Retriever
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

ADMIN = Actor("key_admin", "admin", role="admin")
EMB = FakeEmbedder(64)


class Rendezvous(SqliteIndexStore):
    """A store whose keyword query waits until the vector query has started: only a retriever that runs them at
    the same time gets an answer (the wait times out otherwise)."""

    def __init__(self) -> None:
        super().__init__(":memory:", dim=EMB.dim)
        self.vector_started = threading.Event()
        self.keyword_threads: list[str] = []

    def keyword_search(self, scope: AccessScope, query: str, filters: SearchFilters, limit: int) -> list[Scored]:
        self.keyword_threads.append(threading.current_thread().name)
        if not self.vector_started.wait(timeout=5):
            raise AssertionError("the keyword query ran alone: the vector query never started beside it")
        return super().keyword_search(scope, query, filters, limit)

    def vector_search(self, scope: AccessScope, vector: np.ndarray, filters: SearchFilters,
                      limit: int) -> list[Scored]:
        self.vector_started.set()
        return super().vector_search(scope, vector, filters, limit)


def indexed(store: SqliteIndexStore) -> SqliteIndexStore:
    col = store.create_collection("c", acl=Acl()).id
    put_texts(store, col, "leave.md", ["annual leave is 25 days", "sick leave needs a note"], EMB)
    return store


def test_keyword_and_vector_queries_run_at_the_same_time() -> None:
    store = indexed(Rendezvous())
    retriever = Retriever(store, EMB)
    try:
        hits, _ = retriever.retrieve_scored(ADMIN, "annual leave", alternates=["holiday days"])
        assert hits and hits[0].chunk.content == "annual leave is 25 days"
        assert len(store.keyword_threads) == 2 and all(n.startswith("kb-keyword") for n in store.keyword_threads)
    finally:
        retriever.close()
        store.close()


def test_a_keyword_query_error_reaches_the_caller() -> None:
    class Full(SqliteIndexStore):
        def keyword_search(self, *args: Any) -> list[Scored]:
            raise StorageFull("the disk is full")

    store = indexed(Full(":memory:", dim=EMB.dim))
    retriever = Retriever(store, EMB)
    try:
        with pytest.raises(StorageFull):
            retriever.retrieve(ADMIN, "annual leave")
    finally:
        retriever.close()
        store.close()


def test_without_threads_the_keyword_query_runs_inline() -> None:
    store = indexed(SqliteIndexStore(":memory:", dim=EMB.dim))
    calls: list[str] = []
    original = store.keyword_search

    def recorded(*args: Any) -> list[Scored]:
        calls.append(threading.current_thread().name)
        return original(*args)

    store.keyword_search = recorded  # type: ignore[method-assign]
    retriever = Retriever(store, EMB, search_threads=0)
    try:
        assert retriever.retrieve(ADMIN, "sick leave")[0].chunk.content == "sick leave needs a note"
        assert calls == [threading.current_thread().name]
    finally:
        retriever.close()
        store.close()
