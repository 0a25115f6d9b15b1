"""``SqliteIndexStore`` passes the store conformance suite, plus SQLite-specific checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inhouse.errors import InvalidRequest
from inhouse.kb.access import Acl
from inhouse.kb.index.keywords import keyword_terms
from inhouse.kb.index.protocol import SearchFilters
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.index.sqlite.schema import _SCHEMA
from inhouse.testing.index_contract import ADMIN, DIM, EMBED, HR, IndexStoreContract, make_doc


class TestSqliteIndexStore(IndexStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SqliteIndexStore]:
        s = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
        yield s
        s.close()


class TestSqliteIndexStoreVec0(IndexStoreContract):
    """The same store with vector search as a ``vec0`` scan (no resident copy)."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SqliteIndexStore]:
        s = SqliteIndexStore(tmp_path / "kb.db", dim=DIM, resident_vectors=False)
        yield s
        s.close()


def test_sqlite_vec_loads_and_wal(tmp_path: Path) -> None:
    s = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
    try:
        assert s.vec_version().startswith("v0.")
        assert (tmp_path / "kb.db-wal").exists()
    finally:
        s.close()


def test_dimension_mismatch_is_refused(tmp_path: Path) -> None:
    SqliteIndexStore(tmp_path / "kb.db", dim=DIM).close()
    with pytest.raises(InvalidRequest, match="64-d"):
        SqliteIndexStore(tmp_path / "kb.db", dim=DIM * 2)


def test_delete_leaves_no_bytes_behind(tmp_path: Path) -> None:
    s = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
    try:
        col = s.create_collection("hr", acl=Acl())
        secret = "CANARY-ZEBRA-7781 quarterly figure"
        doc = make_doc(col.id, "a.txt", [secret, "second line of the canary text"])
        rec = s.put_document(doc).document
        s.put_document(make_doc(col.id, "b.txt", ["something else entirely"]))
        vec_bytes = np.ascontiguousarray(doc.vectors[0], dtype=np.float32).tobytes()
        assert secret.encode() in s.raw_dump() and vec_bytes in s.raw_dump()
        s.delete_document(rec.id)
        raw = s.raw_dump()
        assert b"zebra" not in raw.lower()  # the text, its words and trigrams (no digits: ids are hex)
        assert vec_bytes not in raw
    finally:
        s.close()


def _fts_config(path: Path) -> dict[str, dict[str, object]]:
    import apsw

    c = apsw.Connection(str(path))
    try:
        return {t: dict(c.execute(f"SELECT k, v FROM {t}_config")) for t in ("kb_fts", "kb_words")}
    finally:
        c.close()


@pytest.mark.parametrize("others", [30, 400])  # the changed chunk more than 1/300 of the index (a merge), or less
def test_replaced_version_leaves_no_terms_behind(tmp_path: Path, others: int) -> None:
    """A document replaced by a redacted version: the old text's terms (trigrams and words) leave both keyword
    indexes with it, not at some later merge."""
    s = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
    try:
        col = s.create_collection("hr", acl=Acl())
        # Other text, so the old postings share segments with text that stays.
        s.put_document(make_doc(col.id, "f.txt", [f"filler paragraph {i} about budgets" for i in range(others)]))
        # No digits in the canary: a hex id among 400 chunks' may well hold any four of them.
        s.put_document(make_doc(col.id, "a.txt", ["the codename is qwxzebra", "second line"]))
        assert b"qwxzebra" in s.raw_dump() and b"wxz" in s.raw_dump()
        s.put_document(make_doc(col.id, "a.txt", ["the codename is [withheld]", "second line"]))
        raw = s.raw_dump()
        assert b"qwxzebra" not in raw and b"wxz" not in raw
        assert not s.keyword_search(ADMIN, "qwxzebra", SearchFilters(), 5)
        assert s.check().ok
    finally:
        s.close()


# Version 5 back to 4: the contentless word index (with tombstone deletes), no secure-delete.
_TO_V4 = [
    "DROP TABLE kb_words_vocab", "DROP TABLE kb_words", "DROP VIEW kb_words_src",
    "CREATE VIRTUAL TABLE kb_words USING fts5 (title, section, body, content = '', contentless_delete = 1,"
    " tokenize = 'unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE kb_words_vocab USING fts5vocab (kb_words, 'row')",
    "INSERT INTO kb_words (rowid, title, section, body) SELECT k.pk, d.title, k.section, k.content"
    " FROM kb_chunks k JOIN kb_documents d ON d.pk = k.document_pk",
    "INSERT INTO kb_fts (kb_fts, rank) VALUES ('secure-delete', 0)",
    "DELETE FROM schema_migrations WHERE version = 5",
]


def test_a_small_edit_rewrites_only_the_chunks_it_touched(tmp_path: Path) -> None:
    """The unchanged chunks of a new version keep their rows (and ids, so earlier citations of them still resolve):
    their postings are not deleted and written again."""
    s = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
    try:
        col = s.create_collection("hr", acl=Acl())
        texts = [f"paragraph {i} of the travel policy" for i in range(6)]
        doc = s.put_document(make_doc(col.id, "a.txt", texts)).document
        before = [c.id for c in s.document_chunks(doc.id)]
        edited = [*texts[:2], "paragraph 2 now says qwxzebra", *texts[3:], "a new last paragraph"]
        s.put_document(make_doc(col.id, "a.txt", edited))
        after = s.document_chunks(doc.id)
        assert [c.content for c in after] == edited
        kept = [c.id for c in after if c.id in before]
        assert kept == before[:2] + before[3:] and after[2].id not in before and after[6].id not in before
        assert b"paragraph 2 of the" not in s.raw_dump()
        assert s.check().ok
    finally:
        s.close()


@pytest.mark.parametrize("canary_chunks", [1, 5])
def test_deleted_text_leaves_by_secure_delete_or_by_one_merge(tmp_path: Path, canary_chunks: int) -> None:
    """Against 400 other chunks, one deleted chunk's postings are deleted in place; five (more than 1/300 of the
    index) are deleted plainly and the indexes merged once. Either way no term is left, and secure-delete is on
    again for the next delete."""
    s = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
    try:
        col = s.create_collection("hr", acl=Acl())
        s.put_document(make_doc(col.id, "filler.txt", [f"filler paragraph {i} about budgets" for i in range(400)]))
        texts = [f"the codename is qwxzebra {i}" for i in range(canary_chunks)]
        canary = s.put_document(make_doc(col.id, "a.txt", texts)).document
        assert b"qwxzebra" in s.raw_dump()
        assert s.delete_documents([canary.id, "doc_missing"]) == 1
        raw = s.raw_dump()
        assert b"qwxzebra" not in raw and b"wxz" not in raw
        assert {t: cfg["secure-delete"] for t, cfg in _fts_config(tmp_path / "kb.db").items()} == {
            "kb_fts": 1, "kb_words": 1}
        assert s.check().ok and s.counts()["chunks"] == 400
    finally:
        s.close()


def test_upgrade_to_secure_delete_drops_what_earlier_replacements_left(tmp_path: Path) -> None:
    """A file of version 4 (deletes left postings until a merge; replacements never merged) gets secure-delete on
    both keyword indexes and loses the old postings in the upgrade."""
    db = tmp_path / "kb.db"
    old = SqliteIndexStore(db, dim=DIM)
    try:  # the layout of version 4 under the open store, which then writes as version 4 did
        with old._tx() as tx:
            for stmt in _TO_V4:
                tx.execute(stmt)
        col = old.create_collection("hr", acl=Acl())
        # 400 other chunks: replacing one deletes it in place, without merging the index (the merge path would
        # drop the old postings here already).
        old.put_document(make_doc(col.id, "f.txt", [f"filler paragraph {i} about budgets" for i in range(400)]))
        old.put_document(make_doc(col.id, "a.txt", ["the codename is qwxzebra"]))
        old.put_document(make_doc(col.id, "a.txt", ["the codename is [withheld]"]))
        assert b"qwxzebra" in old.raw_dump()  # what version 4 left behind
    finally:
        old.close()
    s = SqliteIndexStore(db, dim=DIM)
    try:
        assert s.schema_version() == 7
        assert {t: cfg["secure-delete"] for t, cfg in _fts_config(db).items()} == {"kb_fts": 1, "kb_words": 1}
        assert b"qwxzebra" not in s.raw_dump() and b"wxz" not in s.raw_dump()
        assert s.check().ok and s.counts()["documents"] == 2
    finally:
        s.close()


def test_keyword_terms() -> None:
    long, short = keyword_terms("What is the salary range for a P3 senior engineer?")
    assert long == ["salary", "range", "senior", "engineer"] and short == ["p3"]
    long, short = keyword_terms("加班")
    assert long == [] and short == ["加班"]
    long, _ = keyword_terms("X200 保修多久")
    assert "x200" in long and "保修多" in long and "修多久" in long
    assert keyword_terms('"quoted" OR NEAR(') == (["quoted", "near"], [])


def test_fts_syntax_in_queries_is_inert(tmp_path: Path) -> None:
    s = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
    try:
        col = s.create_collection("hr", acl=Acl())
        s.put_document(make_doc(col.id, "a.txt", ['a "quoted" NEAR text * with ^ operators']))
        from inhouse.kb.index.protocol import SearchFilters

        for q in ['"', "NEAR(", "*", "a AND OR NOT", "col:x", "^^^", "'; DROP TABLE kb_chunks; --"]:
            s.keyword_search(ADMIN, q, SearchFilters(), 5)
        assert s.counts()["chunks"] == 1
    finally:
        s.close()


def _objects(path: Path) -> set[tuple[str, str]]:
    import apsw

    c = apsw.Connection(str(path))
    try:
        return {(t, n) for t, n in c.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite%'")}
    finally:
        c.close()


def _downgrade_to_v1(path: Path) -> None:
    """Turn a file into the layout of schema version 1 (before ``kb_vec_log``): exactly what migrations 2 to 7 add
    is removed, as it was absent from files written by the release before them."""
    import apsw

    c = apsw.Connection(str(path))
    try:
        c.execute("BEGIN")
        c.execute("DROP TABLE kb_words_vocab")
        c.execute("DROP TABLE kb_words")
        c.execute("DROP VIEW kb_words_src")
        for trigger in ("kb_chunks_logi", "kb_chunks_logd", "kb_chunks_logu"):
            c.execute(f"DROP TRIGGER {trigger}")
        c.execute("DROP TABLE kb_vec_log")
        c.execute("DROP INDEX kb_chunks_pk_doc")
        c.execute("DROP INDEX kb_documents_access")
        c.execute("DROP INDEX kb_acl_principal")
        c.execute("DELETE FROM sqlite_sequence WHERE name = 'kb_vec_log'")
        c.execute("DELETE FROM kb_meta WHERE key = 'vec_log_pruned'")
        c.execute("ALTER TABLE kb_collections DROP COLUMN sketch_questions")
        c.execute("DROP TABLE kb_run_journal")
        # The previous release recorded its version in kb_meta, not in schema_migrations.
        c.execute("DROP TABLE schema_migrations")
        c.execute("INSERT OR REPLACE INTO kb_meta (key, value) VALUES ('schema', '1')")
        c.execute("COMMIT")
    finally:
        c.close()


def test_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    db = tmp_path / "kb.db"
    s = SqliteIndexStore(db, dim=DIM)
    hr = s.create_collection("hr", acl=Acl(groups=frozenset({"hr"}))).id
    old = s.put_document(make_doc(hr, "leave.txt", ["annual leave is 18 days", "carry over 5 days"])).document
    s.close()
    _downgrade_to_v1(db)
    # What is left is the version-1 layout: the same objects as a file made from the version-1 DDL alone.
    import apsw
    import sqlite_vec

    v1 = apsw.Connection(str(tmp_path / "v1.db"))
    v1.enable_load_extension(True)
    v1.load_extension(sqlite_vec.loadable_path())
    v1.execute(_SCHEMA)
    v1.execute(f"CREATE VIRTUAL TABLE kb_vec USING vec0 (embedding float[{DIM}] distance_metric=cosine)")
    v1.close()
    assert _objects(db) == _objects(tmp_path / "v1.db")

    s = SqliteIndexStore(db, dim=DIM)
    try:
        assert s.schema_version() == 7
        assert not s.get_collection("hr").sketch_questions  # migration 4: the switch, off for older collections
        objects = _objects(db)
        assert {("trigger", "kb_chunks_logi"), ("table", "kb_vec_log"), ("index", "kb_chunks_pk_doc"),
                ("table", "kb_words"), ("index", "kb_documents_access"), ("index", "kb_acl_principal")} <= objects
        q = EMBED.embed_query("annual leave is 18 days")
        top = s.vector_search(HR, q, SearchFilters(), 1)[0]  # vectors written before the upgrade are searched
        assert top.score == pytest.approx(1.0, abs=1e-4)
        assert s.get_chunks(HR, [top.chunk_id])[0].document_id == old.id
        assert [x.chunk_id for x in s.keyword_search(HR, "carry over", SearchFilters(), 1)] == \
            [c.id for c in s.document_chunks(old.id) if c.ordinal == 1]
        new = s.put_document(make_doc(hr, "vpn.txt", ["vpn profiles last 180 days"])).document
        hit = s.vector_search(HR, EMBED.embed_query("vpn profiles last 180 days"), SearchFilters(), 1)[0]
        assert s.get_chunks(HR, [hit.chunk_id])[0].document_id == new.id
        s.delete_document(old.id)
        assert all(s.get_chunks(ADMIN, [x.chunk_id])[0].document_id == new.id
                   for x in s.vector_search(HR, q, SearchFilters(), 5))
        assert all(v == 0 for k, v in s.counts().items() if k.startswith("orphan"))
    finally:
        s.close()
    s = SqliteIndexStore(db, dim=DIM)  # opening an upgraded file again changes nothing
    try:
        assert s.schema_version() == 7
    finally:
        s.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    import apsw

    SqliteIndexStore(tmp_path / "kb.db", dim=DIM).close()
    c = apsw.Connection(str(tmp_path / "kb.db"))
    c.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'from the future', 0)")
    c.close()
    with pytest.raises(InvalidRequest, match="schema version 99"):
        SqliteIndexStore(tmp_path / "kb.db", dim=DIM)


@pytest.mark.parametrize(("breakage", "problem"), [
    ("DELETE FROM kb_vec WHERE rowid = (SELECT min(pk) FROM kb_chunks)", "chunks_without_vector"),
    ("DELETE FROM kb_fts WHERE rowid = (SELECT min(pk) FROM kb_chunks)", "chunks_without_fts"),
    ("DELETE FROM kb_words WHERE rowid = (SELECT min(pk) FROM kb_chunks)", "chunks_without_words"),
    ("INSERT INTO kb_words (rowid, title, section, body) VALUES (999999, 't', 's', 'stray words')", "orphan_words"),
    ("UPDATE kb_documents SET chunk_count = chunk_count + 1", "chunk_count_mismatch"),
    ("INSERT INTO kb_vec (rowid, embedding) VALUES (999999, zeroblob(4 * 64))", "orphan_vectors"),
])
def test_check_finds_inconsistencies(tmp_path: Path, breakage: str, problem: str) -> None:
    """`inhouse kb check`: consistent after ordinary writes and deletes; each kind of damage is named."""
    s = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
    try:
        col = s.create_collection("hr", acl=Acl())
        keep = s.put_document(make_doc(col.id, "a.txt", ["first chunk", "second chunk"])).document
        gone = s.put_document(make_doc(col.id, "b.txt", ["to be deleted"])).document
        s.delete_document(gone.id)
        result = s.check()
        assert result.ok and result.integrity == ["ok"] and result.problems == {}, result.to_dict()
        assert result.counts["documents"] == 1 and result.counts["chunks"] == keep.chunk_count == 2
        with s._tx() as c:  # damage the file behind the store's back
            c.execute(breakage)
        broken = s.check()
        assert not broken.ok and set(broken.problems) == {problem}, broken.to_dict()
    finally:
        s.close()


def test_word_index_of_a_version_2_file_is_backfilled_and_a_marked_version_3_file_adopted(tmp_path: Path) -> None:
    """Migration 3 builds the word index from the chunk rows of a file written before it; a file whose ``kb_meta``
    says 3 (written by the release that introduced the word index, before ``schema_migrations``) is taken as it is:
    its word index is not built a second time."""
    import apsw

    db = tmp_path / "kb.db"
    s = SqliteIndexStore(db, dim=DIM)
    hr = s.create_collection("hr", acl=Acl(groups=frozenset({"hr"}))).id
    chunks = s.document_chunks(s.put_document(make_doc(hr, "vpn.txt", ["the wireguard gateway", "other"])).document.id)
    s.close()
    c = apsw.Connection(str(db))
    c.execute("BEGIN; DROP TABLE kb_words_vocab; DROP TABLE kb_words; DROP VIEW kb_words_src;"
              " DROP TABLE schema_migrations; ALTER TABLE kb_collections DROP COLUMN sketch_questions;"
              " DROP TABLE kb_run_journal; INSERT OR REPLACE INTO kb_meta (key, value) VALUES ('schema', '2'); COMMIT")
    c.close()
    s = SqliteIndexStore(db, dim=DIM)
    try:
        assert s.schema_version() == 7
        assert [h.chunk_id for h in s.keyword_search(HR, "wireguard", SearchFilters(), 5)] == [chunks[0].id]
        assert s.check().ok
    finally:
        s.close()
    c = apsw.Connection(str(db))
    c.execute("BEGIN; " + "; ".join(_TO_V4[:-1]) + "; DROP TABLE schema_migrations;"
              " ALTER TABLE kb_collections DROP COLUMN sketch_questions; DROP TABLE kb_run_journal;"
              " INSERT OR REPLACE INTO kb_meta (key, value) VALUES ('schema', '3'); COMMIT")
    c.close()
    s = SqliteIndexStore(db, dim=DIM)
    try:
        assert s.schema_version() == 7 and s.counts()["chunks"] == 2
        assert s.check().ok  # one word row per chunk: the backfill of version 3 did not run again
        assert [h.chunk_id for h in s.keyword_search(HR, "wireguard", SearchFilters(), 5)] == [chunks[0].id]
    finally:
        s.close()
