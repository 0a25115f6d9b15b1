"""The resident vector copy of ``PostgresIndexStore`` follows writes made by other processes (another store on the
same database stands for another node): added, replaced and deleted documents; a writer whose transaction began
first but commits last (sequence numbers commit out of order); and a change log pruned past a searcher."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.index.postgres import PostgresIndexStore
from inhouse.kb.index.postgres.resident import prune_log
from inhouse.kb.index.postgres.terms import vector_literal
from inhouse.kb.index.protocol import SearchFilters
from inhouse.testing.index_contract import ADMIN, DIM, EMBED, HR, make_doc

pytestmark = pytest.mark.integration


@pytest.fixture
def stores(postgres_url: str) -> Iterator[tuple[PostgresIndexStore, PostgresIndexStore]]:
    searcher, writer = PostgresIndexStore(postgres_url, dim=DIM), PostgresIndexStore(postgres_url, dim=DIM)
    yield searcher, writer
    searcher.close()
    writer.close()


def _nearest(store: PostgresIndexStore, text: str, k: int = 3, scope: AccessScope = ADMIN) -> list[str]:
    hits = store.vector_search(scope, EMBED.embed_query(text), SearchFilters(), k)
    return [c.text for c in store.get_chunks(ADMIN, [h.chunk_id for h in hits])]


def test_a_searcher_sees_another_nodes_adds_replacements_and_deletions(
        stores: tuple[PostgresIndexStore, PostgresIndexStore]) -> None:
    searcher, writer = stores
    col = writer.create_collection("hr", acl=Acl(groups=frozenset({"hr"}))).id
    writer.put_document(make_doc(col, "a.txt", ["annual leave is 15 days", "sick leave needs a note"]))
    assert _nearest(searcher, "annual leave is 15 days", 1) == ["annual leave is 15 days"]  # first load
    added = writer.put_document(make_doc(col, "b.txt", ["travel budget is 300 per night"])).document
    assert _nearest(searcher, "travel budget is 300 per night", 1) == ["travel budget is 300 per night"]
    assert _nearest(searcher, "travel budget is 300 per night", 1, HR) == ["travel budget is 300 per night"]
    writer.put_document(make_doc(col, "b.txt", ["travel budget is 250 per night"]))  # replaced
    assert "travel budget is 300 per night" not in _nearest(searcher, "travel budget is 300 per night", 5)
    assert _nearest(searcher, "travel budget is 250 per night", 1) == ["travel budget is 250 per night"]
    writer.delete_document(added.id)
    assert not any("travel" in t for t in _nearest(searcher, "travel budget is 250 per night", 5))
    assert searcher._resident is not None and searcher._resident.rows == 2


def test_a_writer_that_commits_after_a_later_one_is_not_missed(
        postgres_url: str, stores: tuple[PostgresIndexStore, PostgresIndexStore]) -> None:
    """T1 writes first (lower sequence numbers) but commits after T2; a sync between the two commits must still
    pick T1's chunk up afterwards."""
    searcher, writer = stores
    col = writer.create_collection("hr", acl=Acl()).id
    writer.put_document(make_doc(col, "a.txt", ["annual leave is 15 days"]))
    assert _nearest(searcher, "annual leave is 15 days", 1) == ["annual leave is 15 days"]
    slow_text = "parental leave is 20 weeks"
    with psycopg.connect(postgres_url) as t1:  # an open transaction: T1
        row = t1.execute(
            "INSERT INTO kb_documents (id, collection_pk, source_path, sha256, label_rank, title, filename, mime,"
            " created_at, size_bytes, chunk_count) SELECT 'doc_slow', pk, 'slow.txt', 'x', 1, 'Slow', 'slow.txt',"
            " 'text/plain', 0, 1, 1 FROM kb_collections WHERE id = %s RETURNING pk", (col,)).fetchone()
        assert row is not None
        doc_pk = row[0]
        t1.execute("INSERT INTO kb_chunks (id, document_pk, ordinal, content, token_count, text, tsv, embedding)"
                   " VALUES ('chk_slow', %s, 0, %s, 5, %s, ''::tsvector, %s::vector)",
                   (doc_pk, slow_text, "Slow\n" + slow_text, vector_literal(EMBED.embed_passages([slow_text])[0])))
        writer.put_document(make_doc(col, "b.txt", ["travel budget is 300 per night"]))  # T2, committed
        assert _nearest(searcher, "travel budget is 300 per night", 1) == ["travel budget is 300 per night"]
        assert slow_text not in _nearest(searcher, slow_text, 3)
        t1.commit()
    assert _nearest(searcher, slow_text, 1) == [slow_text]


def test_a_searcher_behind_a_pruned_log_reloads_everything(
        stores: tuple[PostgresIndexStore, PostgresIndexStore]) -> None:
    searcher, writer = stores
    col = writer.create_collection("hr", acl=Acl()).id
    writer.put_document(make_doc(col, "a.txt", ["annual leave is 15 days"]))
    assert _nearest(searcher, "annual leave is 15 days", 1) == ["annual leave is 15 days"]
    for i in range(6):
        writer.put_document(make_doc(col, f"n{i}.txt", [f"note number {i} about printers"]))
    with writer._db.transaction() as c:
        prune_log(c, keep=2)
        assert c.execute("SELECT count(*) AS n FROM kb_vec_log").fetchone()["n"] == 2
        pruned = int(c.execute("SELECT value FROM kb_meta WHERE key = 'vec_log_pruned'").fetchone()["value"])
    assert pruned > 0
    assert _nearest(searcher, "note number 1 about printers", 1) == ["note number 1 about printers"]
    assert searcher._resident is not None and searcher._resident.rows == 7


def test_resident_and_hnsw_agree_on_the_nearest_rows(postgres_url: str) -> None:
    """The copy is read in pgvector's binary form: the same vectors give the same ranking as the index in SQL."""
    exact = PostgresIndexStore(postgres_url, dim=DIM)
    walked = PostgresIndexStore(postgres_url, dim=DIM, resident_max_chunks=0, session={"hnsw.ef_search": "400"})
    try:
        col = exact.create_collection("hr", acl=Acl()).id
        for d in range(5):
            exact.put_document(make_doc(col, f"d{d}.txt", [f"document {d} line {i} about topic {i % 7}"
                                                           for i in range(30)]))
        rng = np.random.default_rng(1)
        for _ in range(5):
            q = rng.standard_normal(DIM).astype(np.float32)
            a = exact.vector_search(ADMIN, q, SearchFilters(), 10)
            b = walked.vector_search(ADMIN, q, SearchFilters(), 10)
            assert [h.chunk_id for h in a] == [h.chunk_id for h in b]
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
    finally:
        exact.close()
        walked.close()


def test_a_truncated_index_is_reloaded(stores: tuple[PostgresIndexStore, PostgresIndexStore]) -> None:
    """TRUNCATE fires no row triggers: the searcher's copy must not keep the emptied tables' rows."""
    searcher, writer = stores
    col = writer.create_collection("hr", acl=Acl()).id
    writer.put_document(make_doc(col, "a.txt", ["annual leave is 15 days", "sick leave needs a note"]))
    assert len(_nearest(searcher, "annual leave", 5)) == 2
    writer._db.execute("TRUNCATE kb_chunks, kb_files, kb_documents, kb_acl, kb_collections")
    col = writer.create_collection("hr", acl=Acl()).id
    writer.put_document(make_doc(col, "b.txt", ["travel budget is 300 per night"]))
    assert _nearest(searcher, "annual leave", 5) == ["travel budget is 300 per night"]
    assert searcher._resident is not None and searcher._resident.rows == 1


def test_an_index_past_the_size_limit_is_searched_on_hnsw_and_counted_again_later(postgres_url: str) -> None:
    now = [1000.0]
    small = PostgresIndexStore(postgres_url, dim=DIM, resident_max_chunks=3, clock=lambda: now[0])
    try:
        col = small.create_collection("hr", acl=Acl()).id
        small.put_document(make_doc(col, "a.txt", ["annual leave is 15 days", "sick leave needs a note"]))
        assert _nearest(small, "annual leave is 15 days", 1) == ["annual leave is 15 days"]
        assert small._resident is not None and small._resident.rows == 2
        small.put_document(make_doc(col, "b.txt", ["travel budget is 300 per night", "hotels need approval"]))
        assert _nearest(small, "travel budget is 300 per night", 1) == ["travel budget is 300 per night"]  # HNSW
        assert small._resident.rows == 0 and not small._resident.in_use()
        assert len(small.vector_search(ADMIN, EMBED.embed_query("leave"), SearchFilters(), 10)) == 4
        small.delete_document(small.list_documents(col)[0].id)
        now[0] += 601  # counted again: back under the limit, copied again
        assert len(_nearest(small, "hotels need approval", 5)) == 2
        assert small._resident.in_use() and small._resident.rows == 2
    finally:
        small.close()
