"""Every row of ``kb.db`` as plain values, for ``inhouse store migrate`` (read in one snapshot; ids and primary keys
kept, vectors as float32 arrays, the keyword text as it was indexed: ``title\\nchunk text``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from inhouse.kb.index.sqlite.store import SqliteIndexStore

_TABLES = {
    "kb_collections": "SELECT pk, id, name, description, created_at, sketch_questions FROM kb_collections ORDER BY pk",
    "kb_acl": "SELECT owner, kind, principal FROM kb_acl ORDER BY owner, kind, principal",
    "kb_documents": ("SELECT pk, id, collection_pk, source_path, sha256, label_rank, has_acl, title, filename, mime,"
                     " metadata, version, created_at, size_bytes, chunk_count FROM kb_documents ORDER BY pk"),
    "kb_files": "SELECT document_pk, data FROM kb_files ORDER BY document_pk",
}
_CHUNKS = ("SELECT k.pk, k.id, k.document_pk, k.ordinal, k.content, k.section, k.page_start, k.page_end,"
           " k.token_count, f.text, v.embedding FROM kb_chunks k JOIN kb_fts f ON f.rowid = k.pk"
           " JOIN kb_vec v ON v.rowid = k.pk ORDER BY k.pk")


@dataclass
class IndexExport:
    dim: int
    counts: dict[str, int]
    _store: SqliteIndexStore
    _conn: Any

    def rows(self, table: str) -> Iterator[dict[str, Any]]:
        """Rows of ``kb_collections``, ``kb_acl``, ``kb_documents``, ``kb_files`` or ``kb_chunks``."""
        sql = _CHUNKS if table == "kb_chunks" else _TABLES[table]
        cur = self._conn.execute(sql)
        names: list[str] | None = None
        for values in cur:
            if names is None:  # apsw describes a statement only while it has a row: an empty table raised here
                names = [d[0] for d in cur.getdescription()]
            row = dict(zip(names, values, strict=True))
            if table == "kb_chunks":
                row["embedding"] = np.frombuffer(row["embedding"], dtype=np.float32)
            yield row


@contextmanager
def export_index(store: SqliteIndexStore) -> Iterator[IndexExport]:
    """One read snapshot of the store, held while the caller copies."""
    counts = store.counts()
    with store._r.snapshot() as conn:
        yield IndexExport(store.dim, counts, store, conn)
