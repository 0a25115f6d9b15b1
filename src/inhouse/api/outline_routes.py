"""Outline extraction over HTTP (action ``apps:use``): ``POST /v1/apps/outline``.

JSON (``{"text": "...", "filename"?: "notes.md", "key_points"?: true}``) or a multipart upload (``file`` = any
document the knowledge base parses). Answers the outline as JSON, or Markdown with ``?format=md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from inhouse.api.auth import require
from inhouse.api.deps import is_multipart, read_json, read_upload
from inhouse.api.openapi import BINARY, media, request_body
from inhouse.api.streaming import run_until_disconnect
from inhouse.apps.outline import OutlineInput, to_markdown
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.services import Services


class OutlineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, StringConstraints(max_length=20_000_000)]
    filename: Annotated[str, StringConstraints(min_length=1, max_length=255)] = "document.md"
    key_points: bool = True


def add_outline_routes(router: APIRouter, services: Services) -> None:
    outline_assistant, contexts = services.assistants.outline, services.assistants.contexts
    max_bytes = int(services.settings.apps.max_upload_mb * 1024 * 1024)

    @router.post("/v1/apps/outline", openapi_extra=request_body(json=OutlineRequest, multipart={
        "file": BINARY, "filename": {"type": "string"}, "key_points": {"type": "boolean"}},
        description="Text as JSON, or any document the knowledge base parses as a multipart upload."),
        responses={200: media("text/markdown", description="The outline: JSON, or Markdown (?format=md).")})
    async def create_outline(request: Request, format: Literal["json", "md"] = "json",
                             actor: Actor = Depends(require("apps:use"))) -> Response:
        if is_multipart(request):
            data, fields = await read_upload(request, max_bytes)
            points = (fields.get("key_points") or "true").strip().lower() not in ("false", "0", "no")
            inp = OutlineInput(data=data, filename=fields["filename"][:255], key_points=points)
        else:
            body: OutlineRequest = await read_json(request, OutlineRequest)
            inp = OutlineInput(data=body.text.encode("utf-8"), filename=body.filename, key_points=body.key_points)
        outline = await run_until_disconnect(request, outline_assistant.run(contexts.for_actor(actor), inp))
        # Serialised in a worker thread: an outline of 100,000 sections takes a good part of a second to dump.
        if format == "md":
            markdown = await run_in_threadpool(to_markdown, outline)
            return Response(markdown, media_type="text/markdown; charset=utf-8")
        return await run_in_threadpool(lambda: JSONResponse(outline.to_dict()))
