"""The ``IndexStore`` protocol, the records it deals in, and the checks every implementation makes alike. No SQL
here: ``sqlite/`` (SQLite + FTS5 + sqlite-vec) and ``postgres/`` (PostgreSQL + pg_trgm + pgvector) hold it, and
both pass ``inhouse.testing.index_contract``.

Every read that returns content takes an ``AccessScope`` and applies the rule of ``kb.access`` inside the query,
so a store can never be asked for "everything" by accident.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from inhouse.errors import Conflict, InvalidRequest, shown
from inhouse.governance.labels import Label
from inhouse.kb.access import AccessScope, Acl
from inhouse.kb.document import Chunk

PutStatus = Literal["added", "replaced", "unchanged"]
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Counts that must be 0 in a consistent index (see ``IndexStore.counts``).
PROBLEM_COUNTS = ("orphan_chunks", "orphan_fts", "orphan_words", "orphan_vectors", "orphan_files",
                  "chunks_without_vector", "chunks_without_fts", "chunks_without_words", "documents_without_file",
                  "duplicate_documents", "chunk_count_mismatch")


@dataclass(frozen=True)
class IndexCheck:
    """``inhouse kb check``: the database's integrity check and the cross-checks between rows, keyword index and
    vectors. ``ok`` when the integrity checks pass and every problem count is 0."""

    integrity: list[str]  # the database's own check ('ok', or what it found)
    fts_integrity: str  # the keyword index against its content ('ok' or the error)
    counts: dict[str, int]

    @property
    def problems(self) -> dict[str, int]:
        return {k: self.counts.get(k, 0) for k in PROBLEM_COUNTS if self.counts.get(k, 0)}

    @property
    def ok(self) -> bool:
        return self.integrity == ["ok"] and self.fts_integrity == "ok" and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "integrity": self.integrity, "fts_integrity": self.fts_integrity,
                "problems": self.problems, "counts": self.counts}


@dataclass(frozen=True)
class Collection:
    id: str  # col_…
    name: str
    description: str
    acl: Acl
    created_at: float
    document_count: int = 0  # all of them; ``KnowledgeBase`` gives a member the count of those they may see
    # Questions searched in it also get the local model's code sketch (``kb/sketch.py``): for technical manuals,
    # whose entries are named by the feature rather than the goal. Off for company documents, where a coder model's
    # "code" is invented plumbing (docs/knowledge.md).
    sketch_questions: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "collection", "name": self.name, "description": self.description,
                "access": self.acl.to_dict(), "created_at": self.created_at, "document_count": self.document_count,
                "sketch_questions": self.sketch_questions}


@dataclass(frozen=True)
class DocumentRecord:
    id: str  # doc_…
    collection_id: str
    source_path: str
    sha256: str
    label: Label
    acl: Acl | None  # None: the collection's list applies unchanged
    title: str
    filename: str
    mime: str
    metadata: dict[str, str]
    version: int
    created_at: float
    size_bytes: int
    chunk_count: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "document", "collection_id": self.collection_id,
                "source_path": self.source_path, "sha256": self.sha256, "label": self.label.value,
                "access": self.acl.to_dict() if self.acl is not None else None, "title": self.title,
                "filename": self.filename, "mime": self.mime, "metadata": self.metadata, "version": self.version,
                "created_at": self.created_at, "size_bytes": self.size_bytes, "chunk_count": self.chunk_count}


@dataclass(frozen=True)
class NewDocument:
    """A parsed, chunked and embedded file, ready to commit."""

    collection_id: str
    source_path: str
    sha256: str
    label: Label
    acl: Acl | None
    title: str
    filename: str
    mime: str
    data: bytes
    chunks: Sequence[Chunk]
    vectors: np.ndarray  # (len(chunks), dim) float32
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Expected:
    """What the writer of a new version read at its path when it chose the version's label and access list: the
    document there (its id, label and list), or none (``Expected.of``). ``put_document`` compares it with the row its
    write transaction finds (``ChangedMeanwhile``): a relabel, a new list or a deleted group's name taken off in the
    meantime would otherwise be undone by the label and list read before it."""

    document_id: str | None
    label: Label | None = None
    acl: Acl | None = None

    @classmethod
    def of(cls, doc: DocumentRecord | None) -> Expected:
        return cls(None) if doc is None else cls(doc.id, doc.label, doc.acl)

    def matches(self, document_id: str | None, label: Label | None, acl: Acl | None) -> bool:
        if document_id is None or self.document_id is None:
            return document_id == self.document_id
        return (document_id, label, acl) == (self.document_id, self.label, self.acl)


class ChangedMeanwhile(Conflict):
    """The document at a new version's path is no longer the one ``Expected`` names: the writer reads it again and
    decides the label and list anew (``Ingestor``); a ``Conflict`` (409) if that keeps happening."""

    code = "changed_meanwhile"

    def __init__(self, source_path: str) -> None:
        super().__init__(f"The document {shown(source_path)} changed while this version of it was prepared; "
                         "upload it again.", param="file")


def not_replaceable(filename: str) -> Conflict:
    """A member's upload under the name of a document they may not see (restricted, or a list that does not name
    them): not theirs to overwrite. Like a file share, say the name is taken."""
    return Conflict(f"A document named {shown(filename)} is in this collection already and you may not replace it; "
                    "upload the file under another name.", param="file")


@dataclass(frozen=True)
class PutResult:
    status: PutStatus
    document: DocumentRecord


@dataclass(frozen=True)
class StoredChunk:
    """A chunk with what a citation needs of its document."""

    id: str  # chk_…
    document_id: str
    collection_id: str
    ordinal: int
    text: str
    content: str
    section: str
    page_start: int | None
    page_end: int | None
    title: str
    source_path: str
    label: Label


@dataclass(frozen=True)
class SearchFilters:
    """Metadata filters ANDed with the access rule. Empty means no restriction."""

    collection_ids: frozenset[str] | None = None
    document_ids: frozenset[str] | None = None
    labels: frozenset[Label] | None = None
    source_prefix: str | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> SearchFilters:
        from inhouse.governance.labels import parse_label

        raw = dict(raw or {})
        unknown = set(raw) - {"document_ids", "labels", "source_prefix"}
        if unknown:
            raise InvalidRequest(f"Unknown filter(s): {', '.join(sorted(unknown))}.", param="filters")
        docs = raw.get("document_ids")
        labels = raw.get("labels")
        prefix = raw.get("source_prefix")
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidRequest("'source_prefix' must be a string.", param="filters")
        # Lists only: a string would be taken apart into its characters (and match nothing), a number not at all.
        for name, value, kinds in (("document_ids", docs, str), ("labels", labels, str | Label)):
            if value is not None and not (isinstance(value, list | tuple) and all(isinstance(v, kinds) for v in value)):
                raise InvalidRequest(f"'{name}' must be a list of strings.", param="filters")
        return cls(
            document_ids=frozenset(docs) if docs is not None else None,
            labels=frozenset(parse_label(x, param="filters") for x in labels) if labels is not None else None,
            source_prefix=prefix,
        )


@dataclass(frozen=True)
class Scored:
    chunk_id: str
    score: float  # keyword: -bm25 (higher is better); vector: cosine similarity


class IndexStore(Protocol):
    """Collections, documents, chunks, keyword index and vectors, with the access rule applied inside reads."""

    dim: int

    # -- collections -------------------------------------------------------------------------------
    def create_collection(self, name: str, *, acl: Acl, description: str = "",
                          sketch_questions: bool = False) -> Collection: ...
    def get_collection(self, ref: str) -> Collection:
        """By id or name; NotFound when absent."""
        ...
    def list_collections(self) -> list[Collection]: ...
    def update_collection(self, collection_id: str, *, acl: Acl | None = None,
                          groups: Iterable[str] | None = None, keys: Iterable[str] | None = None,
                          description: str | None = None, sketch_questions: bool | None = None) -> Collection:
        """``acl``: the whole access list; ``groups`` / ``keys``: that half of it, the other half kept as the write
        transaction reads it (two admins changing one half each both stand)."""
        ...
    def delete_collection(self, collection_id: str, *, run: str | None = None) -> None: ...
    def forget_group(self, name: str, *, run: str | None = None,
                     owners: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
        """Take group ``name`` (in any ASCII case) off every access list, in one transaction: (the ids of the
        collections, the ids of the documents whose own list named it), sorted. A document's own list left naming
        nobody still narrows: only admins see the document then. ``owners``: only the lists of these collections
        and documents (a list written while the group was being deleted)."""
        ...

    # -- documents ----------------------------------------------------------------------------------
    def find_document(self, collection_id: str, *, source_path: str | None = None,
                      sha256: str | None = None) -> DocumentRecord | None: ...
    def put_document(self, doc: NewDocument, *, run: str | None = None, own_copy: bool = False,
                     expect: Expected | None = None, scope: AccessScope | None = None) -> PutResult:
        """Add, or replace the document at the same source path, or do nothing when it has these bytes already or,
        for a path with no document, when another document of the collection has them (unless ``own_copy``: a
        member's upload of bytes held by a document they may not see). One transaction: readers see the old
        version or the new one, never both.

        Checked inside that transaction: ``expect``, what the label and list were chosen from (``ChangedMeanwhile``
        when a new version would replace something else); ``scope``, the member uploading (``not_replaceable`` when
        the document at the path is not theirs to see).

        ``run`` (here and in every write below): the audit request id of the run making the change; the change is
        noted in the run journal in the same transaction (``run_changes``)."""
        ...
    def get_document(self, document_id: str) -> DocumentRecord: ...
    def document_data(self, document_id: str) -> bytes: ...
    def list_documents(self, collection_id: str, *, limit: int = 100, offset: int = 0) -> list[DocumentRecord]: ...
    def document_labels(self, at_least: Label) -> dict[str, tuple[Label, int]]:
        """Every document (all collections) labelled ``at_least`` or above: id -> (label, version)."""
        ...
    def relabel(self, document_id: str, *, label: Label | None = None, acl: Acl | None = None,
                clear_acl: bool = False, metadata: Mapping[str, str] | None = None,
                run: str | None = None) -> DocumentRecord:
        """Change a document's label and/or access list; ``metadata``: keys merged into its metadata (the marking
        that called for the label). One transaction."""
        ...
    def move_document(self, document_id: str, source_path: str, filename: str, *,
                      run: str | None = None) -> DocumentRecord:
        """Give a document the path its file was moved or renamed to: its id, label, access list, version, chunks
        and vectors stay. ``Conflict`` when another document of its collection has that path."""
        ...
    def delete_document(self, document_id: str, *, run: str | None = None) -> None: ...
    def delete_documents(self, document_ids: Sequence[str], *, run: str | None = None) -> int:
        """Delete those of these documents that exist, in one transaction (a sync's removals); how many."""
        ...

    # -- the run journal: what each audited run changed, for the record that closes a run killed outright ----
    def run_changes(self, run: str) -> list[tuple[str, str]]:
        """(document id, action) of every change ``run`` committed, in order; action: added, replaced, moved,
        relabelled or removed."""
        ...
    def journal_mark(self) -> int:
        """The newest journal entry's position (for ``prune_journal``)."""
        ...
    def forget_run(self, run: str) -> None:
        """Drop ``run``'s entries (its final audit record names its documents)."""
        ...
    def prune_journal(self, keep: Iterable[str], up_to: int) -> int:
        """Drop the entries up to ``up_to`` of every run but ``keep`` (the runs still open); how many."""
        ...
    def document_chunks(self, document_id: str) -> list[StoredChunk]: ...
    def embedded_chunks(self, collection_id: str, source_path: str) -> dict[str, np.ndarray]:
        """The stored vectors of the document at ``source_path``, by the chunk text each embeds (``Chunk.text``);
        empty when there is none. A new version's unchanged chunks take these instead of being embedded again."""
        ...

    # -- reads with the access rule -----------------------------------------------------------------
    def keyword_search(self, scope: AccessScope, query: str, filters: SearchFilters, limit: int) -> list[Scored]: ...
    def vector_search(self, scope: AccessScope, vector: np.ndarray, filters: SearchFilters,
                      limit: int) -> list[Scored]: ...
    def get_chunks(self, scope: AccessScope, chunk_ids: Sequence[str]) -> list[StoredChunk]:
        """Chunks by id, in the given order, silently dropping those ``scope`` may not see."""
        ...
    def visible_document(self, scope: AccessScope, document_id: str) -> bool: ...
    def visible_documents(self, scope: AccessScope, collection_id: str, *, limit: int = 100,
                          offset: int = 0) -> list[DocumentRecord]:
        """The documents of the collection that ``scope`` may see, in the order of ``list_documents``, in one query:
        ``limit`` and ``offset`` count those documents only (a member's page)."""
        ...
    def visible_document_counts(self, scope: AccessScope, collection_ids: Iterable[str]) -> dict[str, int]:
        """Collection id (of ``collection_ids``) -> how many of its documents ``scope`` may see (collections with
        none left out): a member's ``Collection.document_count``, which must not count what they may not see."""
        ...

    # -- housekeeping --------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Row counts and orphan counts (``orphan_*`` must all be 0)."""
        ...
    def check(self) -> IndexCheck:
        """The store's own integrity check plus the consistency of rows, keyword index and vectors."""
        ...
    def close(self) -> None: ...


# -- what every store checks the same way ----------------------------------------------------------------------


def new_id(prefix: str) -> str:
    """``col_…``, ``doc_…``, ``chk_…``: 80 random bits."""
    return f"{prefix}_{secrets.token_hex(10)}"


def check_collection_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name.startswith("col_"):
        raise InvalidRequest("A collection name has 1 to 64 letters, digits, '.', '_' or '-' (not 'col_…').",
                             param="name")


def unchanged_chunks(stored: Iterable[tuple[int, str, str, str]],
                     new: Sequence[tuple[str, str, str]]) -> dict[int, int]:
    """The chunks of a new version that the stored version has already: new chunk index -> stored chunk pk, for each
    new (indexed text, content, section) a stored (pk, indexed text, content, section) in document order equals;
    each stored chunk is taken once. Both stores keep those rows (their terms, vector and id) on a replacement."""
    rows: dict[tuple[str, str, str], list[int]] = {}
    for pk, text, content, section in stored:
        rows.setdefault((text, content, section), []).append(pk)
    kept = {}
    for i, key in enumerate(new):
        same = rows.get(key)
        if same:
            kept[i] = same.pop(0)
    return kept


def prepared_vectors(doc: NewDocument, dim: int) -> np.ndarray:
    """The document's vectors as a contiguous float32 matrix; ``ValueError`` (a programming error) when they do
    not match its chunks or the sha256 is not a hex digest."""
    vectors = np.ascontiguousarray(doc.vectors, dtype=np.float32)
    if vectors.shape != (len(doc.chunks), dim):
        raise ValueError(f"vectors {vectors.shape} do not match {len(doc.chunks)} chunks of dim {dim}")
    if len(doc.sha256) != 64:
        raise ValueError("sha256 must be a hex digest")
    return vectors


def unrestricted(scope: AccessScope, filters: SearchFilters) -> bool:
    """An admin with no filters may see every row: an allowed-set subquery would only cost time."""
    return scope.is_admin and filters == SearchFilters()
