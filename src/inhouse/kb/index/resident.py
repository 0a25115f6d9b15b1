"""``ResidentVectors``: the index's chunk vectors kept in RAM for exact cosine KNN with BLAS.

Why: ``vec0``'s exact scan computes cosine in a scalar loop over a 150 MB table at 100k chunks (30 ms quiet,
150-290 ms under foreign load). The same exact scan as one float32 matrix-vector product is 4-8 ms on these
2 cores, and nothing is approximated, so recall against ``vec0`` is 1.0 (quantized pre-scans were measured and
lost recall on unstructured vectors: sign bits kept 0.70 of the true top 10 among 2,000 candidates).
Memory: 4 bytes x dim per chunk (1.5 KB at 384-d: 154 MB per 100k chunks) in each process that searches.

Rows are grouped by collection, and within a collection by document, so the access rule decides which rows are
*scored*, not which scores are kept: a collection the caller may see whole is one product over its block, a
partly visible collection one product per run of consecutive visible documents (or one gather when the runs are
short). Rows of documents the caller may not see are never multiplied.

This module has no SQL and no notion of who may see what: ``SqliteIndexStore`` computes the visible documents in
SQL and keeps this copy in step with the database by replaying its change log (``kb_vec_log``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass

import numpy as np

# Below this mean run length (rows), gathering the visible rows into one matrix beats one product per run.
_MIN_RUN_ROWS = 48


@dataclass(frozen=True)
class DocRows:
    """The vectors of one document: chunk pks and their (n, dim) float32 rows."""

    document_pk: int
    collection_pk: int
    pks: np.ndarray
    vectors: np.ndarray


@dataclass
class _Block:
    """One collection's rows, each document's rows contiguous."""

    pks: np.ndarray  # int64 (n,)
    mat: np.ndarray  # float32 (n, dim), unit rows (all-zero rows stay zero)
    spans: dict[int, tuple[int, int]]  # document pk -> [start, end)


def _scores(mat: np.ndarray, q: np.ndarray) -> np.ndarray:
    # numpy's own SIMD loop on one thread, not BLAS: OpenBLAS's gemv threads spin-wait when another process holds
    # the other core (100k x 384 under two foreign cores: p95 24 ms with OpenBLAS, 13 ms with einsum).
    return np.einsum("ij,j->i", mat, q)


def _unit_rows(m: np.ndarray) -> np.ndarray:
    m = np.ascontiguousarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


class ResidentVectors:
    """Every vector of the index by collection and document. Not thread-safe: the store calls it under its lock."""

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)
        self.seq = -1  # the last change-log entry applied; -1: never loaded
        self._blocks: dict[int, _Block] = {}
        self._doc_collection: dict[int, int] = {}

    @property
    def rows(self) -> int:
        return sum(len(b.pks) for b in self._blocks.values())

    def nbytes(self) -> int:
        return sum(b.mat.nbytes + b.pks.nbytes for b in self._blocks.values())

    def reset(self) -> None:
        """Forget everything: the next search loads every vector again."""
        self._blocks.clear()
        self._doc_collection.clear()
        self.seq = -1

    def load(self, docs: Iterable[DocRows], seq: int) -> None:
        """Replace everything (first use, or when the change log no longer reaches back to ``self.seq``)."""
        self.reset()
        self.update((), docs, seq)

    def update(self, changed: Iterable[int], docs: Iterable[DocRows], seq: int) -> None:
        """Drop the documents in ``changed``, then add ``docs`` (the current rows of changed documents that still
        have any). Only the blocks of collections that change are rebuilt."""
        by_col: dict[int, list[DocRows]] = {}
        drop: dict[int, set[int]] = {}
        for doc_pk in changed:
            col = self._doc_collection.pop(doc_pk, None)
            if col is not None:
                drop.setdefault(col, set()).add(doc_pk)
        for d in docs:
            if d.vectors.shape != (len(d.pks), self.dim):
                raise ValueError(f"document {d.document_pk}: vectors {d.vectors.shape} for {len(d.pks)} chunks")
            old = self._doc_collection.pop(d.document_pk, None)
            if old is not None:
                drop.setdefault(old, set()).add(d.document_pk)
            by_col.setdefault(d.collection_pk, []).append(d)
        for col in set(by_col) | set(drop):
            self._rebuild(col, drop.get(col, set()), by_col.get(col, []))
        self.seq = int(seq)

    def _rebuild(self, col: int, drop: Set[int], add: list[DocRows]) -> None:
        pieces_pks: list[np.ndarray] = []
        pieces_mat: list[np.ndarray] = []
        spans: dict[int, tuple[int, int]] = {}
        at = 0
        old = self._blocks.get(col)
        if old is not None:
            for doc_pk, (s, e) in sorted(old.spans.items(), key=lambda kv: kv[1]):
                if doc_pk in drop:
                    continue
                pieces_pks.append(old.pks[s:e])
                pieces_mat.append(old.mat[s:e])
                spans[doc_pk] = (at, at + e - s)
                at += e - s
        for d in add:
            if len(d.pks) == 0:
                continue
            pieces_pks.append(np.asarray(d.pks, dtype=np.int64))
            pieces_mat.append(_unit_rows(d.vectors))
            spans[d.document_pk] = (at, at + len(d.pks))
            at += len(d.pks)
        for doc_pk in spans:
            self._doc_collection[doc_pk] = col
        if not spans:
            self._blocks.pop(col, None)
            return
        self._blocks[col] = _Block(np.concatenate(pieces_pks), np.concatenate(pieces_mat), spans)

    def search(self, query: np.ndarray, k: int,
               visible: Mapping[int, Set[int]] | None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows most cosine-similar to ``query`` among the documents in ``visible`` (collection pk ->
        document pks; ``None``: every row). Returns (chunk pks, similarities), best first, ties by pk."""
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValueError(f"query has {q.shape[0]} dimensions, the vectors {self.dim}")
        norm = float(np.linalg.norm(q))
        if norm > 0:
            q = q / np.float32(norm)
        scores: list[np.ndarray] = []
        pks: list[np.ndarray] = []
        for col, block in self._blocks.items():
            if visible is None:
                scores.append(_scores(block.mat, q))
                pks.append(block.pks)
                continue
            docs = visible.get(col)
            if not docs:
                continue
            spans = sorted(block.spans[d] for d in docs if d in block.spans)
            if len(spans) == len(block.spans):
                scores.append(_scores(block.mat, q))
                pks.append(block.pks)
                continue
            runs: list[tuple[int, int]] = []
            for s, e in spans:
                if runs and runs[-1][1] == s:
                    runs[-1] = (runs[-1][0], e)
                else:
                    runs.append((s, e))
            if not runs:
                continue
            starts = np.array([s for s, _ in runs], dtype=np.int64)
            lens = np.array([e - s for s, e in runs], dtype=np.int64)
            if int(lens.sum()) < _MIN_RUN_ROWS * len(runs):
                idx = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
                scores.append(_scores(block.mat[idx], q))
                pks.append(block.pks[idx])
            else:
                for s, e in runs:
                    scores.append(_scores(block.mat[s:e], q))
                    pks.append(block.pks[s:e])
        if not scores or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        all_scores = np.concatenate(scores)
        all_pks = np.concatenate(pks)
        if len(all_scores) > k:
            top = np.argpartition(-all_scores, k - 1)[:k]
            all_scores, all_pks = all_scores[top], all_pks[top]
        order = np.lexsort((all_pks, -all_scores))
        return all_pks[order], all_scores[order]
