"""The access rule as SQL, on SQLite and on PostgreSQL, against ``kb.access.may_see`` (hypothesis): both forms of it
(``allowed_docs``, which lists a caller's documents from what names them, and ``document_condition``, which tests
given rows), and the reads built on them, a member's page of a collection among them. And what made them fast: a
member's page is one store read, and the allowed documents are reached through the access indexes, not by testing
every document of the collection."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope, Acl, may_see
from inhouse.kb.document import Chunk
from inhouse.kb.index.postgres import access as pg_access
from inhouse.kb.index.protocol import IndexStore, NewDocument, SearchFilters
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.index.sqlite import access as sqlite_access
from inhouse.kb.index.sqlite import keyword as sqlite_keyword
from inhouse.kb.index.sqlite.keyword import PER_MATCH_MAX
from inhouse.kb.service import KnowledgeBase
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.types import Actor

GROUPS = ["hr", "finance", "it"]
KEYS = ["key_a", "key_b"]
DIM = 8


def _acl(draw: st.DrawFn) -> Acl:
    return Acl(groups=frozenset(draw(st.sets(st.sampled_from(GROUPS), max_size=2))),
               keys=frozenset(draw(st.sets(st.sampled_from(KEYS), max_size=1))))


Corpus = list[tuple[Acl, list[tuple[str, Acl | None, Label]]]]


@st.composite
def corpora(draw: st.DrawFn) -> Corpus:
    cols = []
    for _ in range(draw(st.integers(1, 3))):
        docs = []
        paths = draw(st.lists(st.sampled_from(["a/1", "a/2", "B/3", "b/4", "b/5", "c", "c/6"]), min_size=1,
                              max_size=5, unique=True))
        for path in paths:
            # None: the collection's list applies; an own list may name nobody (then admins only).
            doc_acl = _acl(draw) if draw(st.booleans()) else None
            docs.append((path, doc_acl, draw(st.sampled_from(list(Label)))))
        cols.append((_acl(draw), docs))
    return cols


actors = st.builds(
    lambda role, key, groups: Actor(key_id=key, name="x", role=role, groups=frozenset(groups)),
    st.sampled_from(["member", "member", "member", "admin"]), st.sampled_from([*KEYS, "key_z"]),
    st.sets(st.sampled_from(GROUPS), max_size=2),
)


@st.composite
def filter_choices(draw: st.DrawFn) -> dict[str, Any]:
    """Which filters to apply: collections and documents as indexes into the corpus (ids exist only once built)."""
    return {
        "cols": draw(st.none() | st.sets(st.integers(0, 2), max_size=2)),
        "docs": draw(st.none() | st.sets(st.integers(0, 14), max_size=4)),
        "labels": draw(st.none() | st.sets(st.sampled_from(list(Label)), max_size=2)),
        "prefix": draw(st.none() | st.sampled_from(["a/", "b", "B", "c"])),
    }


Stores = tuple[Callable[[], IndexStore], str]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    """(a new empty store, its kind) for every example: SQLite in memory, or one PostgreSQL store emptied."""
    if request.param == "sqlite":
        made: list[IndexStore] = []

        def new() -> IndexStore:
            made.append(SqliteIndexStore(":memory:", dim=DIM))
            return made[-1]

        yield new, "sqlite"
        for s in made:
            s.close()
        return
    from inhouse.kb.index.postgres import PostgresIndexStore

    pg = PostgresIndexStore(request.getfixturevalue("postgres_url"), dim=DIM)

    def empty() -> IndexStore:
        pg._db.execute("TRUNCATE kb_chunks, kb_files, kb_documents, kb_acl, kb_collections")
        return pg

    yield empty, "postgresql"
    pg.close()


def _rows(store: Any, kind: str, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    if kind == "sqlite":
        return [tuple(r) for r in store._read(sql, params)]
    return [tuple(r.values()) for r in store._db.query(sql, params)]


def _put(store: IndexStore, col_id: str, path: str, acl: Acl | None, label: Label, n: int) -> str:
    data = f"{n}:{path}".encode()
    chunk = Chunk(index=0, text=f"text {n}", content=f"text {n}", token_count=2, kind="paragraph")
    vectors = np.ones((1, store.dim), dtype=np.float32)
    return store.put_document(NewDocument(col_id, path, hashlib.sha256(data).hexdigest(), label, acl, path, path,
                                          "text/plain", data, [chunk], vectors)).document.id


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corpus=corpora(), actor=actors, choice=filter_choices())
def test_both_forms_of_the_rule_and_the_reads_on_them_are_may_see(stores: Stores, corpus: Corpus, actor: Actor,
                                                                   choice: dict[str, Any]) -> None:
    new_store, kind = stores
    store = new_store()
    access = sqlite_access if kind == "sqlite" else pg_access
    scope = AccessScope.of(actor)
    docs: list[tuple[str, str, str, Label, bool]] = []  # (collection id, document id, path, label, may_see)
    cols = []
    for ci, (col_acl, entries) in enumerate(corpus):
        col = store.create_collection(f"c{ci}", acl=col_acl).id
        cols.append(col)
        for path, doc_acl, label in entries:
            doc = _put(store, col, path, doc_acl, label, len(docs))
            docs.append((col, doc, path, label, may_see(scope, col_acl, doc_acl, label)))

    filters = SearchFilters(
        collection_ids=None if choice["cols"] is None else frozenset(cols[i] for i in choice["cols"] if i < len(cols)),
        document_ids=None if choice["docs"] is None else frozenset(docs[i][1] for i in choice["docs"]
                                                                    if i < len(docs)),
        labels=None if choice["labels"] is None else frozenset(choice["labels"]),
        source_prefix=choice["prefix"])

    def passes(col: str, doc: str, path: str, label: Label) -> bool:
        return ((filters.collection_ids is None or col in filters.collection_ids)
                and (filters.document_ids is None or doc in filters.document_ids)
                and (filters.labels is None or label in filters.labels)
                and (filters.source_prefix is None or path.startswith(filters.source_prefix)))

    expected = sorted(doc for col, doc, path, label, seen in docs if seen and passes(col, doc, path, label))
    sql, params = access.allowed_docs(scope, filters, columns="d.id")
    listed = sorted(r[0] for r in _rows(store, kind, sql, params))
    assert listed == expected  # each allowed document once, nothing else
    where, params = access.document_condition(scope, filters)
    tested = sorted(r[0] for r in _rows(store, kind, f"SELECT d.id FROM kb_documents d JOIN kb_collections c"
                                                   f" ON c.pk = d.collection_pk WHERE {where}", params))
    assert tested == expected

    for _, doc, _, _, seen in docs:
        assert store.visible_document(scope, doc) is seen
    counts: dict[str, int] = {}
    for col, _, _, _, seen in docs:
        counts[col] = counts.get(col, 0) + seen
    assert store.visible_document_counts(scope, cols) == {c: n for c, n in counts.items() if n}
    # A page counts the visible documents only, in the order of the full listing.
    for col in cols:
        mine = [d.id for d in store.list_documents(col, limit=1000) if any(x[1] == d.id and x[4] for x in docs)]
        for limit in (1, 2, 3):
            pages = [[d.id for d in store.visible_documents(scope, col, limit=limit, offset=o)]
                     for o in range(0, len(mine) + limit, limit)]
            assert [d for page in pages for d in page] == mine
            assert all(len(p) == limit for p in pages[:len(mine) // limit])
        assert [d.id for d in store.visible_documents(scope, col, limit=1000)] == mine
        assert {d.id: d for d in store.visible_documents(scope, col, limit=1000)} == {
            d.id: d for d in store.list_documents(col, limit=1000) if d.id in mine}
    # Chunks by id: the per-row form.
    chunk_ids = [c.id for _, doc, _, _, _ in docs for c in store.document_chunks(doc)]
    seen_chunks = {c.id for _, doc, _, _, seen in docs if seen for c in store.document_chunks(doc)}
    assert {c.id for c in store.get_chunks(scope, chunk_ids)} == seen_chunks
    # A keyword search (every chunk holds "text"): on SQLite either way of filtering the matches (each match's
    # document tested, or the matches against the list of allowed documents) finds the allowed chunks only.
    allowed_chunks = {c.id for col, doc, path, label, seen in docs if seen and passes(col, doc, path, label)
                      for c in store.document_chunks(doc)}
    for per_match_max in ((0, 10**6) if kind == "sqlite" else (None,)):
        if per_match_max is not None:
            sqlite_keyword.PER_MATCH_MAX = per_match_max
        try:
            found = {h.chunk_id for h in store.keyword_search(scope, "text", filters, 1000)}
        finally:
            sqlite_keyword.PER_MATCH_MAX = PER_MATCH_MAX
        assert found == allowed_chunks, per_match_max


class CountingStore:
    """The store, with a note of every method called on it."""

    def __init__(self, store: IndexStore) -> None:
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if callable(attr):
            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                return attr(*args, **kwargs)
            return counted
        return attr


def test_a_members_page_of_a_collection_is_one_read_of_the_store(index_store: IndexStore) -> None:
    """It was one ``visible_document`` per document of the collection (one round trip each on PostgreSQL: 2 s for a
    page of a member who saw 37 of 3,059 documents)."""
    col = index_store.create_collection("wiki", acl=Acl(groups=frozenset({"staff"})))
    for i in range(40):
        own = Acl(groups=frozenset({"staff"})) if i % 10 == 0 else Acl(groups=frozenset({"hr"}))
        _put(index_store, col.id, f"p{i:02d}.md", own, Label.INTERNAL, i)
    counting = CountingStore(index_store)
    kb = KnowledgeBase(counting, FakeEmbedder())  # type: ignore[arg-type]
    member = Actor("key_m", "m", groups=frozenset({"staff"}))
    counting.calls.clear()
    page = kb.list_documents(member, "wiki", limit=2, offset=1)
    assert [d.source_path for d in page] == ["p10.md", "p20.md"]
    assert counting.calls == ["get_collection", "visible_documents"]


def _member_scope() -> AccessScope:
    return AccessScope.of(Actor("key_m", "m", groups=frozenset({"staff", "eng"})))


def test_sqlite_reaches_the_allowed_documents_through_the_access_indexes() -> None:
    """Before: ``SCAN d`` (every document of the index) with two correlated lookups of ``kb_acl`` each."""
    store = SqliteIndexStore(":memory:", dim=DIM)
    try:
        sql, params = sqlite_access.allowed_docs(_member_scope(), SearchFilters())
        plan = [str(r[3]) for r in store._read("EXPLAIN QUERY PLAN " + sql, params)]
        assert not [p for p in plan if p.startswith("SCAN d")], plan
        assert any("kb_documents_access" in p for p in plan) and any("kb_acl_principal" in p for p in plan), plan
        # A member's page walks the collection's documents in path order: no sort of all of them.
        where, params = sqlite_access.document_condition(_member_scope(), SearchFilters())
        plan = [str(r[3]) for r in store._read(
            "EXPLAIN QUERY PLAN SELECT d.id FROM kb_documents d JOIN kb_collections c ON c.pk = d.collection_pk"
            f" WHERE c.id = :col AND {where} ORDER BY d.source_path LIMIT 10", {**params, "col": "col_x"})]
        assert not [p for p in plan if "TEMP B-TREE" in p or p.startswith("SCAN d")], plan
    finally:
        store.close()


@pytest.mark.integration
def test_postgresql_reaches_the_allowed_documents_through_the_access_indexes(postgres_url: str) -> None:
    from inhouse.kb.index.postgres import PostgresIndexStore

    store = PostgresIndexStore(postgres_url, dim=DIM)
    try:
        sql, params = pg_access.allowed_docs(_member_scope(), SearchFilters())
        with store._db.transaction() as conn:
            # An empty table is read whole whatever the indexes: ask what the plan would be were that costly.
            conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r["QUERY PLAN"] for r in conn.execute("EXPLAIN " + sql, params).fetchall())
        # The document lists naming the caller come from the principal index (the documents without a list of
        # their own from an index on their collection: on empty tables the planner cannot tell which one).
        assert "Bitmap Index Scan on kb_acl_principal" in plan, plan
        assert "Seq Scan on kb_documents" not in plan and "kb_documents_pkey" not in plan, plan
    finally:
        store.close()
