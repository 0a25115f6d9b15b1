"""``KnowledgeBase``: the one object the edges (API, CLI) use for company knowledge.

Every method that reads or changes a collection or document takes the actor and checks it here, in the core:
a collection or document the actor may not see is reported exactly like one that does not exist (``NotFound``),
so ids of other departments cannot be probed. Creating collections and changing their access lists is for
admins; adding, relabelling and deleting documents needs access to the collection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from inhouse.errors import DocumentRejected, InvalidRequest, NotFound, PermissionDenied
from inhouse.governance.labels import Label, label_of_item, parse_label
from inhouse.kb.access import AccessScope, Acl, may_access_collection
from inhouse.kb.answer import Answerer
from inhouse.kb.derived import DerivedLabels
from inhouse.kb.index.protocol import Collection, DocumentRecord, IndexStore, StoredChunk, not_replaceable
from inhouse.kb.ingest import (
    FileOutcome,
    FileSource,
    Ingestor,
    IngestProgress,
    IngestReport,
    iter_sources,
    sync_prefix,
)
from inhouse.kb.markings import Marked, MarkingReader
from inhouse.kb.retrieve import Hit, Retriever
from inhouse.types import Actor

if TYPE_CHECKING:
    import os

    from inhouse.chat.service import ChatService
    from inhouse.config import KbSettings
    from inhouse.kb.embed import Embedder
    from inhouse.kb.parse.isolated import IsolatedParser
    from inhouse.kb.parse.ocr import PageReader


def acl_from(groups: Iterable[str] | None = None, keys: Iterable[str] | None = None) -> Acl:
    def clean(values: Iterable[str] | None, what: str) -> frozenset[str]:
        out = set()
        for v in values or ():
            if not isinstance(v, str) or not v.strip() or len(v) > 128:
                raise InvalidRequest(f"Each {what} must be a non-empty string of at most 128 characters.",
                                     param="access")
            out.add(v.strip())
        return frozenset(out)

    return Acl(groups=clean(groups, "group"), keys=clean(keys, "key id"))


@dataclass(frozen=True)
class MarkingReview:
    """A document whose own marking, or the more sensitive document its text was taken from, calls for a more
    sensitive label than it has (``review_markings``)."""

    document: DocumentRecord  # as it was before the review
    marked: Marked  # the label called for and why
    derived_from: str | None = None  # the source document, when its text (not its marking) calls for the label


@dataclass(frozen=True)
class Relabelled:
    """A document after ``relabel``, and the documents of any collection raised with it because their text was
    taken from it (only when its label went up)."""

    document: DocumentRecord
    raised_copies: list[MarkingReview]


class KnowledgeBase:
    def __init__(self, store: IndexStore, embedder: Embedder, *, chat: ChatService | None = None,
                 settings: KbSettings | None = None, ocr: PageReader | None = None,
                 parser: IsolatedParser | None = None) -> None:
        from inhouse.config import KbSettings

        s = settings or KbSettings()
        self.settings = s
        self.store = store
        self.embedder = embedder
        self.ocr = ocr
        self.parser = parser
        # One set of fingerprints for ingestion and the review (``review_markings``): each reuses the other's.
        self.derived = DerivedLabels() if s.derived_labels else None
        self.ingestor = Ingestor(store, embedder, embed_batch=s.embed_batch, max_tokens=s.chunk_max_tokens,
                                 overlap_tokens=s.chunk_overlap_tokens, max_file_mb=s.max_file_mb, ocr=ocr,
                                 max_ocr_pages=s.ocr_max_pages, paged_parse=parser,
                                 markings=MarkingReader(s.label_names) if s.markings else None,
                                 derived=self.derived)
        self.retriever = Retriever(store, embedder, rrf_k=s.rrf_k, candidates=s.candidates,
                                   document_share=s.document_share)
        self.answerer = Answerer(self.retriever, chat, top_k=s.top_k, min_similarity=s.min_similarity,
                                 max_tokens=s.answer_max_tokens, rerank=s.rerank,
                                 coverage_check=s.coverage_check, translate=s.translate_questions,
                                 document_share=s.answer_document_share,
                                 sketch_everywhere=s.sketch_questions)

    # -- collections ------------------------------------------------------------------------------------

    def create_collection(self, actor: Actor, name: str, *, groups: Iterable[str] = (), keys: Iterable[str] = (),
                          description: str = "", sketch_questions: bool = False) -> Collection:
        _admin(actor, "create collections")
        return self.store.create_collection(name, acl=acl_from(groups, keys), description=description,
                                            sketch_questions=sketch_questions)

    def collection(self, actor: Actor, ref: str) -> Collection:
        col = self._visible_collection(actor, ref)
        return self._counted(AccessScope.of(actor), [col])[0]

    def _visible_collection(self, actor: Actor, ref: str) -> Collection:
        """The collection, NotFound when ``actor`` may not see it; its ``document_count`` counts every document."""
        try:
            col = self.store.get_collection(ref)
        except NotFound:
            col = None
        if col is None or not may_access_collection(AccessScope.of(actor), col.acl):
            raise NotFound(f"No collection '{ref}'.", param="collection")
        return col

    def list_collections(self, actor: Actor) -> list[Collection]:
        scope = AccessScope.of(actor)
        return self._counted(scope, [c for c in self.store.list_collections() if may_access_collection(scope, c.acl)])

    def _counted(self, scope: AccessScope, cols: list[Collection]) -> list[Collection]:
        """``cols`` with a member's ``document_count``: the documents they may see (restricted documents and those
        whose own list leaves them out are not theirs to count, as they are not theirs to list)."""
        if scope.is_admin or not cols:
            return cols
        counts = self.store.visible_document_counts(scope, [c.id for c in cols])
        return [replace(c, document_count=counts.get(c.id, 0)) for c in cols]

    def update_collection(self, actor: Actor, ref: str, *, groups: Iterable[str] | None = None,
                          keys: Iterable[str] | None = None, description: str | None = None,
                          sketch_questions: bool | None = None) -> Collection:
        col = self._visible_collection(actor, ref)
        _admin(actor, "change collections")
        # The half of the list not given is kept by the store, inside its write transaction: merged here, from a
        # read before it, a concurrent change of that half (another admin's) was undone.
        given = acl_from(groups, keys)
        return self.store.update_collection(col.id, groups=given.groups if groups is not None else None,
                                            keys=given.keys if keys is not None else None,
                                            description=description, sketch_questions=sketch_questions)

    def delete_collection(self, actor: Actor, ref: str, *, run: str | None = None) -> None:
        col = self._visible_collection(actor, ref)
        _admin(actor, "delete collections")
        self.store.delete_collection(col.id, run=run)

    def forget_group(self, name: str) -> dict[str, list[str]]:
        """``GroupGrants`` (``governance.directory``): a deleted group's name taken off every collection's and
        document's access list, so a group created later under that name does not inherit their documents. A
        document whose own list named only that group is then for admins only."""
        collections, documents = self.store.forget_group(name)
        return {"collections": collections, "documents": documents}

    def forget_groups_on(self, owner: str, names: Iterable[str], *, run: str | None = None) -> None:
        """``names`` taken off the access list of one collection or document (``owner``, its id): groups deleted
        while that list was being written (``UserDirectory.recheck_groups``), which their deletion could not take
        off."""
        for name in names:
            self.store.forget_group(name, run=run, owners=[owner])

    # -- documents --------------------------------------------------------------------------------------

    def document(self, actor: Actor, document_id: str) -> DocumentRecord:
        scope = AccessScope.of(actor)
        try:
            doc = self.store.get_document(document_id)
        except NotFound:
            doc = None
        if doc is None or not self.store.visible_document(scope, document_id):
            raise NotFound(f"No document '{document_id}'.", param="document_id")
        return doc

    def document_data(self, actor: Actor, document_id: str) -> tuple[DocumentRecord, bytes]:
        doc = self.document(actor, document_id)
        return doc, self.store.document_data(doc.id)

    def document_chunks(self, actor: Actor, document_id: str) -> list[StoredChunk]:
        return self.store.document_chunks(self.document(actor, document_id).id)

    def list_documents(self, actor: Actor, collection: str, *, limit: int = 100,
                       offset: int = 0) -> list[DocumentRecord]:
        col = self._visible_collection(actor, collection)
        scope = AccessScope.of(actor)
        if scope.is_admin:
            return self.store.list_documents(col.id, limit=limit, offset=offset)
        # One query with the access rule inside: ``limit`` and ``offset`` count the documents the caller may see (a
        # page of all of them, filtered, gave a member short or empty pages while more of theirs followed).
        return self.store.visible_documents(scope, col.id, limit=limit, offset=offset)

    def add_document(self, actor: Actor, collection: str, data: bytes, filename: str, *,
                     label: str | None = None, groups: Iterable[str] | None = None,
                     keys: Iterable[str] | None = None, metadata: Mapping[str, str] | None = None,
                     run: str | None = None) -> FileOutcome:
        """Add or replace one file (an upload); ``run``: its audit request id, under which the change is noted in
        the run journal (here and in ``relabel``, ``delete_document``, ``delete_collection``)."""
        col = self._visible_collection(actor, collection)
        acl = acl_from(groups, keys) if (groups or keys) else None
        own_copy = False
        if not actor.is_admin:
            if acl is not None:  # as in relabel: a list could lock others out of a new version, or let others in
                raise PermissionDenied("Only admins may set a document's own access list.", param="groups")
            # An upload replaces the document of the same name. One the member may not see (restricted, or a list
            # that does not name them) is not theirs to overwrite: like a file share, say the name is taken.
            scope = AccessScope.of(actor)
            existing = self.store.find_document(col.id, source_path=filename)
            if existing is not None and not self.store.visible_document(scope, existing.id):
                raise not_replaceable(filename)
            # The same bytes held by a document the member may not see do not stand for their upload: the answer
            # would name that document, and their file would not be there.
            same = self.store.find_document(col.id, sha256=hashlib.sha256(data).hexdigest())
            own_copy = same is not None and not self.store.visible_document(scope, same.id)
        # Checked again when the version is written (``scope``): the document may be relabelled, or its list
        # changed, while the file is parsed and embedded.
        return self.ingestor.ingest_bytes(col.id, data, filename, label=_label(label), acl=acl, metadata=metadata,
                                          run=run, own_copy=own_copy,
                                          scope=None if actor.is_admin else AccessScope.of(actor))

    def existing_document(self, actor: Actor, collection: str, filename: str) -> DocumentRecord | None:
        """The document an upload named ``filename`` would replace, when ``actor`` may see it (for the audit
        record of what the upload changed); None otherwise."""
        col = self._visible_collection(actor, collection)
        doc = self.store.find_document(col.id, source_path=filename)
        if doc is None or not self.store.visible_document(AccessScope.of(actor), doc.id):
            return None
        return doc

    def uploaded_document(self, actor: Actor, outcome: FileOutcome) -> DocumentRecord:
        """The record of a document ``actor`` just added or replaced, shown even when its own marking raised it
        beyond what ``actor`` may see (they sent its bytes); bytes that were already there only when visible."""
        if outcome.status in ("added", "replaced") and outcome.document_id:
            return self.store.get_document(outcome.document_id)
        return self.document(actor, outcome.document_id or "")

    def ingest_paths(self, actor: Actor, collection: str, paths: Sequence[str | os.PathLike[str]], *,
                     label: str | None = None, groups: Iterable[str] | None = None,
                     progress: Callable[[IngestProgress], None] | None = None, sync: bool = False,
                     report: IngestReport | None = None) -> IngestReport:
        """Ingest files and directories. ``sync``: ``paths`` are directories whose documents in the collection
        mirror them — new and changed files are ingested, unchanged ones kept, and documents of files no longer
        there are deleted. ``report``: filled as files are committed (``Ingestor.ingest``)."""
        from pathlib import Path

        col = self._visible_collection(actor, collection)
        acl = acl_from(groups) if groups else None
        if sync and not all(Path(p).is_dir() for p in paths):
            raise InvalidRequest("--sync takes directories: a single file has nothing to remove.", param="paths")
        sources: list[FileSource] = list(iter_sources(paths))
        prefixes = [sync_prefix(p) for p in paths] if sync else []
        return self.ingestor.ingest(col.id, sources, label=_label(label), acl=acl, progress=progress,
                                    remove_missing=prefixes, report=report)

    def relabel(self, actor: Actor, document_id: str, *, label: str | None = None,
                groups: Iterable[str] | None = None, keys: Iterable[str] | None = None,
                clear_access: bool = False, run: str | None = None) -> Relabelled:
        doc = self.document(actor, document_id)
        acl = acl_from(groups, keys) if (groups is not None or keys is not None) else None
        if not actor.is_admin and (clear_access or acl is not None):
            # A member narrowing or widening a document's list could lock others out or let others in.
            raise PermissionDenied("Only admins may change a document's access list.")
        marked = doc.metadata.get("marking_label")
        if label is not None and not actor.is_admin and marked and label_of_item(label) < parse_label(marked):
            raise PermissionDenied(f"The document is marked {marked} ({doc.metadata.get('marking', 'its marking')}); "
                                   f"only admins may label it below that.")
        derived = doc.metadata.get("derived_label")
        if label is not None and not actor.is_admin and derived and label_of_item(label) < parse_label(derived):
            raise PermissionDenied(f"The document's text was taken from a {derived} document; only admins may label "
                                   "it below that.")
        relabelled = self.store.relabel(doc.id, label=_label(label) if label is not None else None, acl=acl,
                                        clear_acl=clear_access, run=run)
        return Relabelled(relabelled, self._raise_copies(relabelled, run) if relabelled.label > doc.label else [])

    def _raise_copies(self, source: DocumentRecord, run: str | None) -> list[MarkingReview]:
        """A document raised to confidential or above takes along the documents whose text was taken from it
        (``DerivedLabels.copies``): each is raised as ingestion would have raised it, and its source recorded."""
        derived = self.derived
        if derived is None or source.label < derived.floor:
            return []
        derived.refresh(self.store)  # the source is listed at its new label
        raised = []
        for doc, found in derived.copies(source):
            derived.add(self.store.relabel(doc.id, label=found.label, metadata={
                "derived_from": found.document_id, "derived_label": found.label.value}, run=run))
            raised.append(MarkingReview(doc, Marked(found.label, found.reason), found.document_id))
        return raised

    def review_markings(self, actor: Actor, collection: str, *, apply: bool = False,
                        run: str | None = None) -> list[MarkingReview]:
        """The documents of ``collection`` whose own markings call for a more sensitive label than they have,
        read again from their stored bytes (documents ingested before markings were read, or under other
        ``kb.label_names``), and, with ``kb.derived_labels``, those whose text was taken from a more sensitive
        document of any collection (ingested before the comparison existed, or before their source was labelled).
        ``apply``: raise them, and record every document's marking (the label members may not relabel below), as
        ingestion does now. Admins only; never lowers a label. ``run``: the audit request id the changes are noted
        under in the run journal (as in ``relabel``)."""
        _admin(actor, "review the markings of documents")
        col = self._visible_collection(actor, collection)
        reader = MarkingReader(self.settings.label_names)
        derived = self.derived
        if derived is not None:
            derived.refresh(self.store)
        found: list[MarkingReview] = []
        offset, page = 0, 200
        while docs := self.store.list_documents(col.id, limit=page, offset=offset):
            offset += page
            for doc in docs:
                try:
                    marked = reader.read(self.ingestor.parse(self.store.document_data(doc.id), doc.filename))
                except DocumentRejected:
                    marked = None  # it was read once; a parser change that now refuses it is not a marking
                label = doc.label
                if marked is not None:
                    raise_it = marked.label > label
                    if apply and (raise_it or doc.metadata.get("marking_label") != marked.label.value):
                        relabelled = self.store.relabel(doc.id, label=marked.label if raise_it else None, metadata={
                            "marking": marked.reason, "marking_label": marked.label.value}, run=run)
                        if derived is not None:
                            derived.add(relabelled)  # a source for the documents after it, if raised to one
                    if raise_it:
                        found.append(MarkingReview(doc, marked))
                        label = marked.label
                if derived is None or not derived.any_above(label):
                    continue
                vectors = np.array(list(self.store.embedded_chunks(col.id, doc.source_path).values()))
                # Judged as stored, not as a new text: copies not raised yet would hide one another (kb/derived.py).
                source = derived.match([c.content for c in self.store.document_chunks(doc.id)], label,
                                       exclude=[doc.id], vectors=vectors, discount_below=False)
                if source is not None:
                    if apply:
                        derived.add(self.store.relabel(doc.id, label=source.label, metadata={
                            "derived_from": source.document_id, "derived_label": source.label.value}, run=run))
                    found.append(MarkingReview(doc, Marked(source.label, source.reason), source.document_id))
        return found

    def delete_document(self, actor: Actor, document_id: str, *, run: str | None = None) -> None:
        self.ingestor.delete(self.document(actor, document_id).id, run=run)

    # -- reading ---------------------------------------------------------------------------------------

    def search(self, actor: Actor, query: str, *, collections: Sequence[str] | None = None, top_k: int = 5,
               filters: Mapping[str, Any] | None = None) -> list[Hit]:
        return self.retriever.retrieve(actor, query, collections, top_k, filters)

    def close(self) -> None:
        if self.parser is not None:
            self.parser.close()
        self.retriever.close()
        self.store.close()
        close_embedder = getattr(self.embedder, "close", None)  # the llama.cpp embedder frees its model
        if callable(close_embedder):
            close_embedder()


def _admin(actor: Actor, what: str) -> None:
    if not actor.is_admin:
        raise PermissionDenied(f"Only admins may {what}.")


def _label(value: str | None) -> Label | None:
    return None if value is None or value == "" else parse_label(value)


def build_knowledge_base(settings: Any, embedder: Embedder, *, chat: ChatService | None = None,
                         ocr: PageReader | None = None, parser: IsolatedParser | None = None) -> KnowledgeBase:
    """From ``Settings``: the index store ``store.url`` names (``<data_dir>/kb.db`` by default) over ``embedder``
    (the composition root's choice); ``ocr`` reads scanned pages and images (``bootstrap.build_ocr_reader``);
    ``parser`` parses ingested files in worker processes (``bootstrap.build_parser``)."""
    from inhouse.store.build import build_index_store

    store = build_index_store(settings, dim=embedder.dim)
    return KnowledgeBase(store, embedder, chat=chat, settings=settings.kb, ocr=ocr, parser=parser)
