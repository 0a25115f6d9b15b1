"""Company knowledge over HTTP: collections, documents, ``/v1/search``, and the ``knowledge`` extension of chat.

Thin: ``KnowledgeBase`` (``kb/service.py``) checks who may see what, in the core. Every route declares its action;
ids the caller may not see answer 404 exactly like ids that do not exist.

Chat extension: ``POST /v1/chat/completions`` with ``"knowledge": {"collections": ["hr"], "top_k": 5}`` answers
from the documents: the last user message is the question, the prompt is rebuilt as fixed instructions →
numbered passages → question, and the response carries ``citations`` (the chunks the answer cites). When nothing
relevant is found the answer is "The documents do not cover this." and no model runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, UploadFile
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from inhouse.api.auth import require
from inhouse.api.streaming import DONE, SSEResponse, encode_event
from inhouse.chat.service import new_request_id
from inhouse.errors import InvalidRequest
from inhouse.kb.answer import Grounding, cited, is_not_covered, not_covered_text
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.kb.service import KnowledgeBase

Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
_MAX_TEXT = 4000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Access(_Body):
    groups: Annotated[list[Name], Field(max_length=256)] | None = None
    keys: Annotated[list[Name], Field(max_length=256)] | None = None


class CollectionCreate(_Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    access: Access = Field(default_factory=Access)


class CollectionUpdate(_Body):
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    access: Access | None = None


class DocumentUpdate(_Body):
    label: Annotated[str, StringConstraints(max_length=32)] | None = None
    access: Access | None = None
    clear_access: bool = False


class SearchRequest(_Body):
    query: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    collections: Annotated[list[Name], Field(max_length=64)] | None = None
    top_k: Annotated[int, Field(ge=1, le=50)] = 5
    filters: dict[str, Any] | None = None


class KnowledgeOptions(_Body):
    collections: Annotated[list[Name], Field(max_length=64)] | None = None
    top_k: Annotated[int, Field(ge=1, le=20)] | None = None


def _split(value: str | None) -> list[str] | None:
    if value is None or not value.strip():
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def add_kb_routes(router: APIRouter, kb: KnowledgeBase) -> None:
    run = run_in_threadpool

    @router.get("/v1/collections")
    async def list_collections(actor: Actor = Depends(require("kb:read"))) -> dict[str, Any]:
        cols = await run(kb.list_collections, actor)
        return {"object": "list", "data": [c.to_dict() for c in cols]}

    @router.post("/v1/collections", status_code=201)
    async def create_collection(body: CollectionCreate, actor: Actor = Depends(require("kb:manage"))) -> Any:
        col = await run(lambda: kb.create_collection(actor, body.name, groups=body.access.groups or (),
                                                     keys=body.access.keys or (), description=body.description))
        return JSONResponse(col.to_dict(), status_code=201)

    @router.get("/v1/collections/{collection_id}")
    async def get_collection(collection_id: str, actor: Actor = Depends(require("kb:read"))) -> dict[str, Any]:
        return (await run(kb.collection, actor, collection_id)).to_dict()

    @router.patch("/v1/collections/{collection_id}")
    async def update_collection(collection_id: str, body: CollectionUpdate,
                                actor: Actor = Depends(require("kb:manage"))) -> dict[str, Any]:
        acc = body.access
        col = await run(lambda: kb.update_collection(actor, collection_id, groups=acc.groups if acc else None,
                                                     keys=acc.keys if acc else None, description=body.description))
        return col.to_dict()

    @router.delete("/v1/collections/{collection_id}")
    async def delete_collection(collection_id: str, actor: Actor = Depends(require("kb:manage"))) -> dict[str, Any]:
        await run(kb.delete_collection, actor, collection_id)
        return {"id": collection_id, "object": "collection", "deleted": True}

    @router.post("/v1/collections/{collection_id}/documents", status_code=201)
    async def upload_document(collection_id: str, file: UploadFile = File(...),
                              label: str | None = Form(None), groups: str | None = Form(None),
                              keys: str | None = Form(None),
                              actor: Actor = Depends(require("kb:write"))) -> Any:
        data = await file.read()
        name = file.filename or "upload"
        outcome = await run(lambda: kb.add_document(actor, collection_id, data, name, label=label,
                                                    groups=_split(groups), keys=_split(keys)))
        if outcome.status == "error":
            raise InvalidRequest(outcome.error or "The file was rejected.", code="document_rejected", param="file")
        doc = await run(kb.document, actor, outcome.document_id or "")
        status = 201 if outcome.status in ("added", "replaced") else 200
        return JSONResponse({**doc.to_dict(), "status": outcome.status}, status_code=status)

    @router.get("/v1/collections/{collection_id}/documents")
    async def list_documents(collection_id: str, limit: int = 100, offset: int = 0,
                             actor: Actor = Depends(require("kb:read"))) -> dict[str, Any]:
        if not (1 <= limit <= 1000 and offset >= 0):
            raise InvalidRequest("limit must be 1..1000 and offset >= 0.", param="limit")
        docs = await run(lambda: kb.list_documents(actor, collection_id, limit=limit, offset=offset))
        return {"object": "list", "data": [d.to_dict() for d in docs]}

    def _doc_in(actor: Actor, collection_id: str, document_id: str) -> Any:
        col = kb.collection(actor, collection_id)
        doc = kb.document(actor, document_id)
        if doc.collection_id != col.id:
            from inhouse.errors import NotFound

            raise NotFound(f"No document '{document_id}'.", param="document_id")
        return doc

    @router.get("/v1/collections/{collection_id}/documents/{document_id}")
    async def get_document(collection_id: str, document_id: str,
                           actor: Actor = Depends(require("kb:read"))) -> dict[str, Any]:
        return (await run(_doc_in, actor, collection_id, document_id)).to_dict()

    @router.get("/v1/collections/{collection_id}/documents/{document_id}/content")
    async def download_document(collection_id: str, document_id: str,
                                actor: Actor = Depends(require("kb:read"))) -> Response:
        doc = await run(_doc_in, actor, collection_id, document_id)
        _, data = await run(kb.document_data, actor, doc.id)
        disposition = f"attachment; filename*=UTF-8''{quote(doc.filename, safe='')}"
        return Response(data, media_type=doc.mime or "application/octet-stream",
                        headers={"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff"})

    @router.patch("/v1/collections/{collection_id}/documents/{document_id}")
    async def relabel_document(collection_id: str, document_id: str, body: DocumentUpdate,
                               actor: Actor = Depends(require("kb:write"))) -> dict[str, Any]:
        await run(_doc_in, actor, collection_id, document_id)
        acc = body.access
        doc = await run(lambda: kb.relabel(actor, document_id, label=body.label,
                                           groups=acc.groups if acc else None, keys=acc.keys if acc else None,
                                           clear_access=body.clear_access))
        return doc.to_dict()

    @router.delete("/v1/collections/{collection_id}/documents/{document_id}")
    async def delete_document(collection_id: str, document_id: str,
                              actor: Actor = Depends(require("kb:write"))) -> dict[str, Any]:
        await run(_doc_in, actor, collection_id, document_id)
        await run(kb.delete_document, actor, document_id)
        return {"id": document_id, "object": "document", "deleted": True}

    @router.post("/v1/search")
    async def search(body: SearchRequest, actor: Actor = Depends(require("kb:read"))) -> dict[str, Any]:
        hits = await run(lambda: kb.search(actor, body.query, collections=body.collections, top_k=body.top_k,
                                           filters=body.filters))
        return {"object": "list", "data": [h.to_dict() for h in hits]}


# -- the chat extension ----------------------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return ""


async def ground_chat(kb: KnowledgeBase, actor: Actor, raw: dict[str, Any], knowledge: Any) -> Grounding:
    """Retrieve for the last user message and rebuild the messages as a grounded prompt."""
    opts = KnowledgeOptions.model_validate(knowledge if knowledge is not None else {})
    messages = list(raw.get("messages") or [])
    last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), None)
    if last is None:
        raise InvalidRequest("A knowledge request needs a user message to answer.", param="messages")
    question = _text(messages[last].get("content"))[:_MAX_TEXT]
    history = [{"role": m["role"], "content": _text(m.get("content"))} for m in messages[:last]
               if m.get("role") in ("user", "assistant")]
    # The question's translation, the coverage check and the optional relevance judge (kb.rerank) run on the
    # requested model, like the answer.
    model = str(raw.get("model", ""))
    g = await kb.answerer.ground_async(actor, question, opts.collections, model=model, top_k=opts.top_k,
                                       history=history)
    return await kb.answerer.judge(g, model=model)


def citations_for(text: str, g: Grounding) -> list[dict[str, Any]]:
    return [] if is_not_covered(text) else [c.to_dict() for c in cited(text, g.hits)]


def not_covered_response(model: str, stream: bool, question: str = "") -> Response:
    """The answer when retrieval found nothing relevant: no answer generated, nothing invented."""
    rid, created = new_request_id(), int(time.time())
    text = not_covered_text(question)
    if not stream:
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, "citations": [],
        })

    async def events() -> AsyncIterator[bytes]:
        base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
        yield encode_event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text},
                                                 "finish_reason": None}]})
        yield encode_event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                            "citations": []})
        yield DONE

    return SSEResponse(events())


async def stream_with_citations(events: AsyncIterator[bytes], g: Grounding) -> AsyncIterator[bytes]:
    """Pass the SSE events through; before ``[DONE]`` add one chunk carrying the citations of the full text."""
    parts: list[str] = []
    last: dict[str, Any] = {}
    async for ev in events:
        if ev == DONE:
            extra: dict[str, Any] = {k: last[k] for k in ("id", "created", "model") if k in last}
            yield encode_event({**extra, "object": "chat.completion.chunk", "choices": [],
                                "citations": citations_for("".join(parts), g)})
            yield ev
            continue
        if ev.startswith(b"data: "):
            try:
                payload = json.loads(ev[6:])
            except ValueError:
                payload = {}
            if isinstance(payload, dict):
                last = payload
                for ch in payload.get("choices") or []:
                    parts.append((ch.get("delta") or {}).get("content") or "")
        yield ev


def attach_citations(response: Response, g: Grounding | None) -> Response:
    """Add ``citations`` to a chat completion (JSON body, or a last SSE chunk before ``[DONE]``)."""
    if g is None:
        return response
    if isinstance(response, SSEResponse):
        response.events = stream_with_citations(response.events, g)
        return response
    if isinstance(response, JSONResponse) and response.status_code == 200:
        body = json.loads(bytes(response.body))
        text = "".join(_text((c.get("message") or {}).get("content")) for c in body.get("choices") or [])
        body["citations"] = citations_for(text, g)
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        return JSONResponse(body, status_code=response.status_code, headers=headers)
    return response


def upload_limit(settings: Any) -> Any:
    """Body limit for document uploads: the largest accepted file plus room for the multipart envelope."""
    limit = int(settings.kb.max_file_mb * 1024 * 1024) + 64 * 1024
    # Transcripts, recordings and documents sent to the assistants (minutes, outline).
    apps_limit = int(settings.apps.max_upload_mb * 1024 * 1024) + 64 * 1024

    def for_path(path: str) -> int | None:
        if path.rstrip("/") in ("/v1/apps/minutes", "/v1/apps/outline"):
            return apps_limit
        return limit if path.startswith("/v1/collections/") and path.rstrip("/").endswith("/documents") else None

    return for_path
