"""Retrieval never returns what the actor may not see, and fills top_k from what it may (hypothesis)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inhouse.errors import InvalidRequest, NotFound
from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope, Acl, may_see
from inhouse.kb.document import Chunk
from inhouse.kb.index.protocol import IndexStore, NewDocument, Scored
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.retrieve import Retriever, rrf
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

GROUPS = ["hr", "finance", "it", "sales"]
KEYS = ["key_a", "key_b", "key_c"]
WORDS = ["leave", "revenue", "salary", "policy", "vpn", "budget", "canary"]
EMB = FakeEmbedder(32)


def _acl(draw: st.DrawFn) -> Acl:
    return Acl(groups=frozenset(draw(st.sets(st.sampled_from(GROUPS), max_size=2))),
               keys=frozenset(draw(st.sets(st.sampled_from(KEYS), max_size=1))))


@st.composite
def corpora(draw: st.DrawFn) -> list[tuple[Acl, list[tuple[Acl | None, Label, list[str]]]]]:
    cols = []
    for _ in range(draw(st.integers(1, 3))):
        docs = []
        for _ in range(draw(st.integers(1, 3))):
            doc_acl = _acl(draw) if draw(st.booleans()) else None  # None: the collection's list applies
            label = draw(st.sampled_from(list(Label)))
            texts = [" ".join(draw(st.lists(st.sampled_from(WORDS), min_size=2, max_size=4)))
                     for _ in range(draw(st.integers(1, 3)))]
            docs.append((doc_acl, label, texts))
        cols.append((_acl(draw), docs))
    return cols


actors = st.builds(
    lambda role, key, groups: Actor(key_id=key, name="x", role=role, groups=frozenset(groups)),
    st.sampled_from(["member", "member", "admin"]), st.sampled_from([*KEYS, "key_z"]),
    st.sets(st.sampled_from(GROUPS), max_size=2),
)


@pytest.fixture
def tmp_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("acl")


Stores = tuple[Callable[[], IndexStore], Callable[[IndexStore], None]]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    """(a new empty store, its release) for every example: SQLite in memory, or one PostgreSQL store emptied."""
    if request.param == "sqlite":
        yield (lambda: SqliteIndexStore(":memory:", dim=EMB.dim)), (lambda s: s.close())
        return
    from inhouse.kb.index.postgres import PostgresIndexStore

    pg = PostgresIndexStore(request.getfixturevalue("postgres_url"), dim=EMB.dim)

    def empty() -> Any:
        pg._db.execute("TRUNCATE kb_chunks, kb_files, kb_documents, kb_acl, kb_collections")
        return pg

    yield empty, (lambda s: None)
    pg.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corpus=corpora(), actor=actors, query=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
       top_k=st.integers(1, 8))
def test_actor_never_sees_a_forbidden_chunk_and_top_k_is_filled(stores: Stores, corpus: list, actor: Actor,
                                                                query: list[str], top_k: int) -> None:
    new_store, release = stores
    store = new_store()
    try:
        visible_chunks: set[str] = set()
        n = 0
        for ci, (col_acl, docs) in enumerate(corpus):
            col = store.create_collection(f"c{ci}", acl=col_acl)
            for doc_acl, label, texts in docs:
                n += 1
                data = f"{n}:{texts}".encode()
                chunks = [Chunk(index=i, text=t, content=f"{n}.{i} {t}", token_count=3, kind="paragraph")
                          for i, t in enumerate(texts)]
                rec = store.put_document(NewDocument(col.id, f"d{n}", hashlib.sha256(data).hexdigest(), label,
                                                     doc_acl, "t", "f", "text/plain", data, chunks,
                                                     EMB.embed_passages(texts))).document
                if may_see(AccessScope.of(actor), col_acl, doc_acl, label):
                    visible_chunks |= {c.id for c in store.document_chunks(rec.id)}
        hits = Retriever(store, EMB).retrieve(actor, " ".join(query), top_k=top_k)
        got = {h.chunk.id for h in hits}
        assert got <= visible_chunks
        # Every visible chunk is a vector candidate, so top_k is filled whenever enough are visible.
        assert len(hits) == min(top_k, len(visible_chunks))
    finally:
        release(store)


def test_actor_is_required_and_query_bounded() -> None:
    store = SqliteIndexStore(":memory:", dim=EMB.dim)
    try:
        r = Retriever(store, EMB)
        with pytest.raises(TypeError):
            r.retrieve(None, "q")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest):
            r.retrieve(Actor("key_a", "a"), "   ")
        with pytest.raises(InvalidRequest):
            r.retrieve(Actor("key_a", "a"), "q", top_k=0)
    finally:
        store.close()


def test_named_collection_of_another_department_is_not_found() -> None:
    store = SqliteIndexStore(":memory:", dim=EMB.dim)
    try:
        store.create_collection("finance", acl=Acl(groups=frozenset({"finance"})))
        r = Retriever(store, EMB)
        hr = Actor("key_h", "h", groups=frozenset({"hr"}))
        for ref in ("finance", "doesnotexist"):
            with pytest.raises(NotFound) as exc:
                r.retrieve(hr, "revenue", collections=[ref])
            assert exc.value.message == f"No collection '{ref}'."
        assert r.retrieve(Actor("key_f", "f", groups=frozenset({"finance"})), "revenue", ["finance"]) == []
    finally:
        store.close()


def test_rrf_fuses_and_is_deterministic() -> None:
    a = [Scored("x", 3), Scored("y", 2), Scored("z", 1)]
    b = [Scored("y", 0.9), Scored("w", 0.8)]
    fused = rrf([a, b], k=60)
    assert [c for c, _, _ in fused] == ["y", "x", "w", "z"]
    assert fused[0][2] == [2, 1]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
