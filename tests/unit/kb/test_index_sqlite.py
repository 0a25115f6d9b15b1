"""``SqliteIndexStore`` passes the store conformance suite, plus SQLite-specific checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inhouse.errors import InvalidRequest
from inhouse.kb.access import Acl
from inhouse.kb.index.sqlite import SqliteIndexStore, keyword_terms
from inhouse.testing.index_contract import ADMIN, DIM, IndexStoreContract, make_doc


class TestSqliteIndexStore(IndexStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SqliteIndexStore]:
        s = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
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
        assert b"CANARY-ZEBRA" not in raw and b"7781" not in raw
        assert vec_bytes not in raw
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
