"""Meeting minutes over HTTP (action ``apps:use``): ``POST /v1/apps/minutes``.

The body is either JSON (``{"text": "...", "filename"?, "meeting_date"?, "attendees"?, "timezone"?}``) or a
multipart upload (``file`` = transcript or audio, with the same optional fields as form fields). The answer is the
minutes as JSON; ``?format=md`` gives Markdown and ``?format=ics`` an iCalendar file of the dated action items.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response

from inhouse.api.auth import require
from inhouse.api.support_routes import app_context
from inhouse.apps.minutes import MinutesInput, MinutesOptions, run
from inhouse.apps.minutes.audio import WhisperTranscriber, ensure_whisper
from inhouse.apps.minutes.export import FORMATS, MEDIA_TYPES, render
from inhouse.errors import InvalidRequest
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.api.app import ServicesLike

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class MinutesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, StringConstraints(max_length=20_000_000)]
    filename: Annotated[str, StringConstraints(min_length=1, max_length=255)] = "transcript.txt"
    meeting_date: dt.date | None = None
    attendees: Annotated[list[Name], Field(max_length=500)] = Field(default_factory=list)
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = None


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}.", param="format")
    return fmt


async def read_upload(request: Request, max_bytes: int) -> tuple[bytes, dict[str, str]]:
    """A multipart body's ``file`` and its other fields as text. Missing file or too big → InvalidRequest."""
    form = await request.form(max_files=1, max_fields=20)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("Send the document as a multipart field named 'file'.", param="file")
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise InvalidRequest(f"The file is larger than {max_bytes // (1024 * 1024)} MB.", param="file")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        fields["filename"] = fields.get("filename") or upload.filename or "upload"
        return data, fields
    finally:
        await form.close()


async def read_json(request: Request, model: type[BaseModel]) -> Any:
    try:
        raw = await request.json()
    except ValueError:
        raise InvalidRequest("The body is not valid JSON.") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errs = exc.errors()
        where = ".".join(str(p) for p in errs[0]["loc"]) if errs else ""
        msg = errs[0]["msg"] if errs else "bad value"
        raise InvalidRequest(f"Invalid request: {where}: {msg}.", param=where or None) from None


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


def add_minutes_routes(router: APIRouter, services: ServicesLike) -> None:
    settings = services.settings
    apps = settings.apps
    max_bytes = int(apps.max_upload_mb * 1024 * 1024)
    options = MinutesOptions(window_tokens=apps.minutes_window_tokens, max_windows=apps.minutes_max_windows)
    transcriber = WhisperTranscriber(lambda: ensure_whisper(settings.model_cache_dir),
                                     threads=apps.whisper_threads, max_audio_s=apps.max_audio_s)

    @router.post("/v1/apps/minutes")
    async def create_minutes(request: Request, format: str = "json",
                             actor: Actor = Depends(require("apps:use"))) -> Response:
        fmt = check_format(format)
        if _is_multipart(request):
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
        ctx = app_context(services, actor, timezone=tz)
        minutes = await run(ctx, inp, options=options, transcriber=transcriber)
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
