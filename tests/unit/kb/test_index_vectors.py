"""Vector search on the resident copy (``kb.index.resident``): exact against ``vec0``, scores only what the caller
may see, and stays in step with writes from another connection (another process) through ``kb_vec_log``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import inhouse.kb.index.resident as resident_mod
import inhouse.kb.index.sqlite.store as sqlite_mod
from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.document import Chunk
from inhouse.kb.index.protocol import NewDocument, SearchFilters
from inhouse.kb.index.resident import DocRows, ResidentVectors
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.types import Actor

DIM = 384
ADMIN = AccessScope.of(Actor("key_admin", "admin", role="admin"))
ALPHA = AccessScope.of(Actor("key_a", "alpha member", groups=frozenset({"alpha"})))
ALL = SearchFilters()


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def put(store: SqliteIndexStore, col: str, source: str, vectors: np.ndarray, *, label: Label = Label.INTERNAL,
        acl: Acl | None = None, tag: str = "") -> str:
    texts = [f"{source} chunk {i} {tag}" for i in range(len(vectors))]
    data = ("\n".join(texts)).encode()
    chunks = [Chunk(index=i, text=t, content=t, token_count=4, kind="paragraph") for i, t in enumerate(texts)]
    return store.put_document(NewDocument(col, source, hashlib.sha256(data).hexdigest(), label, acl, source, source,
                                          "text/plain", data, chunks, vectors)).document.id


@pytest.fixture
def random_store(tmp_path: Path) -> Iterator[tuple[SqliteIndexStore, set[str]]]:
    """2,400 random unit vectors in 24 documents of two collections; ALPHA may see 10 documents of alpha (one is
    restricted, one narrowed to another group). Yields the store and the chunk ids ALPHA may see."""
    rng = np.random.default_rng(5)
    store = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
    alpha = store.create_collection("alpha", acl=Acl(groups=frozenset({"alpha"}))).id
    beta = store.create_collection("beta", acl=Acl(groups=frozenset({"beta"}))).id
    visible: set[str] = set()
    for d in range(24):
        col = alpha if d % 2 == 0 else beta
        label = Label.RESTRICTED if d == 4 else Label.INTERNAL
        acl = Acl(groups=frozenset({"alpha-leads"})) if d == 6 else None
        doc = put(store, col, f"d{d}.txt", unit(rng, 100), label=label, acl=acl)
        if col == alpha and d not in (4, 6):
            visible |= {c.id for c in store.document_chunks(doc)}
    yield store, visible
    store.close()


def test_recall_at_10_against_exact_vec0(random_store: tuple[SqliteIndexStore, set[str]]) -> None:
    store, visible = random_store
    exact = SqliteIndexStore(store.path, dim=DIM, resident_vectors=False)
    try:
        queries = unit(np.random.default_rng(9), 60)
        for scope in (ADMIN, ALPHA):
            found = 0
            for q in queries:
                fast = store.vector_search(scope, q, ALL, 10)
                ref = exact.vector_search(scope, q, ALL, 10)
                assert len(fast) == len(ref) == 10
                found += len({s.chunk_id for s in fast} & {s.chunk_id for s in ref})
                if scope is ALPHA:
                    assert {s.chunk_id for s in fast} <= visible
                # The same cosine similarities, best first.
                assert [s.score for s in fast] == sorted((s.score for s in fast), reverse=True)
                assert fast[0].score == pytest.approx(ref[0].score, abs=1e-5)
            recall = found / (10 * len(queries))
            assert recall >= 0.95, (scope, recall)
    finally:
        exact.close()


def test_only_visible_rows_are_scored(random_store: tuple[SqliteIndexStore, set[str]],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store, visible = random_store
    scored: list[int] = []
    real = resident_mod._scores

    def counting(mat: np.ndarray, q: np.ndarray) -> np.ndarray:
        scored.append(mat.shape[0])
        return real(mat, q)

    monkeypatch.setattr(resident_mod, "_scores", counting)
    q = unit(np.random.default_rng(1), 1)[0]
    hits = store.vector_search(ALPHA, q, ALL, 5)
    assert sum(scored) == len(visible) == 1000 and {h.chunk_id for h in hits} <= visible
    scored.clear()
    store.vector_search(ADMIN, q, ALL, 5)
    assert sum(scored) == 2400
    scored.clear()
    doc = store.get_chunks(ADMIN, [hits[0].chunk_id])[0].document_id
    only = store.vector_search(ALPHA, q, SearchFilters(document_ids=frozenset({doc})), 50)
    assert sum(scored) == 100 and len(only) == 50


def test_short_runs_are_gathered_and_long_runs_sliced(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    res = ResidentVectors(8)
    docs = [DocRows(d, 1, np.arange(d * 10, d * 10 + 3), unit(rng, 3, 8)) for d in range(40)]
    docs.append(DocRows(100, 1, np.arange(1000, 1200), unit(rng, 200, 8)))
    res.load(docs, seq=7)
    assert res.rows == 320 and res.seq == 7
    shapes: list[int] = []
    real = resident_mod._scores

    def recording(mat: np.ndarray, q: np.ndarray) -> np.ndarray:
        shapes.append(mat.shape[0])
        return real(mat, q)

    monkeypatch.setattr(resident_mod, "_scores", recording)
    every_other = {d for d in range(0, 40, 2)}
    pks, sims = res.search(unit(rng, 1, 8)[0], 100, {1: every_other})
    assert shapes == [60]  # 20 runs of 3 rows: one gather
    assert len(pks) == 60 and all((pk // 10) % 2 == 0 and pk < 400 for pk in pks.tolist())
    assert np.all(np.diff(sims) <= 0)
    shapes.clear()
    pks, _ = res.search(unit(rng, 1, 8)[0], 5, {1: {100, 0}})
    assert sorted(shapes) == [3, 200]  # two runs, long enough to slice
    assert res.search(unit(rng, 1, 8)[0], 5, {2: {1}})[0].size == 0  # nothing visible: nothing scored


def test_resident_update_replaces_moves_and_drops_documents() -> None:
    res = ResidentVectors(4)
    eye = np.eye(4, dtype=np.float32)
    res.load([DocRows(1, 10, np.array([1, 2]), eye[:2] * 3), DocRows(2, 10, np.array([3]), eye[2:3])], seq=1)
    pks, sims = res.search(eye[0], 1, None)
    assert pks.tolist() == [1] and sims[0] == pytest.approx(1.0)  # rows are normalized
    # Document 1 is replaced (pk 1 now points elsewhere), document 2 deleted, document 3 added in another collection.
    res.update([1, 2], [DocRows(1, 10, np.array([1]), eye[3:4]), DocRows(3, 11, np.array([9]), eye[0:1])], seq=4)
    assert res.rows == 2 and res.seq == 4
    assert res.search(eye[0], 1, None)[0].tolist() == [9]
    assert res.search(eye[3], 1, {10: {1}})[0].tolist() == [1]
    assert res.search(eye[2], 5, {10: {1, 2}})[0].tolist() == [1]  # document 2 is gone
    with pytest.raises(ValueError):
        res.search(np.ones(3, dtype=np.float32), 1, None)
    res.reset()
    assert res.rows == 0 and res.seq == -1


def test_writes_through_another_connection_are_seen(tmp_path: Path) -> None:
    """A searcher (A) and a writer (B) on the same file, as the server and the CLI are: additions, replacements,
    deletions and rowids reused by SQLite all reach A's resident copy."""
    rng = np.random.default_rng(2)
    a = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
    b = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
    try:
        col = b.create_collection("alpha", acl=Acl(groups=frozenset({"alpha"}))).id
        va, vb, vc = unit(rng, 3), unit(rng, 3), unit(rng, 3)
        put(b, col, "keep.txt", unit(rng, 1))
        top = lambda s, q: s.vector_search(ALPHA, q, ALL, 1)[0]  # noqa: E731
        assert a.vector_search(ALPHA, va[0], ALL, 5)[0].score < 0.5  # loaded before the new document exists
        doc = put(b, col, "x.txt", va)
        assert top(a, va[1]).score == pytest.approx(1.0, abs=1e-5)
        assert top(a, va[1]).chunk_id in {c.id for c in b.document_chunks(doc)}
        put(b, col, "x.txt", vb, tag="v2")  # replaced: the old vectors are gone from A
        assert top(a, va[1]).score < 0.5 and top(a, vb[2]).score == pytest.approx(1.0, abs=1e-5)
        old_pks = {r[0] for r in b._read("SELECT k.pk FROM kb_chunks k JOIN kb_documents d ON d.pk = k.document_pk"
                                         " WHERE d.id = ?", (doc,))}
        b.delete_document(doc)
        assert top(a, vb[2]).score < 0.5
        new = put(b, col, "y.txt", vc)
        new_pks = {r[0] for r in b._read("SELECT k.pk FROM kb_chunks k JOIN kb_documents d ON d.pk = k.document_pk"
                                         " WHERE d.id = ?", (new,))}
        assert new_pks == old_pks  # SQLite reused the rowids of the deleted chunks
        hit = top(a, vc[0])
        assert hit.score == pytest.approx(1.0, abs=1e-5)
        assert hit.chunk_id in {c.id for c in b.document_chunks(new)} and top(a, vb[2]).score < 0.5
        # Access is decided per query: a relabel by B hides the document from A's next search.
        b.relabel(new, label=Label.RESTRICTED)
        assert all(s.chunk_id not in {c.id for c in b.document_chunks(new)}
                   for s in a.vector_search(ALPHA, vc[0], ALL, 10))
    finally:
        a.close()
        b.close()


def test_pruned_log_makes_a_stale_searcher_reload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    monkeypatch.setattr(sqlite_mod, "_LOG_KEEP", 2)
    a = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
    b = SqliteIndexStore(tmp_path / "kb.db", dim=DIM)
    try:
        col = b.create_collection("alpha", acl=Acl(groups=frozenset({"alpha"}))).id
        put(b, col, "first.txt", unit(rng, 2))
        a.vector_search(ADMIN, unit(rng, 1)[0], ALL, 1)
        seen = a._resident.seq if a._resident else -1
        last = unit(rng, 3)
        for i in range(3):
            put(b, col, f"more{i}.txt", last if i == 2 else unit(rng, 3))
        pruned = int(b._read("SELECT value FROM kb_meta WHERE key = 'vec_log_pruned'")[0][0])
        assert pruned > seen and b._read("SELECT count(*) FROM kb_vec_log")[0][0] <= 5
        hit = a.vector_search(ADMIN, last[1], ALL, 1)[0]
        assert hit.score == pytest.approx(1.0, abs=1e-5)
        assert a._resident is not None and a._resident.rows == 11
    finally:
        a.close()
        b.close()
