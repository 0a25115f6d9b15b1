"""Loading an exported ``kb.db`` into the PostgreSQL index tables (``inhouse store migrate``): ids, primary keys,
labels, access lists, bytes and vectors copied unchanged, the keyword terms computed from the indexed text as
``PostgresIndexStore`` computes them, the ``bigserial`` sequences moved past the copied keys. The keyword and
vector indexes are dropped for the load and built once at the end (an HNSW graph built in one pass is built
several times faster than row by row). ``clean``: what the caller makes of each row's values before it is written
(the copy puts U+FFFD in place of U+0000, which PostgreSQL's text cannot hold); the keyword terms are computed from
the cleaned text."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from inhouse.kb.index.postgres.schema import SEARCH_INDEXES
from inhouse.kb.index.postgres.terms import tsvector_literal, vector_literal
from inhouse.kb.index.sqlite.export import IndexExport

_BATCH = 500
_COLUMNS = {
    "kb_collections": ("pk", "id", "name", "description", "created_at", "sketch_questions"),
    "kb_acl": ("owner", "kind", "principal"),
    "kb_documents": ("pk", "id", "collection_pk", "source_path", "sha256", "label_rank", "has_acl", "title",
                     "filename", "mime", "metadata", "version", "created_at", "size_bytes", "chunk_count"),
    "kb_files": ("document_pk", "data"),
}
_BOOLEANS = ("has_acl", "sketch_questions")  # 0/1 in SQLite
_CHUNK_COLUMNS = ("pk", "id", "document_pk", "ordinal", "content", "section", "page_start", "page_end", "token_count",
                  "text")

Row = tuple[Any, ...]


def _batches(rows: Iterable[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    it = iter(rows)
    while batch := list(islice(it, _BATCH)):
        yield batch


def load_index(conn: Any, export: IndexExport,
               clean: Callable[[str, Row], Row] = lambda _table, row: row) -> dict[str, int]:
    """Insert every row of ``export`` on ``conn`` (inside the caller's transaction); the rows copied per table."""
    copied: dict[str, int] = {}
    for table, cols in _COLUMNS.items():
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
        rows = (clean(table, tuple(bool(r[c]) if c in _BOOLEANS else r[c] for c in cols))
                for r in export.rows(table))
        copied[table] = 0
        for batch in _batches(rows):
            conn.cursor().executemany(sql, batch)
            copied[table] += len(batch)

    def chunk_row(r: Any) -> Row:
        row = clean("kb_chunks", tuple(r[c] for c in _CHUNK_COLUMNS))
        c = dict(zip(_CHUNK_COLUMNS, row, strict=True))
        return (*row, tsvector_literal(c["text"], c["section"]), vector_literal(r["embedding"]))

    chunk_rows = map(chunk_row, export.rows("kb_chunks"))
    copied["kb_chunks"] = 0
    conn.execute("DROP INDEX kb_chunks_tsv, kb_chunks_embedding")
    for batch in _batches(chunk_rows):
        conn.cursor().executemany(
            "INSERT INTO kb_chunks (pk, id, document_pk, ordinal, content, section, page_start, page_end, token_count,"
            " text, tsv, embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::tsvector, %s::vector)", batch)
        copied["kb_chunks"] += len(batch)
    conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for ddl in SEARCH_INDEXES:
        conn.execute(ddl)
    for table in ("kb_collections", "kb_documents", "kb_chunks"):
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'pk'),"
                     f" (SELECT coalesce(max(pk), 0) + 1 FROM {table}), false)")
    return copied
