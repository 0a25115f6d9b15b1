"""``inhouse kb check`` on PostgreSQL: what the server can tell about its own pages and indexes, and the same
cross-checks of rows, keyword terms and vectors as on SQLite.

PostgreSQL has no ``PRAGMA integrity_check``. What stands in for it (``integrity``, ``['ok']`` when nothing is found):

* every index of the ``kb_`` tables is valid and ready (a failed ``CREATE INDEX CONCURRENTLY`` or ``REINDEX`` leaves
  one that is not);
* every page of those tables is read (rows, TOAST included): with data checksums on (PostgreSQL 18's default for a
  new cluster) a damaged page fails the read, and the error is reported here;
* with the ``amcheck`` extension installed in the database: ``bt_index_check`` of each B-tree and
  ``gin_index_check`` (PostgreSQL 18) of the keyword index. Without it these are skipped; HNSW has no checker.

``fts_integrity`` (the keyword index against its content): every chunk's ``tsv`` equals the terms of its text as
the store writes them (``terms.tsvector_literal``), recomputed here in batches.
"""

from __future__ import annotations

from typing import Any

from inhouse.kb.index.postgres.terms import tsvector_literal
from inhouse.kb.index.protocol import IndexCheck
from inhouse.store.postgres.database import PostgresDatabase

_BATCH = 2000
_TABLES = ("kb_collections", "kb_acl", "kb_documents", "kb_files", "kb_chunks")
# One full read of each table: every heap and TOAST page is checksummed when read.
_READS = {
    "kb_collections": "SELECT count(*), sum(length(name || description)) FROM kb_collections",
    "kb_acl": "SELECT count(*), sum(length(owner || principal)) FROM kb_acl",
    "kb_documents": "SELECT count(*), sum(length(title || metadata || source_path)) FROM kb_documents",
    "kb_files": "SELECT count(*), sum(length(data)) FROM kb_files",
    "kb_chunks": "SELECT count(*), sum(length(content || text) + length(tsv) + vector_dims(embedding))"
                 " FROM kb_chunks",
}
_INDEXES = ("SELECT i.indexrelid::regclass::text AS name, am.amname AS method, i.indisvalid AND i.indisready AS ok"
            " FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am am ON am.oid = c.relam WHERE t.relname = ANY(%s::text[]) ORDER BY 1")


def count_rows(db: PostgresDatabase) -> dict[str, int]:
    """The SQLite store's counts. Keyword terms and vectors live in the chunk row here, so an orphan of either
    cannot exist; they are counted as chunks lacking them."""
    row = db.query_one(
        "SELECT (SELECT count(*) FROM kb_collections) AS collections,"
        " (SELECT count(*) FROM kb_documents) AS documents, (SELECT count(*) FROM kb_chunks) AS chunks,"
        " (SELECT count(*) FROM kb_chunks WHERE tsv IS NOT NULL) AS fts_rows,"
        " (SELECT count(*) FROM kb_chunks WHERE embedding IS NOT NULL) AS vectors,"
        " (SELECT count(*) FROM kb_files) AS files,"
        " (SELECT count(*) FROM kb_chunks WHERE document_pk NOT IN (SELECT pk FROM kb_documents))"
        "   AS orphan_chunks,"
        " 0 AS orphan_fts, 0 AS orphan_vectors,"
        " (SELECT count(*) FROM kb_files WHERE document_pk NOT IN (SELECT pk FROM kb_documents)) AS orphan_files,"
        " (SELECT count(*) FROM kb_chunks WHERE embedding IS NULL) AS chunks_without_vector,"
        " (SELECT count(*) FROM kb_chunks WHERE tsv IS NULL) AS chunks_without_fts,"
        " (SELECT count(*) FROM kb_documents WHERE pk NOT IN (SELECT document_pk FROM kb_files))"
        "   AS documents_without_file,"
        " (SELECT count(*) FROM (SELECT 1 FROM kb_documents GROUP BY collection_pk, sha256"
        "   HAVING count(*) > 1) x) AS duplicate_documents,"
        " (SELECT count(*) FROM kb_documents d WHERE d.chunk_count != (SELECT count(*) FROM kb_chunks k"
        "   WHERE k.document_pk = d.pk)) AS chunk_count_mismatch")
    assert row is not None
    return {k: int(v) for k, v in row.items()}


def _integrity(db: PostgresDatabase) -> list[str]:
    found: list[str] = []
    indexes = db.query(_INDEXES, (list(_TABLES),))
    found += [f"index {r['name']} is not valid: rebuild it (REINDEX INDEX {r['name']})" for r in indexes if not r["ok"]]
    for table, sql in _READS.items():
        try:
            db.query(sql)
        except db.errors as exc:
            found.append(f"{table} cannot be read: {str(exc).strip()[:300]}")
    if db.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'"):
        checker = {"btree": "bt_index_check", "gin": "gin_index_check"}
        for r in indexes:
            if r["ok"] and r["method"] in checker:
                try:
                    db.query(f"SELECT {checker[r['method']]}(%s::regclass)", (r["name"],))
                except db.errors as exc:
                    found.append(f"index {r['name']}: {str(exc).strip()[:300]}")
    return found or ["ok"]


def _keyword_mismatches(db: PostgresDatabase) -> int:
    """Chunks whose stored ``tsv`` is not the terms of their text (read in one snapshot)."""
    bad = 0
    with db.transaction(isolation="REPEATABLE READ READ ONLY") as conn, conn.cursor(name="kb_check") as cur:
        cur.itersize = _BATCH
        cur.execute("SELECT pk, text FROM kb_chunks ORDER BY pk")
        while rows := cur.fetchmany(_BATCH):
            row: Any = conn.execute(
                "SELECT count(*) AS n FROM kb_chunks k JOIN unnest(%s::bigint[], %s::text[]) AS x(pk, lit)"
                " ON k.pk = x.pk WHERE k.tsv IS NOT NULL AND k.tsv <> x.lit::tsvector",
                ([r["pk"] for r in rows], [tsvector_literal(r["text"]) for r in rows])).fetchone()
            bad += int(row["n"])
    return bad


def check_index(db: PostgresDatabase) -> IndexCheck:
    integrity = _integrity(db)
    try:
        bad = _keyword_mismatches(db)
        fts = "ok" if not bad else f"{bad} chunks whose keyword terms (tsv) do not match their text"
    except db.errors as exc:
        fts = str(exc).strip()[:300]
    return IndexCheck(integrity, fts, count_rows(db))
