"""``SqliteIndexStore``: the embedded index, one SQLite file (``<data_dir>/kb.db``) in WAL mode.

It holds collections, access lists, documents (with their original bytes, for download), chunks, two FTS5 keyword
indexes (``trigram`` and words) and vectors (``sqlite-vec`` ``vec0``, cosine). A document with its chunks, keyword
rows, vectors and bytes commits in one transaction, so readers see a version whole or not at all and a killed
process leaves no orphans.

Why ``apsw``: the stdlib ``sqlite3`` of this Python cannot load extensions, and ``sqlite-vec`` is one. The SQL of
the knowledge base lives in this package: ``schema.py`` (tables and migrations), ``access.py`` (the access rule
as SQL), ``keyword.py`` (keyword search) and this module (the store); transactions and migrations go through
``inhouse.store.sqlite.database``.

Keyword search (``keyword.py``): Latin words in the word index ``kb_words`` (whole words, title and section path
weighted, words found in most chunks left out), CJK runs in the trigram index ``kb_fts``, fused by rank when a
query has both; 1-2 character terms alone fall back to a ``LIKE`` scan. The access rule filters the matches before
``ORDER BY … LIMIT``, so the limit is filled from allowed rows only.

Vector search: an exact cosine scan of a resident float32 copy of the vectors (``kb.index.resident``) in which
only the rows of documents the caller may see are multiplied, so the ``k`` nearest are taken among what the
caller may see and ``top_k`` is always filled when enough exists. The copy follows the database through
``kb_vec_log`` (triggers on ``kb_chunks``), replayed in the same read transaction as the access query. With
``resident_vectors=False`` the search is a ``vec0`` KNN with the rule pushed in as ``rowid IN (allowed chunks)``.

Schema: ``schema.py``; older files are upgraded in place when they are opened.

Deletion (and the old version of a replaced document): ``secure_delete`` zeroes freed pages, vectors are overwritten
with zeros before their row is deleted (vec0 reuses its blocks rather than freeing them), and both FTS5 indexes run
with their ``secure-delete`` option (schema version 5), so a deleted row's postings leave with it (a deletion of a
large share of the index deletes plainly and merges the indexes once instead). The word index reads a row's text back
from ``kb_words_src`` (chunk and document rows) to delete it: its row goes before theirs, and what it indexes is
exactly what that view shows (the title as stored, cut at 500). Once such a transaction commits, the WAL is copied into
the file and cut to zero bytes (``Database.purge_after_commit``): until then ``kb.db-wal`` held the deleted text in the
frames of its earlier writes. Opening the file does the same after a migration (version 5 dropped old postings).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from inhouse.errors import Conflict, InvalidRequest, NotFound
from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.document import Chunk
from inhouse.kb.index.protocol import (
    ChangedMeanwhile,
    Collection,
    DocumentRecord,
    Expected,
    IndexCheck,
    NewDocument,
    PutResult,
    Scored,
    SearchFilters,
    StoredChunk,
    check_collection_name,
    new_id,
    not_replaceable,
    prepared_vectors,
    unchanged_chunks,
    unrestricted,
)
from inhouse.kb.index.resident import DocRows, ResidentVectors
from inhouse.kb.index.sqlite.access import allowed_chunks, allowed_docs, document_condition
from inhouse.kb.index.sqlite.keyword import keyword_matches
from inhouse.kb.index.sqlite.schema import migrate_index
from inhouse.kb.index.sqlite.schema import schema_version as recorded_version
from inhouse.store.sqlite.database import Database, configure

# The log keeps its newest entries; a searcher that fell further behind reloads every vector.
_LOG_KEEP = 200_000
# Deleting a chunk's postings in place (secure-delete) costs about what merging 300 indexed chunks does: a deletion of
# more than 1/300 of the index's chunks merges it once instead (measured on the Python manual, 2 vCPU).
_MERGE_SHARE = 300


class SqliteIndexStore:
    """The embedded ``IndexStore``. Thread-safe: one writer connection and one reader connection, each behind a
    lock (WAL lets searches run while an ingestion commits).

    ``resident_vectors`` (default): vector search scans a copy of the vectors in RAM (``ResidentVectors``,
    1.5 KB per 384-d chunk), loaded on the first search and kept current from ``kb_vec_log``. Off: every search
    is a ``vec0`` scan on disk (the reference the resident path is tested against; no extra memory)."""

    def __init__(self, path: Path | str, *, dim: int, busy_timeout_ms: int = 10_000,
                 clock: Any = time.time, resident_vectors: bool = True) -> None:
        self.path = str(path)
        self.dim = int(dim)
        self._clock = clock
        self._busy_timeout_ms = busy_timeout_ms
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._w = Database(self.path, conn=self._open(busy_timeout_ms), what="the knowledge index")
        if migrate_index(self._w, self.dim):
            self._w.purge_wal()
        # :memory: databases are private to their connection, so tests on :memory: share the writer.
        self._r = self._w if self.path == ":memory:" else Database(self.path, conn=self._open(busy_timeout_ms))
        if self._r is not self._w:
            # Searches read FTS segments and chunk rows at random: map the file rather than copy pages.
            self._r.query("PRAGMA mmap_size = 1073741824")
        self._resident = ResidentVectors(self.dim) if resident_vectors else None
        self._closed = False

    def _open(self, busy_timeout_ms: int) -> Any:
        import apsw
        import sqlite_vec

        conn = apsw.Connection(self.path)
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        configure(conn, busy_timeout_ms=busy_timeout_ms, secure_delete=True)
        return conn

    def schema_version(self) -> int:
        return recorded_version(self._r)

    def vec_version(self) -> str:
        return str(self._r.scalar("SELECT vec_version()"))

    def _tx(self) -> Any:
        return self._w.transaction()

    def _read(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        return self._r.query(sql, params)

    @contextmanager
    def _snapshot(self) -> Iterator[Any]:
        """The reader connection inside one read transaction: every statement sees the same committed state (the
        resident vectors, the access rule and the chunk ids of one search agree)."""
        with self._r.snapshot() as r:
            yield r

    # -- collections ------------------------------------------------------------------------------------

    def create_collection(self, name: str, *, acl: Acl, description: str = "",
                          sketch_questions: bool = False) -> Collection:
        check_collection_name(name)
        cid = new_id("col")
        with self._tx() as c:
            if c.execute("SELECT 1 FROM kb_collections WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"A collection named '{name}' already exists.", param="name")
            c.execute("INSERT INTO kb_collections (id, name, description, created_at, sketch_questions)"
                      " VALUES (?, ?, ?, ?, ?)", (cid, name, description[:2000], self._clock(), int(sketch_questions)))
            self._write_acl(c, cid, acl)
        return self.get_collection(cid)

    def _write_acl(self, c: Any, owner: str, acl: Acl | None) -> None:
        c.execute("DELETE FROM kb_acl WHERE owner = ?", (owner,))
        if acl is None:
            return
        rows = [(owner, "group", g) for g in acl.groups] + [(owner, "key", k) for k in acl.keys]
        c.executemany("INSERT INTO kb_acl (owner, kind, principal) VALUES (?, ?, ?)", rows)

    def _acl_of(self, owner: str, c: Any = None) -> Acl:
        """``owner``'s list; ``c``: as the write transaction ``c`` reads it."""
        sql, params = "SELECT kind, principal FROM kb_acl WHERE owner = ?", (owner,)
        rows = list(c.execute(sql, params)) if c is not None else self._read(sql, params)
        return Acl(groups=frozenset(p for k, p in rows if k == "group"),
                   keys=frozenset(p for k, p in rows if k == "key"))

    _COL_SQL = ("SELECT c.id, c.name, c.description, c.created_at,"
                " (SELECT count(*) FROM kb_documents d WHERE d.collection_pk = c.pk), c.sketch_questions"
                " FROM kb_collections c")

    def _collection(self, row: tuple[Any, ...]) -> Collection:
        return Collection(id=row[0], name=row[1], description=row[2], acl=self._acl_of(row[0]),
                          created_at=row[3], document_count=row[4], sketch_questions=bool(row[5]))

    def get_collection(self, ref: str) -> Collection:
        rows = self._read(self._COL_SQL + " WHERE c.id = ? OR c.name = ?", (ref, ref))
        if not rows:
            raise NotFound(f"No collection '{ref}'.", param="collection")
        return self._collection(rows[0])

    def list_collections(self) -> list[Collection]:
        return [self._collection(r) for r in self._read(self._COL_SQL + " ORDER BY c.name")]

    def update_collection(self, collection_id: str, *, acl: Acl | None = None,
                          groups: Iterable[str] | None = None, keys: Iterable[str] | None = None,
                          description: str | None = None, sketch_questions: bool | None = None) -> Collection:
        with self._tx() as c:
            if not c.execute("SELECT 1 FROM kb_collections WHERE id = ?", (collection_id,)).fetchone():
                raise NotFound(f"No collection '{collection_id}'.", param="collection")
            if description is not None:
                c.execute("UPDATE kb_collections SET description = ? WHERE id = ?", (description[:2000], collection_id))
            if sketch_questions is not None:
                c.execute("UPDATE kb_collections SET sketch_questions = ? WHERE id = ?",
                          (int(sketch_questions), collection_id))
            if acl is None and (groups is not None or keys is not None):
                # The half not given is kept as this transaction reads it: read before, a concurrent change of it
                # (another admin's, a deleted group's name taken off) was written back.
                acl = self._acl_of(collection_id, c)
            if acl is not None:
                self._write_acl(c, collection_id, Acl(groups=acl.groups if groups is None else frozenset(groups),
                                                      keys=acl.keys if keys is None else frozenset(keys)))
        return self.get_collection(collection_id)

    def delete_collection(self, collection_id: str, *, run: str | None = None) -> None:
        col = self.get_collection(collection_id)
        with self._tx() as c:
            self._w.purge_after_commit()  # its name and description, if it had no documents
            self.delete_documents([doc.id for doc in self.list_documents(col.id, limit=1_000_000)], run=run)
            c.execute("DELETE FROM kb_acl WHERE owner = ?", (col.id,))
            c.execute("DELETE FROM kb_collections WHERE id = ?", (col.id,))

    def forget_group(self, name: str, *, run: str | None = None,
                     owners: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
        # Group names are ASCII (``check_name``): lower() compares them as the directory does.
        where = "a.kind = 'group' AND lower(a.principal) = lower(?)"
        params: tuple[Any, ...] = (name,)
        if owners is not None:
            where += " AND a.owner IN (SELECT value FROM json_each(?))"
            params += (json.dumps(sorted(set(owners))),)
        named = " FROM kb_acl a JOIN {} t ON t.id = a.owner WHERE " + where
        with self._tx() as c:
            cols = sorted({r[0] for r in c.execute("SELECT t.id" + named.format("kb_collections"), params)})
            docs = sorted({r[0] for r in c.execute("SELECT t.id" + named.format("kb_documents"), params)})
            c.execute("DELETE FROM kb_acl AS a WHERE " + where, params)
            _journal(c, run, docs, "relabelled")
        return cols, docs

    # -- documents --------------------------------------------------------------------------------------

    _DOC_COLS = ("d.id, c.id, d.source_path, d.sha256, d.label_rank, d.has_acl, d.title, d.filename, d.mime,"
                 " d.metadata, d.version, d.created_at, d.size_bytes, d.chunk_count")
    _DOC_FROM = " FROM kb_documents d JOIN kb_collections c ON c.pk = d.collection_pk"

    def _document(self, row: tuple[Any, ...], acl: Acl | None = None) -> DocumentRecord:
        if row[5] and acl is None:
            acl = self._acl_of(row[0])
        return DocumentRecord(
            id=row[0], collection_id=row[1], source_path=row[2], sha256=row[3], label=list(Label)[row[4]],
            acl=acl if row[5] else None, title=row[6], filename=row[7], mime=row[8],
            metadata=json.loads(row[9]), version=row[10], created_at=row[11], size_bytes=row[12],
            chunk_count=row[13],
        )

    def _documents(self, rows: list[tuple[Any, ...]]) -> list[DocumentRecord]:
        """A page of documents, with the own lists of all of them read in one query."""
        owners = [r[0] for r in rows if r[5]]
        found: dict[str, tuple[set[str], set[str]]] = {o: (set(), set()) for o in owners}
        if owners:
            for owner, kind, principal in self._read("SELECT owner, kind, principal FROM kb_acl WHERE owner IN"
                                                     " (SELECT value FROM json_each(?))", (json.dumps(owners),)):
                found[owner][0 if kind == "group" else 1].add(principal)
        acls = {o: Acl(groups=frozenset(g), keys=frozenset(k)) for o, (g, k) in found.items()}
        return [self._document(r, acls.get(r[0])) for r in rows]

    def find_document(self, collection_id: str, *, source_path: str | None = None,
                      sha256: str | None = None) -> DocumentRecord | None:
        conds, params = ["c.id = ?"], [collection_id]
        if source_path is not None:
            conds.append("d.source_path = ?")
            params.append(source_path)
        if sha256 is not None:
            conds.append("d.sha256 = ?")
            params.append(sha256)
        rows = self._read("SELECT " + self._DOC_COLS + self._DOC_FROM + " WHERE " + " AND ".join(conds)
                          + " ORDER BY d.pk LIMIT 1", params)
        return self._document(rows[0]) if rows else None

    def get_document(self, document_id: str) -> DocumentRecord:
        rows = self._read("SELECT " + self._DOC_COLS + self._DOC_FROM + " WHERE d.id = ?", (document_id,))
        if not rows:
            raise NotFound(f"No document '{document_id}'.", param="document_id")
        return self._document(rows[0])

    def document_data(self, document_id: str) -> bytes:
        rows = self._read("SELECT f.data FROM kb_files f JOIN kb_documents d ON d.pk = f.document_pk WHERE d.id = ?",
                          (document_id,))
        if not rows:
            raise NotFound(f"No document '{document_id}'.", param="document_id")
        return bytes(rows[0][0])

    def list_documents(self, collection_id: str, *, limit: int = 100, offset: int = 0) -> list[DocumentRecord]:
        rows = self._read("SELECT " + self._DOC_COLS + self._DOC_FROM + " WHERE c.id = ? ORDER BY d.source_path"
                          " LIMIT ? OFFSET ?", (collection_id, int(limit), int(offset)))
        return self._documents(rows)

    def visible_documents(self, scope: AccessScope, collection_id: str, *, limit: int = 100,
                          offset: int = 0) -> list[DocumentRecord]:
        # The collection's documents in path order (its unique index), each tested, until the page is full: most
        # members see most of a collection, and their first page reads about ``limit`` rows; listing every allowed
        # document to sort them read them all (25 ms instead of 0.1 ms at 20k visible). A member who sees a sliver
        # reads more rows before a page is full, at ~0.6 µs a row (12 ms for a page at the end of 20k documents).
        visible, params = document_condition(scope, SearchFilters())
        params.update(col=collection_id, limit=int(limit), offset=int(offset))
        rows = self._read("SELECT " + self._DOC_COLS + self._DOC_FROM + f" WHERE c.id = :col AND {visible}"
                          " ORDER BY d.source_path LIMIT :limit OFFSET :offset", params)
        return self._documents(rows)

    def document_labels(self, at_least: Label) -> dict[str, tuple[Label, int]]:
        rows = self._read("SELECT id, label_rank, version FROM kb_documents WHERE label_rank >= ?", (at_least.rank,))
        return {str(i): (list(Label)[rank], int(version)) for i, rank, version in rows}

    def put_document(self, doc: NewDocument, *, run: str | None = None, own_copy: bool = False,
                     expect: Expected | None = None, scope: AccessScope | None = None) -> PutResult:
        vectors = prepared_vectors(doc, self.dim)
        now = self._clock()
        with self._tx() as c:
            col = c.execute("SELECT pk FROM kb_collections WHERE id = ?", (doc.collection_id,)).fetchone()
            if col is None:
                raise NotFound(f"No collection '{doc.collection_id}'.", param="collection")
            col_pk = col[0]
            old = c.execute("SELECT pk, id, sha256, label_rank, has_acl FROM kb_documents WHERE collection_pk = ?"
                            " AND source_path = ?", (col_pk, doc.source_path)).fetchone()
            if old is not None and scope is not None:
                # Where it counts: relabelled restricted (or its list changed) while the member's file was parsed.
                visible, params = document_condition(scope, SearchFilters())
                params["pk"] = old[0]
                if not c.execute("SELECT 1" + self._DOC_FROM + f" WHERE d.pk = :pk AND {visible}", params).fetchone():
                    raise not_replaceable(doc.source_path)
            # Checked inside the write transaction: two ingestions of the same bytes cannot both add them.
            same = old if old is not None and old[2] == doc.sha256 else None
            if same is None and old is None and not own_copy:
                same = c.execute("SELECT pk, id FROM kb_documents WHERE collection_pk = ? AND sha256 = ? LIMIT 1",
                                 (col_pk, doc.sha256)).fetchone()
            if same is None and expect is not None:
                found = (None, None, None) if old is None else (
                    old[1], list(Label)[old[3]], self._acl_of(old[1], c) if old[4] else None)
                if not expect.matches(*found):
                    raise ChangedMeanwhile(doc.source_path)
            if same is not None:
                status, doc_id = "unchanged", same[1]
            else:
                meta = json.dumps(dict(doc.metadata), ensure_ascii=False, sort_keys=True)
                values = (doc.sha256, doc.label.rank, int(doc.acl is not None), doc.title[:500], doc.filename[:255],
                          doc.mime[:100], meta, len(doc.data), len(doc.chunks))
                if old is None:
                    status, doc_id = "added", new_id("doc")
                    c.execute("INSERT INTO kb_documents (id, collection_pk, source_path, sha256, label_rank, has_acl,"
                              " title, filename, mime, metadata, size_bytes, chunk_count, created_at, version)"
                              " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                              (doc_id, col_pk, doc.source_path, *values, now))
                    doc_pk = c.last_insert_rowid()
                    kept: dict[int, int] = {}
                else:
                    status, doc_id = "replaced", old[1]
                    doc_pk = old[0]
                    kept = self._unchanged_chunks(c, doc_pk, doc)
                    self._purge_content(c, [doc_pk], keep=frozenset(kept.values()))
                    self._w.purge_after_commit()
                    c.execute("UPDATE kb_documents SET sha256 = ?, label_rank = ?, has_acl = ?, title = ?,"
                              " filename = ?, mime = ?, metadata = ?, size_bytes = ?, chunk_count = ?,"
                              " created_at = ?, version = version + 1 WHERE pk = ?", (*values, now, doc_pk))
                self._write_acl(c, doc_id, doc.acl)
                c.execute("INSERT INTO kb_files (document_pk, data) VALUES (?, ?)", (doc_pk, doc.data))
                self._insert_chunks(c, doc_pk, doc, vectors, kept)
                self._prune_log(c)
                _journal(c, run, [doc_id], status)
        return PutResult(status, self.get_document(doc_id))  # type: ignore[arg-type]

    @staticmethod
    def _fts_text(doc: NewDocument, chunk: Chunk) -> str:
        # The title is indexed with each chunk: questions often name the document ("the X200 manual").
        return doc.title.replace("\n", " ") + "\n" + chunk.text

    def _unchanged_chunks(self, c: Any, doc_pk: int, doc: NewDocument) -> dict[int, int]:
        """The rows of the stored version that a new version ``doc`` of the document keeps as they are: new chunk
        index -> chunk pk, for each new chunk whose text, content and section equal a stored one's under the same
        title. Their keyword rows and vectors stay; only their position is updated. A small edit of a long document
        then rewrites the chunks it touched, not every posting of the document (secure-delete makes a deleted
        chunk's postings cost about as much as its embedding)."""
        row = c.execute("SELECT title FROM kb_documents WHERE pk = ?", (doc_pk,)).fetchone()
        if row is None or row[0] != doc.title[:500]:
            return {}  # the title is in every keyword row
        stored = c.execute("SELECT k.pk, f.text, k.content, k.section FROM kb_chunks k JOIN kb_fts f ON f.rowid = k.pk"
                           " WHERE k.document_pk = ? ORDER BY k.ordinal", (doc_pk,))
        return unchanged_chunks(stored, [(self._fts_text(doc, ch), ch.content, ch.section) for ch in doc.chunks])

    def _insert_chunks(self, c: Any, doc_pk: int, doc: NewDocument, vectors: np.ndarray,
                       kept: Mapping[int, int]) -> None:
        for i, ch in enumerate(doc.chunks):
            if i in kept:
                c.execute("UPDATE kb_chunks SET ordinal = ?, page_start = ?, page_end = ?, token_count = ?"
                          " WHERE pk = ?", (i, ch.page_start, ch.page_end, ch.token_count, kept[i]))
                continue
            c.execute("INSERT INTO kb_chunks (id, document_pk, ordinal, content, section, page_start, page_end,"
                      " token_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (new_id("chk"), doc_pk, i, ch.content, ch.section, ch.page_start, ch.page_end,
                       ch.token_count))
            pk = c.last_insert_rowid()
            c.execute("INSERT INTO kb_fts (rowid, text) VALUES (?, ?)", (pk, self._fts_text(doc, ch)))
            c.execute("INSERT INTO kb_words (rowid, title, section, body) VALUES (?, ?, ?, ?)",
                      (pk, doc.title[:500], ch.section, ch.content))
            c.execute("INSERT INTO kb_vec (rowid, embedding) VALUES (?, ?)", (pk, vectors[i].tobytes()))

    @staticmethod
    def _prune_log(c: Any, keep: int | None = None) -> None:
        """Drop all but the newest ``keep`` entries of ``kb_vec_log`` once it holds twice that many, and record
        how far it was cut (a searcher behind that point reloads every vector instead of replaying)."""
        keep = _LOG_KEEP if keep is None else keep
        head = int(c.execute("SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'kb_vec_log'), 0)")
                   .fetchone()[0])
        pruned = int(c.execute("SELECT value FROM kb_meta WHERE key = 'vec_log_pruned'").fetchone()[0])
        if head - pruned > 2 * keep:
            cut = head - keep
            c.execute("DELETE FROM kb_vec_log WHERE seq <= ?", (cut,))
            c.execute("UPDATE kb_meta SET value = ? WHERE key = 'vec_log_pruned'", (str(cut),))

    def _purge_content(self, c: Any, doc_pks: Sequence[int], keep: frozenset[int] = frozenset()) -> None:
        """Chunks (but those in ``keep``), their keyword rows and vectors, and the bytes of documents (inside the
        caller's transaction). No posting of the removed text is left in either keyword index: each row's postings
        are deleted in place (FTS5 secure-delete, about 13 ms per chunk of manual text on 2 vCPU: every trigram's
        leaf is rewritten) unless the rows are a sizeable share of the index, when plain deletes and one merge of
        both indexes cost less (``optimize`` rewrites the index: about 45 µs per indexed chunk). The word index's
        rows go before the chunk rows it reads their text from."""
        zero = np.zeros(self.dim, dtype=np.float32).tobytes()
        pks = [pk for doc_pk in doc_pks for (pk,) in c.execute("SELECT pk FROM kb_chunks WHERE document_pk = ?",
                                                                  (doc_pk,)) if pk not in keep]
        merge = bool(pks) and len(pks) * _MERGE_SHARE > int(c.execute("SELECT count(*) FROM kb_chunks").fetchone()[0])
        if merge:
            c.execute("INSERT INTO kb_fts (kb_fts, rank) VALUES ('secure-delete', 0)")
            c.execute("INSERT INTO kb_words (kb_words, rank) VALUES ('secure-delete', 0)")
        for pk in pks:
            c.execute("DELETE FROM kb_fts WHERE rowid = ?", (pk,))
            c.execute("DELETE FROM kb_words WHERE rowid = ?", (pk,))
            c.execute("UPDATE kb_vec SET embedding = ? WHERE rowid = ?", (zero, pk))
            c.execute("DELETE FROM kb_vec WHERE rowid = ?", (pk,))
            c.execute("DELETE FROM kb_chunks WHERE pk = ?", (pk,))
        if merge:
            c.execute("INSERT INTO kb_fts (kb_fts) VALUES ('optimize')")
            c.execute("INSERT INTO kb_words (kb_words) VALUES ('optimize')")
            c.execute("INSERT INTO kb_fts (kb_fts, rank) VALUES ('secure-delete', 1)")
            c.execute("INSERT INTO kb_words (kb_words, rank) VALUES ('secure-delete', 1)")
        for doc_pk in doc_pks:
            c.execute("DELETE FROM kb_files WHERE document_pk = ?", (doc_pk,))

    def relabel(self, document_id: str, *, label: Label | None = None, acl: Acl | None = None,
                clear_acl: bool = False, metadata: Mapping[str, str] | None = None,
                run: str | None = None) -> DocumentRecord:
        with self._tx() as c:
            row = c.execute("SELECT metadata FROM kb_documents WHERE id = ?", (document_id,)).fetchone()
            if row is None:
                raise NotFound(f"No document '{document_id}'.", param="document_id")
            if metadata:
                merged = {**json.loads(row[0]), **metadata}
                c.execute("UPDATE kb_documents SET metadata = ? WHERE id = ?",
                          (json.dumps(merged, ensure_ascii=False, sort_keys=True), document_id))
            if label is not None:
                c.execute("UPDATE kb_documents SET label_rank = ? WHERE id = ?", (label.rank, document_id))
            if acl is not None or clear_acl:
                self._write_acl(c, document_id, None if clear_acl else acl)
                c.execute("UPDATE kb_documents SET has_acl = ? WHERE id = ?", (int(not clear_acl), document_id))
            _journal(c, run, [document_id], "relabelled")
        return self.get_document(document_id)

    def move_document(self, document_id: str, source_path: str, filename: str, *,
                      run: str | None = None) -> DocumentRecord:
        with self._tx() as c:
            row = c.execute("SELECT pk, collection_pk FROM kb_documents WHERE id = ?", (document_id,)).fetchone()
            if row is None:
                raise NotFound(f"No document '{document_id}'.", param="document_id")
            if c.execute("SELECT 1 FROM kb_documents WHERE collection_pk = ? AND source_path = ? AND pk != ?",
                         (row[1], source_path, row[0])).fetchone():
                raise Conflict(f"Another document of the collection is at '{source_path}'.", param="source_path")
            c.execute("UPDATE kb_documents SET source_path = ?, filename = ? WHERE pk = ?",
                      (source_path, filename[:255], row[0]))
            _journal(c, run, [document_id], "moved")
        return self.get_document(document_id)

    def delete_document(self, document_id: str, *, run: str | None = None) -> None:
        if not self.delete_documents([document_id], run=run):
            raise NotFound(f"No document '{document_id}'.", param="document_id")

    def delete_documents(self, document_ids: Sequence[str], *, run: str | None = None) -> int:
        with self._tx() as c:
            found = [(pk, doc_id) for doc_id in dict.fromkeys(document_ids)
                     for (pk,) in c.execute("SELECT pk FROM kb_documents WHERE id = ?", (doc_id,))]
            self._purge_content(c, [pk for pk, _ in found])
            if found:
                self._w.purge_after_commit()
            for pk, doc_id in found:
                c.execute("DELETE FROM kb_acl WHERE owner = ?", (doc_id,))
                c.execute("DELETE FROM kb_documents WHERE pk = ?", (pk,))
            self._prune_log(c)
            _journal(c, run, [doc_id for _, doc_id in found], "removed")
        return len(found)

    # -- the run journal ----------------------------------------------------------------------------

    def run_changes(self, run: str) -> list[tuple[str, str]]:
        return [(doc_id, action) for doc_id, action in
                self._read("SELECT document_id, action FROM kb_run_journal WHERE run = ? ORDER BY seq", (run,))]

    def journal_mark(self) -> int:
        return int(self._read("SELECT coalesce(max(seq), 0) FROM kb_run_journal")[0][0])

    def forget_run(self, run: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM kb_run_journal WHERE run = ?", (run,))

    def prune_journal(self, keep: Iterable[str], up_to: int) -> int:
        with self._tx() as c:
            c.execute("DELETE FROM kb_run_journal WHERE seq <= ? AND run NOT IN (SELECT value FROM json_each(?))",
                      (up_to, json.dumps(sorted(set(keep)))))
            return int(c.changes())

    _CHUNK_COLS = ("k.id, d.id, c.id, k.ordinal, k.content, k.section, k.page_start, k.page_end, d.title,"
                   " d.source_path, d.label_rank, f.text")
    _CHUNK_FROM = (" FROM kb_chunks k JOIN kb_documents d ON d.pk = k.document_pk"
                   " JOIN kb_collections c ON c.pk = d.collection_pk JOIN kb_fts f ON f.rowid = k.pk")

    @staticmethod
    def _chunk(row: tuple[Any, ...]) -> StoredChunk:
        text = row[11]
        # kb_fts holds "title\nchunk text": the chunk text is what follows the first line.
        text = text.split("\n", 1)[1] if "\n" in text else text
        return StoredChunk(id=row[0], document_id=row[1], collection_id=row[2], ordinal=row[3], text=text,
                           content=row[4], section=row[5], page_start=row[6], page_end=row[7], title=row[8],
                           source_path=row[9], label=list(Label)[row[10]])

    def document_chunks(self, document_id: str) -> list[StoredChunk]:
        rows = self._read("SELECT " + self._CHUNK_COLS + self._CHUNK_FROM + " WHERE d.id = ? ORDER BY k.ordinal",
                          (document_id,))
        return [self._chunk(r) for r in rows]

    def embedded_chunks(self, collection_id: str, source_path: str) -> dict[str, np.ndarray]:
        rows = self._read("SELECT f.text, v.embedding FROM kb_documents d JOIN kb_collections c"
                          " ON c.pk = d.collection_pk JOIN kb_chunks k ON k.document_pk = d.pk"
                          " JOIN kb_fts f ON f.rowid = k.pk JOIN kb_vec v ON v.rowid = k.pk"
                          " WHERE c.id = ? AND d.source_path = ?",
                          (collection_id, source_path))
        # kb_fts holds "title\nchunk text": the chunk text is what follows the first line.
        return {text.split("\n", 1)[-1]: np.frombuffer(blob, dtype=np.float32).copy() for text, blob in rows}

    # -- reads with the access rule ----------------------------------------------------------------------

    def _ids(self, pks: Sequence[int]) -> dict[int, str]:
        if not pks:
            return {}
        rows = self._read("SELECT pk, id FROM kb_chunks WHERE pk IN (SELECT value FROM json_each(?))",
                          (json.dumps(list(pks)),))
        return {int(pk): str(cid) for pk, cid in rows}

    def keyword_search(self, scope: AccessScope, query: str, filters: SearchFilters, limit: int) -> list[Scored]:
        n = self._resident.rows if self._resident is not None else 0
        with self._snapshot() as r:
            found = keyword_matches(r, query, scope, filters, limit, n)
            ids = self._ids([pk for pk, _ in found])
        return [Scored(ids[pk], score) for pk, score in found if pk in ids]

    def vector_search(self, scope: AccessScope, vector: np.ndarray, filters: SearchFilters,
                      limit: int) -> list[Scored]:
        v = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dim:
            raise InvalidRequest(f"query vector has {v.shape[0]} dimensions, the index {self.dim}.")
        if limit <= 0:
            return []
        if self._resident is None:
            return self._vec0_search(scope, v, filters, limit)
        with self._snapshot() as r:
            vectors = self._sync_vectors(r)
            visible: dict[int, set[int]] | None = None
            if not unrestricted(scope, filters):
                # The access rule decides which rows are scored: only the visible documents' rows are multiplied.
                docs, params = allowed_docs(scope, filters, columns="d.collection_pk, d.pk")
                visible = {}
                for col, doc in r.execute(docs, params):
                    visible.setdefault(int(col), set()).add(int(doc))
            pks, sims = vectors.search(v, int(limit), visible)
            ids = self._ids(pks.tolist())
        return [Scored(ids[pk], float(sim)) for pk, sim in zip(pks.tolist(), sims.tolist(), strict=True) if pk in ids]

    def _vec0_search(self, scope: AccessScope, v: np.ndarray, filters: SearchFilters, limit: int) -> list[Scored]:
        allowed, params = allowed_chunks(scope, filters)
        params.update(v=v.tobytes(), k=int(limit))
        # The access rule runs inside vec0's scan (rowid IN …): k nearest among the allowed rows only.
        where = "" if unrestricted(scope, filters) else f" AND rowid IN ({allowed})"
        with self._snapshot() as r:
            rows = list(r.execute(f"SELECT rowid, distance FROM kb_vec WHERE embedding MATCH :v AND k = :k{where}"
                                  " ORDER BY distance", params))
            ids = self._ids([int(pk) for pk, _ in rows])
        return [Scored(ids[int(pk)], 1.0 - float(dist)) for pk, dist in rows if int(pk) in ids]

    def _sync_vectors(self, r: Any) -> ResidentVectors:
        """The resident vectors brought up to the reader's snapshot (call inside ``_snapshot``): the documents
        named in ``kb_vec_log`` since the last sync are reloaded, or everything when the log no longer reaches
        back that far (first use, pruned log, a replaced file)."""
        res = self._resident
        assert res is not None
        head, pruned = r.execute(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'kb_vec_log'), 0),"
            " (SELECT value FROM kb_meta WHERE key = 'vec_log_pruned')").fetchone()
        head, pruned = int(head), int(pruned)
        try:
            if res.seq < 0 or res.seq < pruned or head < res.seq:
                res.load(self._doc_rows(r, None), head)
            elif head > res.seq:
                changed = [int(d) for (d,) in r.execute(
                    "SELECT DISTINCT document_pk FROM kb_vec_log WHERE seq > ?", (res.seq,))]
                res.update(changed, self._doc_rows(r, changed), head)
        except BaseException:
            res.reset()  # never search a half-applied copy
            raise
        return res

    def _doc_rows(self, r: Any, documents: Sequence[int] | None) -> Iterator[DocRows]:
        """The vectors of ``documents`` (None: all), one ``DocRows`` per document that has chunks."""
        # Rows of one document arrive together: kb_chunks is read in (document_pk, ordinal) index order, then each
        # vector is a vec0 point lookup (CROSS JOIN fixes that order; with vec0 outside, SQLite sorted the blobs).
        sql = ("SELECT k.document_pk, d.collection_pk, k.pk, v.embedding FROM kb_chunks k INDEXED BY kb_chunks_doc"
               " CROSS JOIN kb_documents d ON d.pk = k.document_pk CROSS JOIN kb_vec v ON v.rowid = k.pk")
        params: tuple[Any, ...] = ()
        if documents is not None:
            sql += " WHERE k.document_pk IN (SELECT value FROM json_each(?))"
            params = (json.dumps(list(documents)),)
        sql += " ORDER BY k.document_pk, k.ordinal"
        doc, col = -1, -1
        pks: list[int] = []
        blobs: list[bytes] = []
        for d, c, pk, blob in r.execute(sql, params):
            if d != doc and pks:
                yield DocRows(doc, col, np.array(pks, dtype=np.int64), self._matrix(blobs))
                pks, blobs = [], []
            doc, col = d, c
            pks.append(pk)
            blobs.append(blob)
        if pks:
            yield DocRows(doc, col, np.array(pks, dtype=np.int64), self._matrix(blobs))

    def _matrix(self, blobs: list[bytes]) -> np.ndarray:
        return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), self.dim)

    def get_chunks(self, scope: AccessScope, chunk_ids: Sequence[str]) -> list[StoredChunk]:
        if not chunk_ids:
            return []
        # The rule per row of the few chunks asked for, not as the list of every allowed document.
        visible, params = document_condition(scope, SearchFilters())
        params["ids"] = json.dumps(list(chunk_ids))
        rows = self._read("SELECT " + self._CHUNK_COLS + self._CHUNK_FROM
                          + f" WHERE k.id IN (SELECT value FROM json_each(:ids)) AND {visible}", params)
        by_id = {r[0]: self._chunk(r) for r in rows}
        return [by_id[i] for i in chunk_ids if i in by_id]

    def visible_document(self, scope: AccessScope, document_id: str) -> bool:
        visible, params = document_condition(scope, SearchFilters())
        params["id"] = document_id
        return bool(self._read("SELECT 1" + self._DOC_FROM + f" WHERE d.id = :id AND {visible}", params))

    def visible_document_counts(self, scope: AccessScope, collection_ids: Iterable[str]) -> dict[str, int]:
        docs, params = allowed_docs(scope, SearchFilters(collection_ids=frozenset(collection_ids)), columns="c.id")
        return {str(cid): int(n) for cid, n in self._read(f"SELECT id, count(*) FROM ({docs}) GROUP BY id", params)}

    # -- housekeeping --------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        q = {
            "collections": "SELECT count(*) FROM kb_collections",
            "documents": "SELECT count(*) FROM kb_documents",
            "chunks": "SELECT count(*) FROM kb_chunks",
            "fts_rows": "SELECT count(*) FROM kb_fts",
            "vectors": "SELECT count(*) FROM kb_vec",
            "files": "SELECT count(*) FROM kb_files",
            "orphan_chunks": "SELECT count(*) FROM kb_chunks WHERE document_pk NOT IN (SELECT pk FROM kb_documents)",
            "orphan_fts": "SELECT count(*) FROM kb_fts WHERE rowid NOT IN (SELECT pk FROM kb_chunks)",
            # kb_words' own rows are its index's (its rowids would be read from its content, the chunk rows).
            "orphan_words": "SELECT count(*) FROM kb_words_docsize WHERE id NOT IN (SELECT pk FROM kb_chunks)",
            "orphan_vectors": "SELECT count(*) FROM kb_vec WHERE rowid NOT IN (SELECT pk FROM kb_chunks)",
            "orphan_files": "SELECT count(*) FROM kb_files WHERE document_pk NOT IN (SELECT pk FROM kb_documents)",
            "chunks_without_vector": "SELECT count(*) FROM kb_chunks WHERE pk NOT IN (SELECT rowid FROM kb_vec)",
            "chunks_without_fts": "SELECT count(*) FROM kb_chunks WHERE pk NOT IN (SELECT rowid FROM kb_fts)",
            "chunks_without_words": "SELECT count(*) FROM kb_chunks WHERE pk NOT IN (SELECT id FROM kb_words_docsize)",
            "documents_without_file": "SELECT count(*) FROM kb_documents WHERE pk NOT IN (SELECT document_pk"
                                      " FROM kb_files)",
            "duplicate_documents": "SELECT count(*) FROM (SELECT 1 FROM kb_documents GROUP BY collection_pk, sha256"
                                   " HAVING count(*) > 1)",
            "chunk_count_mismatch": "SELECT count(*) FROM kb_documents d WHERE d.chunk_count != (SELECT count(*)"
                                    " FROM kb_chunks k WHERE k.document_pk = d.pk)",
        }
        return {name: int(self._read(sql)[0][0]) for name, sql in q.items()}

    def check(self) -> IndexCheck:
        """``PRAGMA integrity_check``, FTS5's own integrity checks of both keyword indexes against their text (the
        word index's is the chunk and document rows), and ``counts``."""
        if self._r is self._w:
            integrity = [str(r[0]) for r in self._read("PRAGMA integrity_check")]
        else:
            # On a connection of its own: the integrity check runs FTS5's checks on the connection's cached index
            # structure, which on the long-lived reader can be older than the file after writes through the writer
            # (a false "checksum mismatch for table kb_fts"; searches re-read it, the check does not).
            conn = self._open(self._busy_timeout_ms)
            try:
                integrity = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
            finally:
                conn.close()
        try:
            with self._tx() as c:
                c.execute("INSERT INTO kb_fts (kb_fts) VALUES ('integrity-check')")
                c.execute("INSERT INTO kb_words (kb_words, rank) VALUES ('integrity-check', 1)")
            fts = "ok"
        except self._w.errors as exc:
            fts = str(exc)
        return IndexCheck(integrity, fts, self.counts())

    def raw_dump(self) -> bytes:
        """Every byte of the database file, its WAL and its shared-memory index as they are on disk now, with the
        store open (tests look for traces of deleted content; nothing is checkpointed first)."""
        out = b""
        for suffix in ("", "-wal", "-shm"):
            p = Path(self.path + suffix)
            if p.exists():
                out += p.read_bytes()
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._resident is not None:
            with self._r.lock:
                self._resident.reset()  # free the copy now, not when the last reference goes
        if self._r is not self._w:
            self._r.close()
        self._w.close()


def _journal(c: Any, run: str | None, document_ids: Sequence[str], action: str) -> None:
    """Note in the run journal, inside the change's own transaction, what ``run`` did to these documents."""
    if run is not None and action != "unchanged":
        c.executemany("INSERT INTO kb_run_journal (run, document_id, action) VALUES (?, ?, ?)",
                      [(run, doc_id, action) for doc_id in document_ids])
