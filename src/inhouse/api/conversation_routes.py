"""The caller's chat history: ``/v1/conversations`` (list, create, get, replace, delete).

Thin over ``ConversationStore``; every route declares its action. A conversation belongs to a user (or to a key
bound to no user); another owner's id answers 404 exactly like an unknown one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from inhouse.api.auth import require
from inhouse.api.responses import Conversation, ConversationList, Deleted
from inhouse.store.conversations import MAX_MESSAGES, MAX_TITLE_CHARS
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.store.conversations import ConversationStore


class StoredMessage(BaseModel):
    # Citations are kept as the chat response gave them (bounded), so a reopened answer still opens its sources.
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: Annotated[str, StringConstraints(max_length=100_000)]
    citations: Annotated[list[dict[str, Any]], Field(max_length=50)] | None = None


class ConversationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, StringConstraints(max_length=MAX_TITLE_CHARS)] | None = None
    model: Annotated[str, StringConstraints(max_length=200)] | None = None
    messages: Annotated[list[StoredMessage], Field(max_length=MAX_MESSAGES)] | None = None


def _messages(body: ConversationBody) -> list[dict[str, Any]] | None:
    if body.messages is None:
        return None
    return [m.model_dump(exclude_none=True) for m in body.messages]


def add_conversation_routes(router: APIRouter, store: ConversationStore) -> None:
    run = run_in_threadpool

    @router.get("/v1/conversations", responses={200: {"model": ConversationList}})
    async def list_conversations(actor: Actor = Depends(require("conversations:read"))) -> dict[str, Any]:
        convs = await run(store.list, actor)
        return {"object": "list", "data": [c.summary() for c in convs]}

    @router.post("/v1/conversations", status_code=201, responses={201: {"model": Conversation}})
    async def create_conversation(body: ConversationBody,
                                  actor: Actor = Depends(require("conversations:write"))) -> Any:
        conv = await run(lambda: store.create(actor, title=body.title or "", model=body.model,
                                              messages=_messages(body) or []))
        return JSONResponse(conv.to_dict(), status_code=201)

    @router.get("/v1/conversations/{conversation_id}", responses={200: {"model": Conversation}})
    async def get_conversation(conversation_id: str,
                               actor: Actor = Depends(require("conversations:read"))) -> dict[str, Any]:
        return (await run(store.get, actor, conversation_id)).to_dict()

    @router.put("/v1/conversations/{conversation_id}", responses={200: {"model": Conversation}})
    async def replace_conversation(conversation_id: str, body: ConversationBody,
                                   actor: Actor = Depends(require("conversations:write"))) -> dict[str, Any]:
        conv = await run(lambda: store.update(actor, conversation_id, title=body.title, model=body.model,
                                              messages=_messages(body)))
        return conv.to_dict()

    @router.delete("/v1/conversations/{conversation_id}", responses={200: {"model": Deleted}})
    async def delete_conversation(conversation_id: str,
                                  actor: Actor = Depends(require("conversations:write"))) -> dict[str, Any]:
        await run(store.delete, actor, conversation_id)
        return {"id": conversation_id, "object": "conversation", "deleted": True}
