"""``PostgresIndexStore`` passes the index store conformance suite on a local PostgreSQL with pgvector, plus the
PostgreSQL-specific guarantees: k rows always (past the HNSW scan limit), and the dimension check."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest

from inhouse.errors import InvalidRequest
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.index.postgres import PostgresIndexStore
from inhouse.kb.index.postgres.terms import tsvector_literal
from inhouse.kb.index.protocol import SearchFilters
from inhouse.testing.index_contract import ADMIN, DIM, IndexStoreContract, make_doc, make_sections
from inhouse.types import Actor

pytestmark = pytest.mark.integration


class TestPostgresIndexStore(IndexStoreContract):
    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[PostgresIndexStore]:
        s = PostgresIndexStore(postgres_url, dim=DIM)
        yield s
        s.close()


class TestPostgresIndexStoreOnHnsw(IndexStoreContract):
    """The same contract with vector search walking pgvector's HNSW index instead of the resident copy."""

    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[PostgresIndexStore]:
        s = PostgresIndexStore(postgres_url, dim=DIM, resident_max_chunks=0)
        yield s
        s.close()


def test_dimension_mismatch_is_refused(postgres_url: str) -> None:
    PostgresIndexStore(postgres_url, dim=DIM).close()
    with pytest.raises(InvalidRequest, match="64-d"):
        PostgresIndexStore(postgres_url, dim=DIM * 2)


def test_k_rows_even_when_the_caller_sees_a_sliver(postgres_url: str) -> None:
    """The nearest rows all belong to a collection the caller may not see: the index scan must go on (and past its
    limit, fall back to an exact scan) until k allowed rows are found."""
    # A tiny scan budget, and the planner kept on the HNSW index (on so few rows it would rather sort them all).
    s = PostgresIndexStore(postgres_url, dim=DIM, resident_max_chunks=0, session={
        "hnsw.ef_search": "10", "hnsw.max_scan_tuples": "10", "enable_seqscan": "off", "enable_sort": "off"})
    try:
        big = s.create_collection("big", acl=Acl(groups=frozenset({"all"}))).id
        small = s.create_collection("small", acl=Acl(groups=frozenset({"few"}))).id
        rng = np.random.default_rng(3)
        for d in range(6):
            s.put_document(make_doc(big, f"b{d}.txt", [f"big doc {d} line {i}" for i in range(40)]))
        s.put_document(make_doc(small, "s.txt", [f"small doc line {i}" for i in range(7)]))
        few = AccessScope.of(Actor("key_few", "few", groups=frozenset({"few"})))
        q = rng.standard_normal(DIM).astype(np.float32)
        hits = s.vector_search(few, q / np.linalg.norm(q), SearchFilters(), 5)
        assert len(hits) == 5
        assert {c.source_path for c in s.get_chunks(ADMIN, [h.chunk_id for h in hits])} == {"s.txt"}
        assert len(s.vector_search(few, q, SearchFilters(), 50)) == 7  # all there is
    finally:
        s.close()


@pytest.mark.parametrize(("breakage", "problem"), [
    ("UPDATE kb_documents SET chunk_count = chunk_count + 1", "chunk_count_mismatch"),
    ("INSERT INTO kb_chunks (id, document_pk, ordinal, content, token_count, text, tsv, embedding) SELECT 'chk_x',"
     " 999999, 0, 'x', 1, 'x', ''::tsvector, embedding FROM kb_chunks LIMIT 1", "orphan_chunks"),
    ("DELETE FROM kb_files", "documents_without_file"),
])
def test_check_finds_inconsistencies(postgres_url: str, breakage: str, problem: str) -> None:
    """`inhouse kb check` on PostgreSQL: consistent after ordinary writes; each kind of damage is named."""
    s = PostgresIndexStore(postgres_url, dim=DIM)
    try:
        col = s.create_collection("hr", acl=Acl())
        s.put_document(make_doc(col.id, "a.txt", ["first chunk", "second chunk"]))
        assert s.check().ok
        with s._db.transaction() as c:  # damage the tables behind the store's back
            c.execute("ALTER TABLE kb_chunks DROP CONSTRAINT kb_chunks_document_pk_fkey")
            c.execute("ALTER TABLE kb_files DROP CONSTRAINT kb_files_document_pk_fkey")
            c.execute(breakage)
        broken = s.check()
        assert not broken.ok and set(broken.problems) == {problem}, broken.to_dict()
    finally:
        s.close()


def test_check_finds_keyword_terms_that_do_not_match_the_text(postgres_url: str) -> None:
    s = PostgresIndexStore(postgres_url, dim=DIM)
    try:
        col = s.create_collection("hr", acl=Acl())
        s.put_document(make_doc(col.id, "a.txt", ["annual leave policy", "travel budget"]))
        s._db.execute("UPDATE kb_chunks SET tsv = 'forged'::tsvector WHERE ordinal = 0")
        result = s.check()
        assert not result.ok and result.problems == {} and result.integrity == ["ok"], result.to_dict()
        assert result.fts_integrity == "1 chunks whose keyword terms (tsv) do not match their text"
    finally:
        s.close()


def test_check_reports_an_invalid_index(postgres_url: str) -> None:
    s = PostgresIndexStore(postgres_url, dim=DIM)
    try:
        s._db.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'kb_chunks_doc'::regclass")
        result = s.check()
        assert not result.ok and any("kb_chunks_doc is not valid" in i for i in result.integrity), result.to_dict()
    finally:
        s.close()


def test_the_most_frequent_keyword_terms_are_left_out_of_a_large_index(postgres_url: str) -> None:
    """Matching and ranking a term found in every chunk costs a read of every chunk and says nothing: past
    ``keyword_match_rows`` such terms leave the query (their share comes from ANALYZE's statistics)."""
    s = PostgresIndexStore(postgres_url, dim=DIM)
    small = PostgresIndexStore(postgres_url, dim=DIM, keyword_match_rows=10)
    try:
        col = s.create_collection("hr", acl=Acl()).id
        for d in range(4):
            lines = [f"everywhere line {d} {i}" for i in range(10)] + (["everywhere needle"] if d == 0 else [])
            s.put_document(make_doc(col, f"d{d}.txt", lines))
        s._db.execute("ANALYZE kb_chunks")
        for store in (s, small):
            store.term_shares.refresh()
        assert small.term_shares.share("everywhere") == pytest.approx(1.0)
        assert small.term_shares.share("everyw") == pytest.approx(1.0)  # as a prefix
        assert small.term_shares.rows == 41
        few = small.keyword_search(ADMIN, "everywhere needle", SearchFilters(), 10)
        assert [c.text for c in small.get_chunks(ADMIN, [h.chunk_id for h in few])] == ["everywhere needle"]
        assert len(s.keyword_search(ADMIN, "everywhere needle", SearchFilters(), 10)) == 10  # small: all terms
        # Every term frequent: the rarest one stays.
        assert len(small.keyword_search(ADMIN, "everywhere", SearchFilters(), 10)) == 10
    finally:
        small.close()
        s.close()


def test_keyword_terms_of_a_version_1_database_are_reweighed(postgres_url: str) -> None:
    """Migration 2 rewrites every chunk's terms with the title and section weights (and the parts of joined names):
    a database written before it searches and checks like a new one."""
    import re

    s = PostgresIndexStore(postgres_url, dim=DIM)
    try:
        col = s.create_collection("docs", acl=Acl()).id
        doc = s.put_document(make_sections(col, "os", [("Files > os.chmod(path, mode)", "Change the mode.")]))
        s.put_document(make_sections(col, "shutil", [("Modes", "chmod semantics, as chmod does, for each chmod.")]))
        with s._db.transaction() as c:  # the terms as version 1 wrote them: no weights, no parts of joined names
            for r in c.execute("SELECT pk, text FROM kb_chunks").fetchall():
                old = re.sub(r"(\d)[AB]", r"\1", tsvector_literal(r["text"]))
                c.execute("UPDATE kb_chunks SET tsv = %s::tsvector WHERE pk = %s", (old, r["pk"]))
            c.execute("DELETE FROM schema_migrations WHERE scope = 'kb' AND version = 2")
        assert s.check().fts_integrity != "ok"
    finally:
        s.close()
    s = PostgresIndexStore(postgres_url, dim=DIM)
    try:
        assert s.check().ok, s.check().to_dict()
        top = s.keyword_search(ADMIN, "chmod", SearchFilters(), 5)
        assert s.get_chunks(ADMIN, [top[0].chunk_id])[0].document_id == doc.document.id
    finally:
        s.close()


def test_keyword_terms_of_a_version_5_database_split_latin_from_cjk(postgres_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration 6 rewrites every chunk's terms: before it, CJK text right after Latin letters or digits
    ("X200路由器…") was one Latin term, and none of its CJK windows was indexed."""
    import re

    from inhouse.kb.index import keywords

    s = PostgresIndexStore(postgres_url, dim=DIM)
    try:
        col = s.create_collection("docs", acl=Acl()).id
        doc = s.put_document(make_doc(col, "router.txt", ["X200路由器的默认密码是admin。"]))
        s.put_document(make_doc(col, "other.txt", ["报销规则：出差住宿每晚不超过500元。"]))
        # The terms as version 5 wrote them: the Latin branch of the token went on through CJK characters.
        monkeypatch.setattr(keywords, "_TOKEN_RE", re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+"
                                                              r"|[^\W_][\w.\-]*"))
        with s._db.transaction() as c:
            for r in c.execute("SELECT pk, text, section FROM kb_chunks").fetchall():
                c.execute("UPDATE kb_chunks SET tsv = %s::tsvector WHERE pk = %s",
                          (tsvector_literal(r["text"], r["section"]), r["pk"]))
            c.execute("DELETE FROM schema_migrations WHERE scope = 'kb' AND version = 6")
        monkeypatch.undo()
        assert s.keyword_search(ADMIN, "路由器的默认密码", SearchFilters(), 5) == []
        assert s.check().fts_integrity != "ok"
    finally:
        s.close()
    s = PostgresIndexStore(postgres_url, dim=DIM)
    try:
        assert s.check().ok, s.check().to_dict()
        top = s.keyword_search(ADMIN, "路由器的默认密码", SearchFilters(), 5)
        assert [c.document_id for c in s.get_chunks(ADMIN, [h.chunk_id for h in top])] == [doc.document.id]
    finally:
        s.close()


def test_a_term_found_nowhere_does_not_leave_the_frequent_one_out(postgres_url: str) -> None:
    """Past ``keyword_match_rows`` the frequent terms leave the query; when the rarer terms kept (here a word in no
    chunk, unknown to the statistics) match nothing, the rarest term left out answers instead of nothing."""
    s = PostgresIndexStore(postgres_url, dim=DIM, keyword_match_rows=10)
    try:
        col = s.create_collection("hr", acl=Acl()).id
        s.put_document(make_doc(col, "vpn.txt", [f"wireguard tunnel note {i}" for i in range(20)]))
        s.put_document(make_doc(col, "travel.txt", [f"travel expense rule {i}" for i in range(10)]))
        s._db.execute("ANALYZE kb_chunks")
        s.term_shares.refresh()
        assert s.term_shares.share("wireguard") == pytest.approx(2 / 3)
        assert s.term_shares.share("handshakes") is None
        assert len(s.keyword_search(ADMIN, "wireguard handshakes", SearchFilters(), 30)) == 20
        assert s.keyword_search(ADMIN, "handshakes", SearchFilters(), 30) == []
    finally:
        s.close()


def test_keyword_terms_of_a_version_7_database_are_read_from_folded_text(postgres_url: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration 8 rewrites every chunk's terms again: before it, an amount with thousands separators was indexed as
    its groups only, and a soft hyphen split a word in two."""
    from inhouse.kb.index import keywords

    s = PostgresIndexStore(postgres_url, dim=DIM)
    try:
        col = s.create_collection("docs", acl=Acl()).id
        doc = s.put_document(make_doc(col, "budget.txt", ["Approved budget: 1,250,000 CNY for Reise\u00adkosten."]))
        s.put_document(make_doc(col, "other.txt", ["Approved budget: 250 CNY, 000 pending."]))
        # The terms as version 7 wrote them: no folding, no grouped numbers.
        monkeypatch.setattr(keywords, "fold_text", lambda text: text)
        monkeypatch.setattr(keywords, "_TOKEN_RE", re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+"
                                                              r"|[^\W_\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
                                                              r"(?:[^\W\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[.\-])*"))
        with s._db.transaction() as c:
            for r in c.execute("SELECT pk, text, section FROM kb_chunks").fetchall():
                c.execute("UPDATE kb_chunks SET tsv = %s::tsvector WHERE pk = %s",
                          (tsvector_literal(r["text"], r["section"]), r["pk"]))
            c.execute("DELETE FROM schema_migrations WHERE scope = 'kb' AND version = 8")
        monkeypatch.undo()
        assert s.check().fts_integrity != "ok"
    finally:
        s.close()
    s = PostgresIndexStore(postgres_url, dim=DIM)
    try:
        assert s.check().ok, s.check().to_dict()
        for query in ("1,250,000", "Reisekosten"):
            top = s.keyword_search(ADMIN, query, SearchFilters(), 5)
            assert [c.document_id for c in s.get_chunks(ADMIN, [top[0].chunk_id])] == [doc.document.id], query
    finally:
        s.close()
