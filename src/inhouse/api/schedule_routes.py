"""The schedule assistant over HTTP (action ``apps:use``). The caller's time zone comes from the ``timezone`` field
or query parameter (an IANA name), else ``apps.timezone``.

* ``GET/POST /v1/apps/schedule/events``, ``GET/PATCH/DELETE /v1/apps/schedule/events/{event_id}``
* ``POST /v1/apps/schedule/free-slots``: slots when every attendee is free within working hours
* ``POST /v1/apps/schedule/trips``: an itinerary applying the travel policy the caller may read
* ``POST /v1/apps/schedule/chat``: natural language → tool calls → a reply and the ``actions`` taken
* ``GET /v1/apps/schedule/export.ics`` and ``POST /v1/apps/schedule/import`` (the body is the .ics file)
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from inhouse.api.audit_trail import note
from inhouse.api.auth import require
from inhouse.api.openapi import errors, media, request_body
from inhouse.apps.dates import parse_duration_minutes
from inhouse.apps.schedule.assistant import chat
from inhouse.apps.schedule.service import AttendeeSpec
from inhouse.apps.schedule.trip import policy_read
from inhouse.errors import InvalidRequest
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.apps.context import AppContext
    from inhouse.services import Services

# A line break in an attendee went verbatim into export.ics, as lines of its own: an event the caller never made.
# The writer (apps/ics.py) now keeps every value on its line whatever it holds; here the API refuses what a user never
# means: control characters (C0, DEL, C1) in one-line fields, all but tab and line breaks in a description.
_NOT_ONE_LINE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _one_line(value: str) -> str:
    if _NOT_ONE_LINE.search(value.strip()):  # the store strips surrounding whitespace, as before
        raise ValueError("must be one line, without control characters")
    return value


def _text_block(value: str) -> str:
    if _NOT_TEXT.search(value):
        raise ValueError("must not hold control characters other than tab and line breaks")
    return value


OneLine = AfterValidator(_one_line)
Text = Annotated[str, StringConstraints(max_length=300), OneLine]
Title = Annotated[str, StringConstraints(min_length=1, max_length=300), OneLine]
Description = Annotated[str, StringConstraints(max_length=8000), AfterValidator(_text_block)]
When = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Zone = Annotated[str, StringConstraints(max_length=64)]
# Minutes as a number or as text ('45 min', '1.5 hours', '半小时'); parse_duration_minutes checks 1..1440 either way.
# Numbers are strict ints: pydantic's lax int turns JSON true into 1 (a one-minute event) before any check of ours.
Minutes = (Annotated[int, Field(strict=True, ge=1, le=24 * 60)]
           | Annotated[str, StringConstraints(min_length=1, max_length=40)])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timezone: Zone | None = None


class EventCreate(_Body):
    title: Title
    start: When
    end: When | None = None
    duration_minutes: Minutes | None = None
    attendees: Annotated[list[Text], Field(max_length=200)] = Field(default_factory=list)
    location: Text = ""
    description: Description = ""

    @field_validator("duration_minutes")
    @classmethod
    def _minutes(cls, v: int | str | None) -> int | None:
        return None if v is None else parse_duration_minutes(v)


class EventPatch(_Body):
    title: Title | None = None
    start: When | None = None
    end: When | None = None
    location: Text | None = None
    description: Description | None = None
    attendees: Annotated[list[Text], Field(max_length=200)] | None = None
    status: Literal["confirmed", "cancelled"] | None = None


class AttendeeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    timezone: Zone | None = None
    work_start: Annotated[str, StringConstraints(pattern=r"^\d{2}:\d{2}$")] | None = None
    work_end: Annotated[str, StringConstraints(pattern=r"^\d{2}:\d{2}$")] | None = None


class FreeSlotsRequest(_Body):
    attendees: Annotated[list[AttendeeBody | Annotated[str, StringConstraints(min_length=1, max_length=200)]],
                         Field(max_length=50)] = Field(default_factory=list)
    duration_minutes: Minutes = 60
    start: When | None = None
    end: When | None = None
    limit: int = Field(5, ge=1, le=200, strict=True)
    step_minutes: int = Field(15, ge=5, le=240, strict=True)

    @field_validator("duration_minutes")
    @classmethod
    def _minutes(cls, v: int | str) -> int:
        return parse_duration_minutes(v)


class TripRequest(_Body):
    destination: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    depart_date: When
    return_date: When
    purpose: Text = ""
    international: bool | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: Annotated[str, StringConstraints(max_length=4000)]


class ChatRequest(_Body):
    message: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    history: Annotated[list[ChatMessage], Field(max_length=20)] = Field(default_factory=list)
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


_WHY = {404: "An attendee who is not a user whose calendar the caller may see.",
        409: "The calendar holds the most events allowed."}


def add_schedule_routes(router: APIRouter, services: Services) -> None:
    schedule, contexts = services.assistants.schedule, services.assistants.contexts
    rounds = services.settings.apps.schedule_tool_rounds

    def ctx_for(actor: Actor, tz: str | None, model: str | None = None) -> AppContext:
        return contexts.for_actor(actor, timezone=tz, model=model)

    @router.get("/v1/apps/schedule/events")
    def list_events(start: str | None = None, end: str | None = None, timezone: str | None = None,
                    actor: Actor = Depends(require("apps:use"))) -> dict[str, Any]:
        out = schedule.list_events(ctx_for(actor, timezone), start, end)
        return {"object": "list", "data": out["events"], "from": out["from"], "to": out["to"]}

    @router.post("/v1/apps/schedule/events", status_code=201, responses=errors(404, 409, why=_WHY))
    def create_event(body: EventCreate, actor: Actor = Depends(require("apps:use"))) -> dict[str, Any]:
        ctx = ctx_for(actor, body.timezone)
        interval = schedule.span(ctx, body.start, body.end, body.duration_minutes)  # type: ignore[arg-type]
        return schedule.create_event(ctx, body.title, interval, location=body.location,
                                     description=body.description, attendees=body.attendees)

    @router.get("/v1/apps/schedule/events/{event_id}")
    def get_event(event_id: str, actor: Actor = Depends(require("apps:use"))) -> dict[str, Any]:
        return schedule.events.get(actor, event_id).to_dict()

    @router.patch("/v1/apps/schedule/events/{event_id}", responses=errors(409, why=_WHY))
    def patch_event(event_id: str, body: EventPatch, actor: Actor = Depends(require("apps:use"))) -> dict[str, Any]:
        ctx = ctx_for(actor, body.timezone)
        event = schedule.events.get(actor, event_id)  # what may be changed is what may be read
        conflicts: list[dict[str, Any]] = []
        interval = None
        if body.start is not None or body.end is not None:
            minutes = int((event.end - event.start) / timedelta(minutes=1))
            start = body.start or event.start
            interval = schedule.span(ctx, start, body.end, None if body.end else minutes)
            conflicts = schedule.clashes(ctx, interval, ignore=event.id)
        # New clock times end an all-day event (as move_event does): its export would otherwise write whole days.
        updated = schedule.events.update(actor, event.id, title=body.title, interval=interval,
                                         location=body.location, description=body.description,
                                         attendees=body.attendees, status=body.status,
                                         all_day=False if interval is not None else None)
        return {"event": updated.to_dict(), "conflicts": conflicts}

    @router.delete("/v1/apps/schedule/events/{event_id}")
    def delete_event(event_id: str, actor: Actor = Depends(require("apps:use"))) -> dict[str, Any]:
        schedule.events.delete(actor, event_id)
        return {"id": event_id, "object": "schedule.event", "deleted": True}

    @router.post("/v1/apps/schedule/free-slots", responses=errors(404, why=_WHY))
    def free_slots(body: FreeSlotsRequest, actor: Actor = Depends(require("apps:use"))) -> dict[str, Any]:
        people = [AttendeeSpec(a) if isinstance(a, str) else AttendeeSpec(a.name, a.timezone, a.work_start, a.work_end)
                  for a in body.attendees]
        return schedule.free_slots(ctx_for(actor, body.timezone), people, body.duration_minutes,  # type: ignore[arg-type]
                                   start=body.start, end=body.end, limit=body.limit, step_minutes=body.step_minutes)

    def note_policy(request: Request, trips: list[dict[str, Any]]) -> None:
        """The travel policy's documents whose passages the caller (and the chat's model) was given."""
        documents, label = policy_read(trips)
        if documents:
            note(request, documents=documents, label=label)

    @router.post("/v1/apps/schedule/trips")
    async def plan_trip(body: TripRequest, request: Request,
                        actor: Actor = Depends(require("apps:use"))) -> dict[str, Any]:
        trip = await schedule.plan_trip(ctx_for(actor, body.timezone), body.destination, body.depart_date,
                                        body.return_date, purpose=body.purpose, international=body.international)
        note_policy(request, [trip])
        return trip

    @router.post("/v1/apps/schedule/chat", responses=errors(404, why={404: "No such model."}))
    async def schedule_chat(body: ChatRequest, request: Request,
                            actor: Actor = Depends(require("apps:use"))) -> dict[str, Any]:
        ctx = ctx_for(actor, body.timezone, body.model)
        reply = await chat(schedule, ctx, body.message, history=[m.model_dump() for m in body.history],
                           max_rounds=rounds)
        note_policy(request, [a["result"] for a in reply.actions if a["tool"] == "plan_trip"])
        return reply.to_dict()

    @router.get("/v1/apps/schedule/export.ics", response_class=Response, responses={200: media("text/calendar")})
    def export_ics(timezone: str | None = None, actor: Actor = Depends(require("apps:use"))) -> Response:
        text = schedule.export_ics(ctx_for(actor, timezone))
        return Response(text.encode("utf-8"), media_type="text/calendar; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="calendar.ics"'})

    @router.post("/v1/apps/schedule/import", openapi_extra=request_body(raw="text/calendar", description=(
        "An iCalendar file (.ics); its events are added to the caller's calendar.")), responses=errors(409, why=_WHY))
    async def import_ics(request: Request, timezone: str | None = None,
                         actor: Actor = Depends(require("apps:use"))) -> dict[str, Any]:
        data = await request.body()
        if not data:
            raise InvalidRequest("Send the .ics file as the request body (Content-Type: text/calendar).",
                                 param="file")
        return await run_in_threadpool(schedule.import_ics, ctx_for(actor, timezone), data)
