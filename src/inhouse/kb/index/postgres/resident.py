"""Exact vector search for ``PostgresIndexStore`` on a copy of the vectors in this process's RAM
(``kb.index.resident.ResidentVectors``, the same copy SQLite searches), kept in step with the database through the
change log ``kb_vec_log`` that triggers on ``kb_chunks`` fill (schema step 3).

Why: at 100k chunks HNSW's walk, with the round trip of a 384-float query and the walk's setup, made the vector query
the longest part of a PostgreSQL retrieval (p95 1.7-1.8 × SQLite's, docs/performance.md), and it is approximate.
The exact scan of the resident copy costs what it costs on SQLite (one matrix-vector product per visible run of
rows) and gives the same ranking on both stores. Memory: 1.5 KB per 384-d chunk in each process that searches.
An index of more than ``store.resident_vectors_max_chunks`` chunks (default 500,000: 770 MB per process, and a full
scan of ~45 ms on 2 cores) is not copied: its searches walk HNSW, whose cost grows with the logarithm of the index
rather than its size; 0 never copies.

**Replaying the log on several nodes.** Sequence numbers of concurrent transactions commit out of order (seq 11 can be
visible while seq 10 is not yet), so the log is replayed by transaction id instead: every entry carries the id of the
transaction that wrote it (``xid8``). A sync reads, in one snapshot, the entries whose transaction id is at or past
the horizon of the previous sync, reloads those documents' rows as that snapshot sees them, and moves the horizon to
the snapshot's ``xmin`` (every transaction below it had ended). An entry of a transaction still running at the
snapshot has an id at or past that ``xmin``, so a later sync reads it. Entries at or past the horizon that were
applied already are remembered by their sequence number, so a search that finds no new entry does no more than one
small query. Writers keep the log to its newest entries; a searcher whose horizon lies before the cut (recorded in
``kb_meta.vec_log_pruned``) reloads everything.

A stale copy never shows a chunk its caller may not see: which documents are visible is decided per search in SQL,
and the chunks are read with the access rule on their rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from inhouse.kb.index.resident import DocRows, ResidentVectors
from inhouse.store.postgres.database import PostgresDatabase

# An index found too large to copy is counted again after this long (it may have shrunk).
RECHECK_S = 600.0
# Writers keep the newest LOG_KEEP entries once the log holds twice as many (one entry per chunk row written).
LOG_KEEP = 10_000


def prune_log(conn: Any, keep: int = LOG_KEEP) -> None:
    """Inside a writer's transaction: cut ``kb_vec_log`` back to its newest ``keep`` entries once it holds more than
    twice that many, recording past which transaction id a searcher must reload everything."""
    row = conn.execute("SELECT min(seq) AS lo, max(seq) AS hi FROM kb_vec_log").fetchone()
    if row is None or row["hi"] is None or int(row["hi"]) - int(row["lo"]) < 2 * keep:
        return
    gone = conn.execute("WITH gone AS (DELETE FROM kb_vec_log WHERE seq <= %s RETURNING xid)"
                        " SELECT max(xid)::text AS x FROM gone", (int(row["hi"]) - keep,)).fetchone()
    if gone is not None and gone["x"] is not None:
        conn.execute("UPDATE kb_meta SET value = greatest(value::bigint, %s)::text WHERE key = 'vec_log_pruned'",
                     (int(gone["x"]) + 1,))


def unpack_vectors(blobs: list[bytes], dim: int) -> np.ndarray:
    """pgvector's binary form (``vector_send``: int16 dim, int16 unused, then big-endian float4s) as float32 rows."""
    raw = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), 4 + 4 * dim)
    return raw[:, 4:].copy().view(">f4").astype(np.float32)


class PostgresResidentVectors:
    """The resident copy of one PostgreSQL index and its replay position. Thread-safe: syncs and searches of one
    process take turns (a search is a few milliseconds of numpy)."""

    def __init__(self, db: PostgresDatabase, dim: int, *, max_rows: int, clock: Callable[[], float]) -> None:
        self._db = db
        self._vectors = ResidentVectors(dim)
        self._horizon = -1  # xmin of the last sync's snapshot; -1: never loaded
        self._applied: set[int] = set()  # seqs at or past the horizon already applied
        self._lock = threading.Lock()
        self._max_rows = max_rows
        self._clock = clock
        self._too_large_until = 0.0  # the index held more than max_rows: not copied before this time

    def in_use(self) -> bool:
        """False while the index is too large to copy (searches walk HNSW; the size is checked again later)."""
        return self._clock() >= self._too_large_until

    @property
    def rows(self) -> int:
        return self._vectors.rows

    def search(self, query: np.ndarray, k: int,
               visible: dict[int, set[int]] | None) -> tuple[np.ndarray, np.ndarray] | None:
        """``ResidentVectors.search`` on a copy at least as new as the database was when this call began; None when
        the index has grown past ``max_rows`` (the copy is dropped, the caller walks HNSW)."""
        with self._lock:
            if self._stale():
                self._sync()
            if self._vectors.rows > self._max_rows or not self.in_use():
                self._give_up()
                return None
            return self._vectors.search(query, k, visible)

    def _give_up(self) -> None:
        self._vectors.reset()
        self._horizon, self._applied = -1, set()
        self._too_large_until = self._clock() + RECHECK_S

    def reset(self) -> None:
        with self._lock:
            self._vectors.reset()
            self._horizon, self._applied = -1, set()

    def _stale(self) -> bool:
        if self._horizon < 0:
            return True
        row = self._db.query_one(
            "SELECT (SELECT value::bigint FROM kb_meta WHERE key = 'vec_log_pruned') AS pruned,"
            " ARRAY(SELECT seq FROM kb_vec_log WHERE xid >= %s::text::xid8) AS seqs", (self._horizon,))
        assert row is not None
        return int(row["pruned"]) > self._horizon or not set(row["seqs"]) <= self._applied

    def _sync(self) -> None:
        try:
            with self._db.transaction(isolation="REPEATABLE READ") as conn:
                horizon = int(conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x")
                              .fetchone()["x"])
                pruned = int(conn.execute("SELECT value FROM kb_meta WHERE key = 'vec_log_pruned'")
                             .fetchone()["value"])
                full = self._horizon < 0 or pruned > self._horizon
                # A full load reads only what a later sync must not apply again; a replay reads from the old horizon.
                entries = conn.execute(
                    "SELECT seq, xid >= %s::text::xid8 AS kept, document_pk FROM kb_vec_log"
                    " WHERE xid >= %s::text::xid8", (horizon, horizon if full else min(self._horizon, horizon)),
                ).fetchall()
                applied = {int(e["seq"]) for e in entries if e["kept"]}
                if full:
                    if int(conn.execute("SELECT count(*) AS n FROM kb_chunks").fetchone()["n"]) > self._max_rows:
                        self._give_up()
                        return
                    self._vectors.load(self._doc_rows(conn, None), 0)
                else:
                    changed = sorted({int(e["document_pk"]) for e in entries if int(e["seq"]) not in self._applied})
                    self._vectors.update(changed, self._doc_rows(conn, changed), 0)
        except BaseException:
            self._vectors.reset()  # never search a half-applied copy
            self._horizon, self._applied = -1, set()
            raise
        self._horizon, self._applied = horizon, applied

    def _doc_rows(self, conn: Any, documents: Sequence[int] | None) -> Iterator[DocRows]:
        """The vectors of ``documents`` (None: all) as the transaction's snapshot sees them, one ``DocRows`` per
        document that has chunks; read in binary (a 384-d vector is 1.5 KB instead of ~7 KB of text)."""
        sql = ("SELECT k.document_pk, d.collection_pk, k.pk, vector_send(k.embedding) AS v FROM kb_chunks k"
               " JOIN kb_documents d ON d.pk = k.document_pk")
        params: tuple[Any, ...] = ()
        if documents is not None:
            if not documents:
                return
            sql += " WHERE k.document_pk = ANY(%s::bigint[])"
            params = (list(documents),)
        sql += " ORDER BY k.document_pk, k.ordinal"
        doc, col = -1, -1
        pks: list[int] = []
        blobs: list[bytes] = []
        # A server-side cursor: the rows stream in batches instead of all at once (150 MB at 100k chunks).
        with conn.cursor("kb_resident_vectors", binary=True) as cur:
            cur.itersize = 2000
            cur.execute(sql, params)
            for r in cur:
                if r["document_pk"] != doc and pks:
                    yield DocRows(doc, col, np.array(pks, dtype=np.int64), unpack_vectors(blobs, self._vectors.dim))
                    pks, blobs = [], []
                doc, col = r["document_pk"], r["collection_pk"]
                pks.append(r["pk"])
                blobs.append(bytes(r["v"]))
        if pks:
            yield DocRows(doc, col, np.array(pks, dtype=np.int64), unpack_vectors(blobs, self._vectors.dim))
