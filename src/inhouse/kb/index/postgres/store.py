"""``PostgresIndexStore``: the knowledge index shared by several inhouse nodes, on PostgreSQL with pgvector.

One row per chunk holds its text, its keyword terms (``tsv``) and its vector (``embedding``). A document with its
chunks and bytes commits in one transaction, under an advisory lock of its collection, so two nodes ingesting the
same bytes add them once; readers see a version whole or not at all.

Vector search (up to ``resident_max_chunks`` chunks): an exact cosine scan of a copy of the vectors in this process's
RAM, replayed from the change log ``kb_vec_log`` (``resident.py``), as on SQLite: the visible documents are chosen in
SQL, only their rows are scored, and the chunk ids are read back (a chunk deleted since the copy's sync drops out).

Vector search over a larger index: pgvector's HNSW index (cosine) with
``hnsw.iterative_scan = relaxed_order``. The access rule is a
condition of the same statement (``document_pk = ANY(ARRAY(allowed documents))``): when it rejects the nearest rows
the scan goes on until ``k`` allowed rows are found. pgvector stops after ``hnsw.max_scan_tuples``; should that
leave fewer than ``k`` rows while more are allowed (a caller who sees a sliver of a large index), the same query runs
again as an exact scan of the allowed rows. So ``top_k`` is always filled when enough exists, as on SQLite. HNSW is
approximate where SQLite's scan is exact: a near-tie can rank differently (``hnsw.ef_search`` = 100 here).

Keyword search: ``tsv @@ query`` over the terms of ``kb.index.keywords`` (Latin words as prefixes, CJK 3-character
windows), ranked by ``ts_rank`` normalised by length, with the terms of the document title and of the section path
weighted 3 and 2 against the text's 1 (schema 2; SQLite's word index weighs its columns alike). ``ts_rank`` is not
BM25: it has no inverse document frequency, so a rare term does not outweigh a common one as it does on SQLite
(the most frequent terms leave the query, ``keywords.rarest_terms``; when what is left matches nothing, the rarest
term left out is asked instead); fused with the vector ranks (RRF) the
difference is small. Queries of only 1-2 character terms fall back to ``ILIKE`` over the allowed chunks, ranked by
how many terms each contains, as on SQLite.

Deletion removes the rows in one transaction; PostgreSQL keeps dead row versions until ``VACUUM`` (autovacuum)
reclaims them, unlike SQLite's ``secure_delete``: run ``VACUUM`` after deleting sensitive documents.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from inhouse.errors import Conflict, InvalidRequest, NotFound
from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.document import Chunk
from inhouse.kb.index.keywords import keyword_terms, like_escape, rarest_terms
from inhouse.kb.index.postgres.access import allowed_docs, chunk_filter, document_condition
from inhouse.kb.index.postgres.check import check_index, count_rows
from inhouse.kb.index.postgres.resident import PostgresResidentVectors, prune_log, unpack_vectors
from inhouse.kb.index.postgres.schema import migrate_index
from inhouse.kb.index.postgres.stats import TermShares
from inhouse.kb.index.postgres.terms import RANK_WEIGHTS, tsquery_literal, tsvector_literal, vector_literal
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
from inhouse.store.postgres.database import PostgresDatabase, lock_id, schema_version

_LABELS = list(Label)
# A keyword query matches at most about this share of the chunks (or ``keyword_match_rows``), leaving out its most
# frequent terms (``kb.index.keywords.rarest_terms``): ranking reads every matched row from the table, about one
# page per row (docs/performance.md: 5 % against 2 % against 1 % at 100k chunks).
_MATCH_SHARE = 0.01
__all__ = ["PostgresIndexStore", "tsquery_literal", "tsvector_literal", "vector_literal"]


class PostgresIndexStore:
    """The ``IndexStore`` on PostgreSQL. ``url``: a PostgreSQL URL; the store keeps a pool of its own.
    ``session``: settings for each of its connections, over ``SESSION`` (e.g. ``hnsw.ef_search``).
    ``keyword_match_rows``: below this many chunks matched (estimated), no keyword term is left out.
    ``resident_max_chunks``: up to this many chunks, vector search scans an exact copy of the vectors in RAM, kept
    current from the change log (``resident.py``); past it (or at 0) it walks the HNSW index in PostgreSQL."""

    SESSION: Mapping[str, str] = {"hnsw.iterative_scan": "relaxed_order", "hnsw.ef_search": "100"}

    def __init__(self, url: str, *, dim: int, clock: Any = None, pool_size: int = 8,
                 session: Mapping[str, str] | None = None, keyword_match_rows: int = 1000,
                 resident_max_chunks: int = 500_000) -> None:
        import time

        self.dim = int(dim)
        self._clock = clock or time.time
        self._match_rows = keyword_match_rows
        settings = {**self.SESSION, **(session or {})}

        def configure(conn: Any) -> None:
            for name, value in settings.items():
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))

        self._db = PostgresDatabase(url, max_size=pool_size, configure=configure)
        try:
            migrate_index(self._db, self.dim)
        except BaseException:
            self._db.close()
            raise
        self.term_shares = TermShares(self._db)
        self._resident = PostgresResidentVectors(self._db, self.dim, max_rows=resident_max_chunks,
                                                 clock=self._clock) if resident_max_chunks > 0 else None

    def schema_version(self) -> int:
        return schema_version(self._db, "kb")

    # -- collections ------------------------------------------------------------------------------------

    def create_collection(self, name: str, *, acl: Acl, description: str = "",
                          sketch_questions: bool = False) -> Collection:
        check_collection_name(name)
        cid = new_id("col")
        with self._db.transaction(lock=lock_id("kb-collections")) as c:
            if c.execute("SELECT 1 FROM kb_collections WHERE lower(name) = lower(%s)", (name,)).fetchone():
                raise Conflict(f"A collection named '{name}' already exists.", param="name")
            c.execute("INSERT INTO kb_collections (id, name, description, created_at, sketch_questions)"
                      " VALUES (%s, %s, %s, %s, %s)", (cid, name, description[:2000], self._clock(), sketch_questions))
            self._write_acl(c, cid, acl)
        return self.get_collection(cid)

    @staticmethod
    def _write_acl(c: Any, owner: str, acl: Acl | None) -> None:
        c.execute("DELETE FROM kb_acl WHERE owner = %s", (owner,))
        if acl is None:
            return
        rows = [(owner, "group", g) for g in sorted(acl.groups)] + [(owner, "key", k) for k in sorted(acl.keys)]
        if rows:
            c.cursor().executemany("INSERT INTO kb_acl (owner, kind, principal) VALUES (%s, %s, %s)", rows)

    def _acls(self, owners: Sequence[str], c: Any = None) -> dict[str, Acl]:
        """The lists of ``owners``; ``c``: as the transaction ``c`` reads them."""
        sql, params = "SELECT owner, kind, principal FROM kb_acl WHERE owner = ANY(%s::text[])", (list(owners),)
        rows = c.execute(sql, params).fetchall() if c is not None else self._db.query(sql, params)
        found: dict[str, tuple[set[str], set[str]]] = {o: (set(), set()) for o in owners}
        for r in rows:
            found[r["owner"]][0 if r["kind"] == "group" else 1].add(r["principal"])
        return {o: Acl(groups=frozenset(g), keys=frozenset(k)) for o, (g, k) in found.items()}

    _COL_SQL = ("SELECT c.id, c.name, c.description, c.created_at, c.sketch_questions,"
                " (SELECT count(*) FROM kb_documents d WHERE d.collection_pk = c.pk) AS n FROM kb_collections c")

    def _collections(self, rows: list[dict[str, Any]]) -> list[Collection]:
        acls = self._acls([r["id"] for r in rows])
        return [Collection(id=r["id"], name=r["name"], description=r["description"], acl=acls[r["id"]],
                           created_at=r["created_at"], document_count=int(r["n"]),
                           sketch_questions=bool(r["sketch_questions"])) for r in rows]

    def get_collection(self, ref: str) -> Collection:
        rows = self._db.query(self._COL_SQL + " WHERE c.id = %s OR lower(c.name) = lower(%s)", (ref, ref))
        if not rows:
            raise NotFound(f"No collection '{ref}'.", param="collection")
        return self._collections(rows[:1])[0]

    def list_collections(self) -> list[Collection]:
        return self._collections(self._db.query(self._COL_SQL + ' ORDER BY lower(c.name) COLLATE "C"'))

    def update_collection(self, collection_id: str, *, acl: Acl | None = None,
                          groups: Iterable[str] | None = None, keys: Iterable[str] | None = None,
                          description: str | None = None, sketch_questions: bool | None = None) -> Collection:
        with self._db.transaction() as c:
            # The row locked: another change of the list (or forget_group) waits for this one, then reads its result.
            if not c.execute("SELECT 1 FROM kb_collections WHERE id = %s FOR NO KEY UPDATE",
                             (collection_id,)).fetchone():
                raise NotFound(f"No collection '{collection_id}'.", param="collection")
            if description is not None:
                c.execute("UPDATE kb_collections SET description = %s WHERE id = %s",
                          (description[:2000], collection_id))
            if sketch_questions is not None:
                c.execute("UPDATE kb_collections SET sketch_questions = %s WHERE id = %s",
                          (sketch_questions, collection_id))
            if acl is None and (groups is not None or keys is not None):
                # The half not given is kept as this transaction reads it: read before, a concurrent change of it
                # (another admin's, a deleted group's name taken off) was written back.
                acl = self._acls([collection_id], c)[collection_id]
            if acl is not None:
                self._write_acl(c, collection_id, Acl(groups=acl.groups if groups is None else frozenset(groups),
                                                      keys=acl.keys if keys is None else frozenset(keys)))
        return self.get_collection(collection_id)

    def delete_collection(self, collection_id: str, *, run: str | None = None) -> None:
        col = self.get_collection(collection_id)
        with self._db.transaction(lock=lock_id(f"kb:{col.id}")) as c:
            c.execute("DELETE FROM kb_acl WHERE owner IN (SELECT d.id FROM kb_documents d JOIN kb_collections k"
                      " ON k.pk = d.collection_pk WHERE k.id = %s)", (col.id,))
            gone = c.execute("DELETE FROM kb_documents WHERE collection_pk = (SELECT pk FROM kb_collections"
                             " WHERE id = %s) RETURNING id", (col.id,)).fetchall()
            _journal(c, run, [r["id"] for r in gone], "removed")
            c.execute("DELETE FROM kb_acl WHERE owner = %s", (col.id,))
            c.execute("DELETE FROM kb_collections WHERE id = %s", (col.id,))

    def forget_group(self, name: str, *, run: str | None = None,
                     owners: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
        # Group names are ASCII (``check_name``): lower() compares them as the directory does.
        where = "a.kind = 'group' AND lower(a.principal) = lower(%(name)s)"
        params: dict[str, Any] = {"name": name}
        if owners is not None:
            where += " AND a.owner = ANY(%(owners)s::text[])"
            params["owners"] = sorted(set(owners))
        named = " FROM {} t WHERE EXISTS (SELECT 1 FROM kb_acl a WHERE a.owner = t.id AND " + where + ")"
        with self._db.transaction() as c:
            # The rows of the lists named, locked (in pk order) as their writers lock them: a writer that read a list
            # before the name was taken off (a new version inheriting it, another half of a collection's list
            # changed) has the row, and this waits for its commit and then takes the name off what it wrote.
            cols = sorted({r["id"] for r in c.execute("SELECT t.id" + named.format("kb_collections")
                                                      + " ORDER BY t.pk FOR NO KEY UPDATE", params)})
            docs = sorted({r["id"] for r in c.execute("SELECT t.id" + named.format("kb_documents")
                                                      + " ORDER BY t.pk FOR NO KEY UPDATE", params)})
            c.execute("DELETE FROM kb_acl a WHERE " + where, params)
            _journal(c, run, docs, "relabelled")
        return cols, docs


    _DOC_SQL = ("SELECT d.id, c.id AS collection_id, d.source_path, d.sha256, d.label_rank, d.has_acl, d.title,"
                " d.filename, d.mime, d.metadata, d.version, d.created_at, d.size_bytes, d.chunk_count"
                " FROM kb_documents d JOIN kb_collections c ON c.pk = d.collection_pk")

    def _documents(self, rows: list[dict[str, Any]]) -> list[DocumentRecord]:
        acls = self._acls([r["id"] for r in rows if r["has_acl"]])
        return [DocumentRecord(
            id=r["id"], collection_id=r["collection_id"], source_path=r["source_path"], sha256=r["sha256"],
            label=_LABELS[r["label_rank"]], acl=acls.get(r["id"]) if r["has_acl"] else None, title=r["title"],
            filename=r["filename"], mime=r["mime"], metadata=json.loads(r["metadata"]), version=r["version"],
            created_at=r["created_at"], size_bytes=int(r["size_bytes"]), chunk_count=r["chunk_count"],
        ) for r in rows]

    def find_document(self, collection_id: str, *, source_path: str | None = None,
                      sha256: str | None = None) -> DocumentRecord | None:
        conds, params = ["c.id = %s"], [collection_id]
        if source_path is not None:
            conds.append("d.source_path = %s")
            params.append(source_path)
        if sha256 is not None:
            conds.append("d.sha256 = %s")
            params.append(sha256)
        rows = self._db.query(self._DOC_SQL + " WHERE " + " AND ".join(conds) + " ORDER BY d.pk LIMIT 1", params)
        return self._documents(rows)[0] if rows else None

    def get_document(self, document_id: str) -> DocumentRecord:
        rows = self._db.query(self._DOC_SQL + " WHERE d.id = %s", (document_id,))
        if not rows:
            raise NotFound(f"No document '{document_id}'.", param="document_id")
        return self._documents(rows)[0]

    def document_data(self, document_id: str) -> bytes:
        row = self._db.query_one("SELECT f.data FROM kb_files f JOIN kb_documents d ON d.pk = f.document_pk"
                                 " WHERE d.id = %s", (document_id,))
        if row is None:
            raise NotFound(f"No document '{document_id}'.", param="document_id")
        return bytes(row["data"])

    def list_documents(self, collection_id: str, *, limit: int = 100, offset: int = 0) -> list[DocumentRecord]:
        return self._documents(self._db.query(
            self._DOC_SQL + ' WHERE c.id = %s ORDER BY d.source_path COLLATE "C" LIMIT %s OFFSET %s',
            (collection_id, int(limit), int(offset))))

    def visible_documents(self, scope: AccessScope, collection_id: str, *, limit: int = 100,
                          offset: int = 0) -> list[DocumentRecord]:
        # The rule per row of the collection (the planner hashes the document lists naming the caller once), as on
        # SQLite: most members see most of a collection, and listing every allowed document first to sort them cost
        # 3 times as much there (46 ms instead of 15 ms at 20k documents, 99 % visible; 7 ms instead of 3 at 1 %).
        visible, params = document_condition(scope, SearchFilters())
        params.update(col=collection_id, limit=int(limit), offset=int(offset))
        return self._documents(self._db.query(
            self._DOC_SQL + f' WHERE c.id = %(col)s AND {visible} ORDER BY d.source_path COLLATE "C"'
            " LIMIT %(limit)s OFFSET %(offset)s", params))

    def document_labels(self, at_least: Label) -> dict[str, tuple[Label, int]]:
        rows = self._db.query("SELECT id, label_rank, version FROM kb_documents WHERE label_rank >= %s",
                              (at_least.rank,))
        return {r["id"]: (_LABELS[r["label_rank"]], int(r["version"])) for r in rows}

    def put_document(self, doc: NewDocument, *, run: str | None = None, own_copy: bool = False,
                     expect: Expected | None = None, scope: AccessScope | None = None) -> PutResult:
        vectors = prepared_vectors(doc, self.dim)
        now = self._clock()
        with self._db.transaction(lock=lock_id(f"kb:{doc.collection_id}")) as c:
            col = c.execute("SELECT pk FROM kb_collections WHERE id = %s", (doc.collection_id,)).fetchone()
            if col is None:
                raise NotFound(f"No collection '{doc.collection_id}'.", param="collection")
            # The row being replaced, locked: a relabel (or forget_group) either committed before and is read here,
            # or waits for this version and applies to it.
            old = c.execute("SELECT pk, id, sha256, label_rank, has_acl FROM kb_documents WHERE collection_pk = %s"
                            " AND source_path = %s FOR NO KEY UPDATE", (col["pk"], doc.source_path)).fetchone()
            if old is not None and scope is not None:
                # Where it counts: relabelled restricted (or its list changed) while the member's file was parsed.
                visible, params = document_condition(scope, SearchFilters())
                params["pk"] = old["pk"]
                if not c.execute("SELECT 1 FROM kb_documents d JOIN kb_collections c ON c.pk = d.collection_pk"
                                 f" WHERE d.pk = %(pk)s AND {visible}", params).fetchone():
                    raise not_replaceable(doc.source_path)
            # Checked under the collection's lock: two ingestions of the same bytes cannot both add them.
            same = old if old is not None and old["sha256"] == doc.sha256 else None
            if same is None and old is None and not own_copy:
                same = c.execute("SELECT id FROM kb_documents WHERE collection_pk = %s AND sha256 = %s LIMIT 1",
                                 (col["pk"], doc.sha256)).fetchone()
            if same is None and expect is not None:
                found = (None, None, None) if old is None else (
                    old["id"], _LABELS[old["label_rank"]], self._acls([old["id"]], c)[old["id"]] if old["has_acl"]
                    else None)
                if not expect.matches(*found):
                    raise ChangedMeanwhile(doc.source_path)
            if same is not None:
                status, doc_id = "unchanged", same["id"]
            else:
                meta = json.dumps(dict(doc.metadata), ensure_ascii=False, sort_keys=True)
                values = (doc.sha256, doc.label.rank, doc.acl is not None, doc.title[:500], doc.filename[:255],
                          doc.mime[:100], meta, len(doc.data), len(doc.chunks))
                kept: dict[int, int] = {}
                if old is None:
                    status, doc_id = "added", new_id("doc")
                    doc_pk = c.execute(
                        "INSERT INTO kb_documents (id, collection_pk, source_path, sha256, label_rank, has_acl, title,"
                        " filename, mime, metadata, size_bytes, chunk_count, created_at, version)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1) RETURNING pk",
                        (doc_id, col["pk"], doc.source_path, *values, now)).fetchone()["pk"]
                else:
                    status, doc_id, doc_pk = "replaced", old["id"], old["pk"]
                    kept = self._unchanged_chunks(c, doc_pk, doc)
                    c.execute("DELETE FROM kb_chunks WHERE document_pk = %s AND NOT pk = ANY(%s::bigint[])",
                              (doc_pk, list(kept.values())))
                    c.execute("DELETE FROM kb_files WHERE document_pk = %s", (doc_pk,))
                    c.execute("UPDATE kb_documents SET sha256 = %s, label_rank = %s, has_acl = %s, title = %s,"
                              " filename = %s, mime = %s, metadata = %s, size_bytes = %s, chunk_count = %s,"
                              " created_at = %s, version = version + 1 WHERE pk = %s", (*values, now, doc_pk))
                self._write_acl(c, doc_id, doc.acl)
                c.execute("INSERT INTO kb_files (document_pk, data) VALUES (%s, %s)", (doc_pk, doc.data))
                self._insert_chunks(c, doc_pk, doc, vectors, kept)
                prune_log(c)
                _journal(c, run, [doc_id], status)
        return PutResult(status, self.get_document(doc_id))  # type: ignore[arg-type]

    @staticmethod
    def _chunk_text(doc: NewDocument, chunk: Chunk) -> str:
        # The title is indexed with each chunk: questions often name the document ("the X200 manual").
        return doc.title.replace("\n", " ") + "\n" + chunk.text

    def _unchanged_chunks(self, c: Any, doc_pk: int, doc: NewDocument) -> dict[int, int]:
        """The rows of the stored version that the new version ``doc`` keeps: new chunk index -> chunk pk, for each
        new chunk whose indexed text (title included), content and section equal a stored one's. Their terms, vector
        and HNSW entry stay, and their id with them (a citation still resolves). A small edit of a long document
        then writes the chunks it touched, as on SQLite; a kept chunk whose position moved is updated, which
        PostgreSQL writes as a new row version (its index entries too), so a shift costs what a rewrite did, minus
        the terms."""
        stored = c.execute("SELECT pk, text, content, section FROM kb_chunks WHERE document_pk = %s ORDER BY ordinal",
                           (doc_pk,)).fetchall()
        return unchanged_chunks([(r["pk"], r["text"], r["content"], r["section"]) for r in stored],
                                [(self._chunk_text(doc, ch), ch.content, ch.section) for ch in doc.chunks])

    def _insert_chunks(self, c: Any, doc_pk: int, doc: NewDocument, vectors: np.ndarray,
                       kept: Mapping[int, int]) -> None:
        rows, placed = [], []
        for i, ch in enumerate(doc.chunks):
            if i in kept:
                placed.append((kept[i], i, ch.page_start, ch.page_end, ch.token_count))
                continue
            text = self._chunk_text(doc, ch)
            rows.append((new_id("chk"), doc_pk, i, ch.content, ch.section, ch.page_start, ch.page_end, ch.token_count,
                         text, tsvector_literal(text, ch.section), vector_literal(vectors[i])))
        if placed:  # one statement; rows already in place are not written again
            pk, ordinal, first, last, tokens = (list(col) for col in zip(*placed, strict=True))
            c.execute("UPDATE kb_chunks k SET ordinal = x.ordinal, page_start = x.first, page_end = x.last,"
                      " token_count = x.tokens FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::int[], %s::int[])"
                      " AS x(pk, ordinal, first, last, tokens) WHERE k.pk = x.pk AND (k.ordinal, k.page_start,"
                      " k.page_end, k.token_count) IS DISTINCT FROM (x.ordinal, x.first, x.last, x.tokens)",
                      (pk, ordinal, first, last, tokens))
        c.cursor().executemany(
            "INSERT INTO kb_chunks (id, document_pk, ordinal, content, section, page_start, page_end, token_count,"
            " text, tsv, embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::tsvector, %s::vector)", rows)

    def relabel(self, document_id: str, *, label: Label | None = None, acl: Acl | None = None,
                clear_acl: bool = False, metadata: Mapping[str, str] | None = None,
                run: str | None = None) -> DocumentRecord:
        with self._db.transaction() as c:
            # Locked before its list is touched, as put_document and forget_group lock it (no deadlock between them).
            row = c.execute("SELECT metadata FROM kb_documents WHERE id = %s FOR NO KEY UPDATE",
                            (document_id,)).fetchone()
            if row is None:
                raise NotFound(f"No document '{document_id}'.", param="document_id")
            if metadata:
                merged = {**json.loads(row["metadata"]), **metadata}
                c.execute("UPDATE kb_documents SET metadata = %s WHERE id = %s",
                          (json.dumps(merged, ensure_ascii=False, sort_keys=True), document_id))
            if label is not None:
                c.execute("UPDATE kb_documents SET label_rank = %s WHERE id = %s", (label.rank, document_id))
            if acl is not None or clear_acl:
                self._write_acl(c, document_id, None if clear_acl else acl)
                c.execute("UPDATE kb_documents SET has_acl = %s WHERE id = %s", (not clear_acl, document_id))
            _journal(c, run, [document_id], "relabelled")
        return self.get_document(document_id)

    def move_document(self, document_id: str, source_path: str, filename: str, *,
                      run: str | None = None) -> DocumentRecord:
        with self._db.transaction() as c:
            row = c.execute("SELECT pk, collection_pk FROM kb_documents WHERE id = %s", (document_id,)).fetchone()
            if row is None:
                raise NotFound(f"No document '{document_id}'.", param="document_id")
            if c.execute("SELECT 1 FROM kb_documents WHERE collection_pk = %s AND source_path = %s AND pk != %s",
                         (row["collection_pk"], source_path, row["pk"])).fetchone():
                raise Conflict(f"Another document of the collection is at '{source_path}'.", param="source_path")
            c.execute("UPDATE kb_documents SET source_path = %s, filename = %s WHERE pk = %s",
                      (source_path, filename[:255], row["pk"]))
            _journal(c, run, [document_id], "moved")
        return self.get_document(document_id)

    def delete_document(self, document_id: str, *, run: str | None = None) -> None:
        if not self.delete_documents([document_id], run=run):
            raise NotFound(f"No document '{document_id}'.", param="document_id")

    def delete_documents(self, document_ids: Sequence[str], *, run: str | None = None) -> int:
        ids = list(dict.fromkeys(document_ids))
        with self._db.transaction() as c:
            gone = {r["id"] for r in c.execute("DELETE FROM kb_documents WHERE id = ANY(%s) RETURNING id",
                                               (ids,)).fetchall()}
            c.execute("DELETE FROM kb_acl WHERE owner = ANY(%s)", (ids,))  # chunks and bytes cascade
            prune_log(c)
            _journal(c, run, [doc_id for doc_id in ids if doc_id in gone], "removed")
        return len(gone)

    # -- the run journal ----------------------------------------------------------------------------

    def run_changes(self, run: str) -> list[tuple[str, str]]:
        return [(r["document_id"], r["action"]) for r in self._db.query(
            "SELECT document_id, action FROM kb_run_journal WHERE run = %s ORDER BY seq", (run,))]

    def journal_mark(self) -> int:
        return int(self._db.scalar("SELECT coalesce(max(seq), 0) FROM kb_run_journal"))

    def forget_run(self, run: str) -> None:
        with self._db.transaction() as c:
            c.execute("DELETE FROM kb_run_journal WHERE run = %s", (run,))

    def prune_journal(self, keep: Iterable[str], up_to: int) -> int:
        with self._db.transaction() as c:
            return int(c.execute("DELETE FROM kb_run_journal WHERE seq <= %s AND NOT run = ANY(%s::text[])",
                                 (up_to, sorted(set(keep)))).rowcount)

    _CHUNK_SQL = ("SELECT k.id, d.id AS document_id, c.id AS collection_id, k.ordinal, k.content, k.section,"
                  " k.page_start, k.page_end, d.title, d.source_path, d.label_rank, k.text FROM kb_chunks k"
                  " JOIN kb_documents d ON d.pk = k.document_pk JOIN kb_collections c ON c.pk = d.collection_pk")

    @staticmethod
    def _chunk(r: dict[str, Any]) -> StoredChunk:
        text = r["text"].split("\n", 1)[1] if "\n" in r["text"] else r["text"]  # "title\nchunk text"
        return StoredChunk(id=r["id"], document_id=r["document_id"], collection_id=r["collection_id"],
                           ordinal=r["ordinal"], text=text, content=r["content"], section=r["section"],
                           page_start=r["page_start"], page_end=r["page_end"], title=r["title"],
                           source_path=r["source_path"], label=_LABELS[r["label_rank"]])

    def document_chunks(self, document_id: str) -> list[StoredChunk]:
        return [self._chunk(r) for r in self._db.query(self._CHUNK_SQL + " WHERE d.id = %s ORDER BY k.ordinal",
                                                       (document_id,))]

    def embedded_chunks(self, collection_id: str, source_path: str) -> dict[str, np.ndarray]:
        rows = self._db.query("SELECT k.text, vector_send(k.embedding) AS v FROM kb_chunks k JOIN kb_documents d"
                              " ON d.pk = k.document_pk JOIN kb_collections c ON c.pk = d.collection_pk"
                              " WHERE c.id = %s AND d.source_path = %s", (collection_id, source_path))
        if not rows:
            return {}
        vectors = unpack_vectors([bytes(r["v"]) for r in rows], self.dim)
        # ``text`` is "title\nchunk text": the chunk text is what follows the first line.
        return {r["text"].split("\n", 1)[-1]: vectors[i] for i, r in enumerate(rows)}

    # -- reads with the access rule ----------------------------------------------------------------------

    def _where(self, scope: AccessScope, filters: SearchFilters, *,
               by_document_index: bool = True) -> tuple[str, dict[str, Any]]:
        if unrestricted(scope, filters):
            return "true", {}
        return chunk_filter(scope, filters, by_document_index=by_document_index)

    def keyword_search(self, scope: AccessScope, query: str, filters: SearchFilters, limit: int) -> list[Scored]:
        long, short = keyword_terms(query)
        left_out: list[str] = []
        if long:
            shares = self.term_shares.current()
            kept = rarest_terms(long, shares.share, max(_MATCH_SHARE, self._match_rows / max(shares.rows, 1.0)))
            left_out, long = [t for t in long if t not in kept], kept
        # Word matches go through the GIN index and the access condition filters them (hidden from the btree on
        # document_pk, which the planner would otherwise walk for every allowed chunk); the short-term scan goes
        # through the allowed chunks.
        where, params = self._where(scope, filters, by_document_index=not long)
        params["limit"] = int(limit)
        if long:
            params["q"] = tsquery_literal(long)
            params["w"] = RANK_WEIGHTS
            sql = ("SELECT k.id, ts_rank(%(w)s::float4[], k.tsv, %(q)s::tsquery, 1) AS score FROM kb_chunks k"
                   f" WHERE k.tsv @@ %(q)s::tsquery AND {where} ORDER BY score DESC, k.pk LIMIT %(limit)s")
        elif short:
            hits = []
            for i, term in enumerate(short):
                params[f"t{i}"] = "%" + like_escape(term) + "%"
                hits.append(f"(k.text ILIKE %(t{i})s ESCAPE '\\')")
            sql = (f"SELECT k.id, ({' + '.join(h + '::int' for h in hits)}) AS score FROM kb_chunks k"
                   f" WHERE ({' OR '.join(hits)}) AND {where} ORDER BY score DESC, k.pk LIMIT %(limit)s")
        else:
            return []
        rows = self._db.query(sql, params)
        if not rows and left_out:
            # The terms kept may be found nowhere (a typo; a term rarer than the statistics know may have no chunk):
            # the rarest term left out then answers, as on SQLite, rather than nothing.
            params["q"] = tsquery_literal([min(left_out, key=lambda t: shares.share(t) or 0.0)])
            rows = self._db.query(sql, params)
        return [Scored(r["id"], float(r["score"])) for r in rows]

    def vector_search(self, scope: AccessScope, vector: np.ndarray, filters: SearchFilters,
                      limit: int) -> list[Scored]:
        v = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dim:
            raise InvalidRequest(f"query vector has {v.shape[0]} dimensions, the index {self.dim}.")
        if limit <= 0:
            return []
        if self._resident is not None and self._resident.in_use():
            found = self._resident_search(scope, v, filters, int(limit))
            if found is not None:
                return found
        hnsw_where, params = self._where(scope, filters, by_document_index=False)
        where, _ = self._where(scope, filters)
        params.update(v=vector_literal(v), k=int(limit))
        nearest = ("WITH nn AS MATERIALIZED (SELECT k.id, k.embedding <=> %(v)s::vector AS d FROM kb_chunks k"
                   f" WHERE {hnsw_where} ORDER BY d LIMIT %(k)s) SELECT id, d FROM nn ORDER BY d")
        rows = self._db.query(nearest, params)
        # Fewer than k: the index scan may have given up before finding k allowed rows. If more are allowed, scan
        # them exactly (adding 0 to the distance keeps the planner off the index).
        if len(rows) < limit and int(self._db.scalar(f"SELECT count(*) FROM kb_chunks k WHERE {where}",
                                                     params)) > len(rows):
            rows = self._db.query(f"SELECT k.id, (k.embedding <=> %(v)s::vector) + 0 AS d FROM kb_chunks k"
                                  f" WHERE {where} ORDER BY d, k.pk LIMIT %(k)s", params)
        return [Scored(r["id"], 1.0 - float(r["d"])) for r in rows]

    def _resident_search(self, scope: AccessScope, v: np.ndarray, filters: SearchFilters,
                         limit: int) -> list[Scored] | None:
        assert self._resident is not None
        visible: dict[int, set[int]] | None = None
        if not unrestricted(scope, filters):
            # The access rule decides which rows are scored: only the visible documents' rows are multiplied.
            docs, params = allowed_docs(scope, filters, columns="d.collection_pk, d.pk")
            visible = {}
            for r in self._db.query(docs, params):
                visible.setdefault(int(r["collection_pk"]), set()).add(int(r["pk"]))
        found = self._resident.search(v, limit, visible)
        if found is None:
            return None
        pks, sims = found
        if not len(pks):
            return []
        # A chunk deleted since the copy's sync has no id any more and drops out here.
        ids = {int(r["pk"]): r["id"] for r in self._db.query("SELECT pk, id FROM kb_chunks WHERE pk = ANY(%s)",
                                                              (pks.tolist(),))}
        return [Scored(ids[pk], float(sim)) for pk, sim in zip(pks.tolist(), sims.tolist(), strict=True)
                if pk in ids]

    def get_chunks(self, scope: AccessScope, chunk_ids: Sequence[str]) -> list[StoredChunk]:
        if not chunk_ids:
            return []
        # The rule per row of the few chunks asked for, not as the array of every allowed document (3 ms at 10k
        # documents for a member, more than the read itself).
        where, params = ("true", {}) if scope.is_admin else document_condition(scope, SearchFilters())
        params["ids"] = list(chunk_ids)
        rows = self._db.query(self._CHUNK_SQL + f" WHERE k.id = ANY(%(ids)s::text[]) AND {where}", params)
        by_id = {r["id"]: self._chunk(r) for r in rows}
        return [by_id[i] for i in chunk_ids if i in by_id]

    def visible_document(self, scope: AccessScope, document_id: str) -> bool:
        visible, params = document_condition(scope, SearchFilters())
        params["id"] = document_id
        return bool(self._db.query("SELECT 1 FROM kb_documents d JOIN kb_collections c ON c.pk = d.collection_pk"
                                   f" WHERE d.id = %(id)s AND {visible}", params))

    def visible_document_counts(self, scope: AccessScope, collection_ids: Iterable[str]) -> dict[str, int]:
        docs, params = allowed_docs(scope, SearchFilters(collection_ids=frozenset(collection_ids)), columns="c.id")
        return {r["id"]: int(r["n"]) for r in self._db.query(f"SELECT id, count(*) AS n FROM ({docs}) v GROUP BY id",
                                                             params)}

    # -- housekeeping --------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return count_rows(self._db)

    def check(self) -> IndexCheck:
        """What PostgreSQL can tell of its pages and indexes, the keyword terms against the text, and ``counts``
        (``check.py``)."""
        return check_index(self._db)

    def close(self) -> None:
        if self._resident is not None:
            self._resident.reset()  # free the copy now, not when the last reference goes
        self._db.close()


def _journal(c: Any, run: str | None, document_ids: Sequence[str], action: str) -> None:
    """Note in the run journal, inside the change's own transaction, what ``run`` did to these documents."""
    if run is not None and action != "unchanged" and document_ids:
        c.cursor().executemany("INSERT INTO kb_run_journal (run, document_id, action) VALUES (%s, %s, %s)",
                               [(run, doc_id, action) for doc_id in document_ids])
