"""Company knowledge over HTTP: collections, documents and ``/v1/search``.

Thin: ``KnowledgeBase`` (``kb/service.py``) checks who may see what, in the core. Every route declares its action;
ids the caller may not see answer 404 exactly like ids that do not exist. The ``knowledge`` extension of chat
completions (grounding, citations) is part of the OpenAI routes: ``openai/knowledge.py``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from inhouse.api.audit_trail import note, write_ahead
from inhouse.api.auth import require
from inhouse.api.bounds import MAX_INT64
from inhouse.api.deps import services_of, upload_filename
from inhouse.api.openapi import errors, media
from inhouse.api.responses import (
    Collection,
    CollectionList,
    Deleted,
    Document,
    DocumentList,
    RelabelledDocument,
    SearchResults,
    UploadedDocument,
)
from inhouse.errors import InvalidRequest, NotFound
from inhouse.governance.audit.log import MAX_RECORD_DOCUMENTS, changed_documents
from inhouse.governance.labels import max_label
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.governance.store import GroupRecord
    from inhouse.kb.index.protocol import DocumentRecord
    from inhouse.kb.service import KnowledgeBase

Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Access(_Body):
    groups: Annotated[list[Name], Field(max_length=256)] | None = None
    keys: Annotated[list[Name], Field(max_length=256)] | None = None


class CollectionCreate(_Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    access: Access = Field(default_factory=Access)
    sketch_questions: bool = False


class CollectionUpdate(_Body):
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    access: Access | None = None
    sketch_questions: bool | None = None


class DocumentUpdate(_Body):
    label: Annotated[str, StringConstraints(max_length=32)] | None = None
    access: Access | None = None
    clear_access: bool = False


class SearchRequest(_Body):
    query: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    collections: Annotated[list[Name], Field(max_length=64)] | None = None
    top_k: Annotated[int, Field(ge=1, le=50)] = 5
    filters: dict[str, Any] | None = None


def _split(value: str | None) -> list[str] | None:
    if value is None or not value.strip():
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _note_changes(request: Request, changes: list[tuple[str, str]]) -> None:
    """Name in the request's audit record the documents a run changed ((document id, action) from its journal), with
    their counts by action; as the record of a CLI run or of a run closed as interrupted does."""
    documents = list(dict.fromkeys(doc_id for doc_id, _ in changes))
    counts: dict[str, Any] = changed_documents(changes, len(documents))
    note(request, documents=documents[:MAX_RECORD_DOCUMENTS], **counts)


def _access(doc: DocumentRecord) -> dict[str, list[str]] | None:
    """A document's own access list for the audit record; None: the collection's list applies unchanged."""
    return doc.acl.to_dict() if doc.acl is not None else None


def add_kb_routes(router: APIRouter, kb: KnowledgeBase) -> None:
    run = run_in_threadpool

    @router.get("/v1/collections", responses={200: {"model": CollectionList}})
    async def list_collections(actor: Actor = Depends(require("kb:read"))) -> dict[str, Any]:
        cols = await run(kb.list_collections, actor)
        return {"object": "list", "data": [c.to_dict() for c in cols]}

    async def known_groups(request: Request, actor: Actor, groups: list[str] | None, *,
                           param: str = "access") -> tuple[list[str] | None, list[GroupRecord]]:
        """``groups`` as the directory spells them, and those groups (for ``recheck``); 400 ``unknown_group`` for a
        name that is no group (it would admit nobody now, and whoever joins a group made later under it). Only an
        admin's list: the core refuses a member's."""
        if groups is None or not actor.is_admin:
            return groups, []
        found = await run(lambda: services_of(request).directory.resolve_groups(groups, param=param))
        return [g.name for g in found], found

    async def recheck(request: Request, groups: list[GroupRecord], owner: str, rid: str | None = None) -> bool:
        """Whether any of ``groups`` (``known_groups``) was deleted while the access list of ``owner`` (a collection
        or document id) was written naming it; such names are taken off that list again and named in the request's
        record (``UserDirectory.recheck_groups``: the deletion could not take off a name written after it)."""
        if not groups:
            return False
        gone = await run(lambda: services_of(request).directory.recheck_groups(
            groups, lambda names: kb.forget_groups_on(owner, names, run=rid)))
        if gone:
            note(request, groups_deleted_meanwhile=gone)
        return bool(gone)

    @router.post("/v1/collections", status_code=201, responses={201: {"model": Collection}, **errors(409)})
    async def create_collection(body: CollectionCreate, request: Request,
                                actor: Actor = Depends(require("kb:manage"))) -> Any:
        groups, checked = await known_groups(request, actor, body.access.groups)
        col = await run(lambda: kb.create_collection(actor, body.name, groups=groups or (),
                                                     keys=body.access.keys or (), description=body.description,
                                                     sketch_questions=body.sketch_questions))
        if await recheck(request, checked, col.id):
            col = await run(kb.collection, actor, col.id)
        return JSONResponse(col.to_dict(), status_code=201)

    @router.get("/v1/collections/{collection_id}", responses={200: {"model": Collection}})
    async def get_collection(collection_id: str, actor: Actor = Depends(require("kb:read"))) -> dict[str, Any]:
        return (await run(kb.collection, actor, collection_id)).to_dict()

    @router.patch("/v1/collections/{collection_id}", responses={200: {"model": Collection}})
    async def update_collection(collection_id: str, body: CollectionUpdate, request: Request,
                                actor: Actor = Depends(require("kb:manage"))) -> dict[str, Any]:
        acc = body.access
        before = await run(kb.collection, actor, collection_id)
        groups, checked = await known_groups(request, actor, acc.groups if acc else None)
        col = await run(lambda: kb.update_collection(actor, collection_id, groups=groups,
                                                     keys=acc.keys if acc else None, description=body.description,
                                                     sketch_questions=body.sketch_questions))
        if await recheck(request, checked, col.id):
            col = await run(kb.collection, actor, col.id)
        if acc is not None:  # who could read the collection before and after: the change an auditor asks about
            note(request, access_before=before.acl.to_dict(), access_after=col.acl.to_dict())
        return col.to_dict()

    @router.delete("/v1/collections/{collection_id}", responses={200: {"model": Deleted}})
    async def delete_collection(collection_id: str, request: Request,
                                actor: Actor = Depends(require("kb:manage"))) -> dict[str, Any]:
        rid = await write_ahead(request, kb.store.forget_run)
        await run(lambda: kb.delete_collection(actor, collection_id, run=rid))
        # Its documents went with it: the record names each one (the run journal holds exactly what was deleted),
        # so ``?document=doc_…`` finds who deleted it, as for a document deleted on its own.
        _note_changes(request, await run(kb.store.run_changes, rid))
        return {"id": collection_id, "object": "collection", "deleted": True}

    @router.post("/v1/collections/{collection_id}/documents", status_code=201, responses={
        201: {"model": UploadedDocument, "description": "Added or replaced."},
        200: {"model": UploadedDocument, "description": "The same bytes were there already."},
        **errors(403, 409, why={403: "Only admins may set a document's own access list.",
                                409: "A document of that name the caller may not see is there already."})})
    async def upload_document(collection_id: str, file: UploadFile = File(...),
                              label: str | None = Form(None), groups: str | None = Form(None),
                              keys: str | None = Form(None), *, request: Request,
                              actor: Actor = Depends(require("kb:write"))) -> Any:
        if len((await request.form()).getlist("file")) > 1:  # the form FastAPI parsed; it kept the last file only
            raise InvalidRequest("Send one file per request: this one has more than one 'file' part.", param="file")
        data = await file.read()
        name = upload_filename(file) or "upload"
        group_list, checked = await known_groups(request, actor, _split(groups), param="groups")
        key_list = _split(keys)
        # The version a new one with its own access list replaces: its list is the "before" of the change.
        new_list = group_list is not None or key_list is not None
        previous = await run(kb.existing_document, actor, collection_id, name) if new_list else None
        rid = await write_ahead(request, kb.store.forget_run)
        outcome = await run(lambda: kb.add_document(actor, collection_id, data, name, label=label,
                                                    groups=group_list, keys=key_list, run=rid))
        if outcome.status == "error":
            raise InvalidRequest(outcome.error or "The file was rejected.", code="document_rejected", param="file")
        if outcome.status in ("added", "replaced") and outcome.document_id:
            await recheck(request, checked, outcome.document_id, rid)
        doc = await run(kb.uploaded_document, actor, outcome)
        note(request, label=doc.label.value, documents=[doc.id], document_status=outcome.status,
             marking=outcome.marking, derived_from=outcome.derived_from)  # None: the label given stood
        if previous is not None and outcome.status == "replaced" and previous.acl != doc.acl:
            note(request, access_before=_access(previous), access_after=_access(doc))
        status = 201 if outcome.status in ("added", "replaced") else 200
        return JSONResponse({**doc.to_dict(), "status": outcome.status}, status_code=status)

    @router.get("/v1/collections/{collection_id}/documents", responses={200: {"model": DocumentList}})
    async def list_documents(collection_id: str, limit: int = Query(100, ge=1, le=1000),
                             offset: int = Query(0, ge=0, le=MAX_INT64),
                             actor: Actor = Depends(require("kb:read"))) -> dict[str, Any]:
        docs = await run(lambda: kb.list_documents(actor, collection_id, limit=limit, offset=offset))
        return {"object": "list", "data": [d.to_dict() for d in docs]}

    def _noted(request: Request, doc: DocumentRecord) -> DocumentRecord:
        """``doc``, named (with its label) in the request's audit record."""
        note(request, label=doc.label.value, documents=[doc.id])
        return doc

    def _doc_in(actor: Actor, collection_id: str, document_id: str) -> Any:
        col = kb.collection(actor, collection_id)
        doc = kb.document(actor, document_id)
        if doc.collection_id != col.id:
            raise NotFound(f"No document '{document_id}'.", param="document_id")
        return doc

    @router.get("/v1/collections/{collection_id}/documents/{document_id}", responses={200: {"model": Document}})
    async def get_document(collection_id: str, document_id: str, request: Request,
                           actor: Actor = Depends(require("kb:read"))) -> dict[str, Any]:
        return _noted(request, await run(_doc_in, actor, collection_id, document_id)).to_dict()

    @router.get("/v1/collections/{collection_id}/documents/{document_id}/content", response_class=Response,
                responses={200: media("*/*", description="The document's bytes, with its own media type.")})
    async def download_document(collection_id: str, document_id: str, request: Request,
                                actor: Actor = Depends(require("kb:read"))) -> Response:
        doc = _noted(request, await run(_doc_in, actor, collection_id, document_id))
        _, data = await run(kb.document_data, actor, doc.id)
        disposition = f"attachment; filename*=UTF-8''{quote(doc.filename, safe='')}"
        return Response(data, media_type=doc.mime or "application/octet-stream",
                        headers={"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff"})

    @router.patch("/v1/collections/{collection_id}/documents/{document_id}", responses={
        200: {"model": RelabelledDocument},
        **errors(403, why={403: "Only admins may change a document's access list."})})
    async def relabel_document(collection_id: str, document_id: str, body: DocumentUpdate, request: Request,
                               actor: Actor = Depends(require("kb:write"))) -> dict[str, Any]:
        before = _noted(request, await run(_doc_in, actor, collection_id, document_id))
        acc = body.access
        groups, checked = await known_groups(request, actor, acc.groups if acc else None)
        rid = await write_ahead(request, kb.store.forget_run)
        done = await run(lambda: kb.relabel(actor, document_id, label=body.label,
                                            groups=groups, keys=acc.keys if acc else None,
                                            clear_access=body.clear_access, run=rid))
        doc, copies = done.document, done.raised_copies
        if await recheck(request, checked, doc.id, rid):
            doc = await run(kb.document, actor, doc.id)
        if acc is not None or body.clear_access:  # None: the collection's list applies
            note(request, access_before=_access(before), access_after=_access(doc))
        raised = [{"id": c.document.id, "collection_id": c.document.collection_id, "label": c.marked.label.value,
                   "label_before": c.document.label.value, "derived_from": c.derived_from or doc.id,
                   "reason": c.marked.reason} for c in copies]
        # The record names every copy raised (``documents``; the first ones with labels and sources in
        # ``details``); the answer only those the caller may see.
        note(request, label=doc.label.value, label_before=before.label.value,
             documents=[c.document.id for c in copies])
        if raised:
            note(request, raised_copies=[{k: c[k] for k in ("id", "label", "label_before", "derived_from")}
                                         for c in raised[:50]])
        visible = await run(_visible, actor, [c["id"] for c in raised]) if raised else set()
        return {**doc.to_dict(), "raised_copies": [c for c in raised if c["id"] in visible]}

    def _visible(actor: Actor, document_ids: list[str]) -> set[str]:
        seen = set()
        for doc_id in document_ids:
            with contextlib.suppress(NotFound):
                seen.add(kb.document(actor, doc_id).id)
        return seen

    @router.delete("/v1/collections/{collection_id}/documents/{document_id}", responses={200: {"model": Deleted}})
    async def delete_document(collection_id: str, document_id: str, request: Request,
                              actor: Actor = Depends(require("kb:write"))) -> dict[str, Any]:
        _noted(request, await run(_doc_in, actor, collection_id, document_id))
        rid = await write_ahead(request, kb.store.forget_run)
        await run(lambda: kb.delete_document(actor, document_id, run=rid))
        return {"id": document_id, "object": "document", "deleted": True}

    @router.post("/v1/search", responses={200: {"model": SearchResults}, **errors(
        404, why={404: "A collection named in `collections` does not exist or is not the caller's to see."})})
    async def search(body: SearchRequest, request: Request,
                     actor: Actor = Depends(require("kb:read"))) -> dict[str, Any]:
        hits = await run(lambda: kb.search(actor, body.query, collections=body.collections, top_k=body.top_k,
                                           filters=body.filters))
        if hits:  # the snippets returned are the documents' content: who received which
            note(request, label=max_label(h.chunk.label for h in hits).value,
                 documents=list(dict.fromkeys(h.chunk.document_id for h in hits)))
        return {"object": "list", "data": [h.to_dict() for h in hits]}
