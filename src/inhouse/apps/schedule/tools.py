"""The tools the schedule assistant offers the model, and their execution with validated arguments.

Each tool is an OpenAI function definition plus a pydantic model of its arguments (``extra="forbid"``: an
argument the model made up is an error, not silently dropped). ``run_tool`` never raises for a bad call: invalid
arguments, unknown tools, unknown events and refused dates come back as ``{"error": "…"}`` so the model can be
told and try again, and the HTTP edge never answers 500 for them. Whole numbers are strict ints (``true`` is not 1).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from inhouse.apps.context import AppContext
from inhouse.apps.dates import parse_duration_minutes
from inhouse.apps.schedule.service import AttendeeSpec, ScheduleService
from inhouse.errors import InhouseError

_WHEN = ("A date and time: ISO 8601 ('2026-12-04T15:00') or words in the user's time zone "
         "('tomorrow 3pm', 'next Friday 10:00', '下周五下午3点').")


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CreateEvent(_Args):
    title: str = Field(min_length=1, max_length=300, description="What the event is.")
    start: str = Field(min_length=1, max_length=100, description=_WHEN)
    end: str | None = Field(None, max_length=100, description="When it ends; omit it when the user gave none. "
                            + _WHEN)
    duration_minutes: StrictInt | str | None = Field(None, description="Length in minutes when no end is given "
                                                     "(default 60).")
    attendees: list[str] = Field(default_factory=list, max_length=200,
                                 description="Names or e-mail addresses the user named; omit it otherwise.")
    location: str = Field("", max_length=300, description="Only if the user named a place.")
    description: str = Field("", max_length=8000, description="Only if the user gave details.")

    @field_validator("duration_minutes")
    @classmethod
    def _minutes(cls, v: int | str | None) -> int | None:
        return None if v is None or v == "" else parse_duration_minutes(v)


class MoveEvent(_Args):
    event: str = Field(min_length=1, max_length=300, description="The event id (evt_…) or its exact title.")
    new_start: str = Field(min_length=1, max_length=100, description=_WHEN)
    new_end: str | None = Field(None, max_length=100, description="Optional new end; default: same length.")


class CancelEvent(_Args):
    event: str = Field(min_length=1, max_length=300, description="The event id (evt_…) or its exact title.")


class ListEvents(_Args):
    start: str | None = Field(None, max_length=100, description="From (default: today). " + _WHEN)
    end: str | None = Field(None, max_length=100, description="To (default: 7 days later). " + _WHEN)


class FindFreeSlots(_Args):
    attendees: list[str] = Field(default_factory=list, max_length=50,
                                 description="User names of the people who must attend (the user is included).")
    duration_minutes: StrictInt | str = Field(60, description="Meeting length in minutes.")
    start: str | None = Field(None, max_length=100, description="Search from (default: now). " + _WHEN)
    end: str | None = Field(None, max_length=100, description="Search until (default: 7 days later). " + _WHEN)
    limit: StrictInt = Field(5, ge=1, le=50, description="How many slots to propose.")

    @field_validator("duration_minutes")
    @classmethod
    def _minutes(cls, v: int | str) -> int:
        return parse_duration_minutes(v)


class PlanTrip(_Args):
    destination: str = Field(min_length=1, max_length=100, description="Destination city.")
    depart_date: str = Field(min_length=1, max_length=100, description="Departure date (ISO or words).")
    return_date: str = Field(min_length=1, max_length=100, description="Return date (ISO or words).")
    purpose: str = Field("", max_length=300, description="Why (e.g. 'customer visit').")


ToolFn = Callable[[ScheduleService, AppContext, Any], Awaitable[dict[str, Any]]]


async def _create(s: ScheduleService, ctx: AppContext, a: CreateEvent) -> dict[str, Any]:
    interval = s.span(ctx, a.start, a.end, a.duration_minutes)  # type: ignore[arg-type]
    return s.create_event(ctx, a.title, interval, location=a.location, description=a.description,
                          attendees=a.attendees)


async def _move(s: ScheduleService, ctx: AppContext, a: MoveEvent) -> dict[str, Any]:
    return s.move_event(ctx, a.event, a.new_start, a.new_end)


async def _cancel(s: ScheduleService, ctx: AppContext, a: CancelEvent) -> dict[str, Any]:
    return s.cancel_event(ctx, a.event)


async def _list(s: ScheduleService, ctx: AppContext, a: ListEvents) -> dict[str, Any]:
    return s.list_events(ctx, a.start, a.end)


async def _free(s: ScheduleService, ctx: AppContext, a: FindFreeSlots) -> dict[str, Any]:
    people = [AttendeeSpec(n) for n in a.attendees]
    return s.free_slots(ctx, people, a.duration_minutes, start=a.start, end=a.end,  # type: ignore[arg-type]
                        limit=a.limit)


async def _trip(s: ScheduleService, ctx: AppContext, a: PlanTrip) -> dict[str, Any]:
    return await s.plan_trip(ctx, a.destination, a.depart_date, a.return_date, purpose=a.purpose)


TOOLS: dict[str, tuple[type[_Args], ToolFn, str]] = {
    "create_event": (CreateEvent, _create, "Create an event in the user's calendar."),
    "move_event": (MoveEvent, _move, "Move an event of the user to a new time."),
    "cancel_event": (CancelEvent, _cancel, "Cancel an event of the user."),
    "list_events": (ListEvents, _list, "List the user's events in a period."),
    "find_free_slots": (FindFreeSlots, _free, "Propose times when all attendees are free within working hours."),
    "plan_trip": (PlanTrip, _trip, "Plan a business trip itinerary applying the company travel policy "
                  "(hotel limits, per diem)."),
}


def _schema(model: type[_Args]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


def tool_definitions() -> list[dict[str, Any]]:
    """The ``tools`` list for ``ChatService.prepare_chat`` (rendered by the model's own chat template)."""
    return [{"type": "function", "function": {"name": name, "description": desc, "parameters": _schema(model)}}
            for name, (model, _, desc) in TOOLS.items()]


def validation_message(name: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err.get("loc", ())) or "arguments"
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            msg = "is not an argument of this tool"
        parts.append(f"'{where}' {msg}")
    return f"Invalid arguments for {name}: " + "; ".join(parts) + "."


async def run_tool(service: ScheduleService, ctx: AppContext, name: str, arguments: str | dict[str, Any]
                   ) -> dict[str, Any]:
    """Execute one tool call. Returns the result, or ``{"error": message}``; never raises for bad input."""
    entry = TOOLS.get(name)
    if entry is None:
        return {"error": f"Unknown tool '{name[:60]}'. Available: {', '.join(TOOLS)}."}
    model, fn, _ = entry
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return {"error": f"The arguments of {name} are not valid JSON."}
    if not isinstance(arguments, dict):
        return {"error": f"The arguments of {name} must be a JSON object."}
    try:
        args = model.model_validate(arguments)
    except ValidationError as exc:
        return {"error": validation_message(name, exc)}
    except InhouseError as exc:  # raised inside a validator (a duration that is not one)
        return {"error": f"Invalid arguments for {name}: {exc.message}"}
    try:
        return await fn(service, ctx, args)
    except InhouseError as exc:
        return {"error": exc.message}
