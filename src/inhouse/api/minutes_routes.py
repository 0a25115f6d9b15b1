"""Meeting minutes over HTTP (action ``apps:use``): ``POST /v1/apps/minutes``.

The body is either JSON (``{"text": "...", "filename"?, "meeting_date"?, "attendees"?, "timezone"?}``) or a
multipart upload (``file`` = transcript or audio, with the same optional fields as form fields). The answer is the
minutes as JSON; ``?format=md`` gives Markdown and ``?format=ics`` an iCalendar file of the dated action items.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.responses import JSONResponse, Response

from inhouse.api.auth import require
from inhouse.api.deps import is_multipart, read_json, read_upload
from inhouse.api.openapi import BINARY, media, request_body
from inhouse.api.streaming import run_until_disconnect
from inhouse.apps.minutes import MinutesInput
from inhouse.apps.minutes.export import MEDIA_TYPES, render
from inhouse.errors import InvalidRequest
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.services import Services

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class MinutesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, StringConstraints(max_length=20_000_000)]
    filename: Annotated[str, StringConstraints(min_length=1, max_length=255)] = "transcript.txt"
    meeting_date: dt.date | None = None
    attendees: Annotated[list[Name], Field(max_length=500)] = Field(default_factory=list)
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = None


def add_minutes_routes(router: APIRouter, services: Services) -> None:
    minutes_assistant, contexts = services.assistants.minutes, services.assistants.contexts
    max_bytes = int(services.settings.apps.max_upload_mb * 1024 * 1024)

    @router.post("/v1/apps/minutes", openapi_extra=request_body(json=MinutesRequest, multipart={
        "file": BINARY, "filename": {"type": "string"}, "meeting_date": {"type": "string", "format": "date"},
        "attendees": {"type": "string", "description": "Comma-separated names."}, "timezone": {"type": "string"},
        "language": {"type": "string", "description": "The recording's language, e.g. zh or en."}},
        description="A transcript as JSON, or a transcript or recording as a multipart upload."),
        responses={200: media("text/markdown", "text/calendar",
                              description="The minutes: JSON, Markdown (?format=md) or iCalendar (?format=ics).")})
    async def create_minutes(request: Request, format: Literal["json", "md", "ics"] = "json",
                             actor: Actor = Depends(require("apps:use"))) -> Response:
        fmt = format  # one of export.FORMATS
        if is_multipart(request):
            data, fields = await read_upload(request, max_bytes)
            meeting_date = _date(fields.get("meeting_date"))
            attendees = [a.strip() for a in (fields.get("attendees") or "").split(",") if a.strip()][:500]
            inp = MinutesInput(data=data, filename=fields["filename"][:255], meeting_date=meeting_date,
                               attendees=attendees, language=(fields.get("language") or None))
            tz = fields.get("timezone")
        else:
            body: MinutesRequest = await read_json(request, MinutesRequest)
            inp = MinutesInput(data=body.text.encode("utf-8"), filename=body.filename,
                               meeting_date=body.meeting_date, attendees=body.attendees)
            tz = body.timezone
        ctx = contexts.for_actor(actor, timezone=tz)
        # A client that goes away cancels the work: the transcript windows still queued would hold engine slots.
        minutes = await run_until_disconnect(request, minutes_assistant.run(ctx, inp))
        if fmt == "json":
            return JSONResponse(minutes.to_dict())
        headers = {}
        if fmt == "ics":
            headers["Content-Disposition"] = 'attachment; filename="minutes.ics"'
        return Response(render(minutes, fmt, tz=ctx.tz), media_type=MEDIA_TYPES[fmt], headers=headers)


def _date(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest("meeting_date must be an ISO date (YYYY-MM-DD).", param="meeting_date") from None
