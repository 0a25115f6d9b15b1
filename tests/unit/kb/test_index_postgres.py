"""``PostgresIndexStore`` passes the index store conformance suite on a local PostgreSQL with pgvector, plus the
PostgreSQL-specific guarantees: k rows always (past the HNSW scan limit), and the dimension check."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from inhouse.errors import InvalidRequest
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.index.postgres import PostgresIndexStore
from inhouse.kb.index.protocol import SearchFilters
from inhouse.testing.index_contract import ADMIN, DIM, IndexStoreContract, make_doc
from inhouse.types import Actor

pytestmark = pytest.mark.integration


class TestPostgresIndexStore(IndexStoreContract):
    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[PostgresIndexStore]:
        s = PostgresIndexStore(postgres_url, dim=DIM)
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
    s = PostgresIndexStore(postgres_url, dim=DIM, session={
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
