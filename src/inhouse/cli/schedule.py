"""`inhouse schedule …`: the calendar assistant in-process (as the given key, or the local admin)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from inhouse.cli.common import DataDirOption, check_output_path, console, esc, services_for
from inhouse.cli.runs import ReadRun, acting_as

if TYPE_CHECKING:
    from inhouse.apps.context import AppContext
    from inhouse.apps.schedule.service import ScheduleService

app = typer.Typer(no_args_is_help=True)
KeyOption = typer.Option(None, "--key", envvar="INHOUSE_API_KEY", help="Act as this API key.")
TzOption = typer.Option(None, "--tz", help="Your IANA time zone (default: apps.timezone).")


@contextmanager
def _session(data_dir: Path | None, key: str | None, tz: str | None, command: str, model: str | None = None,
             trips: Callable[[Any], list[dict[str, Any]]] | None = None,
             ) -> Iterator[tuple[ScheduleService, AppContext, list[Any]]]:
    """The assistant and the caller's context; the command is one audit record (action ``apps:use``, as the same
    route over HTTP), written before anything is shown. The caller appends its result to the yielded list, and
    ``trips`` says which itineraries in it applied the travel policy (the record names those documents)."""
    from inhouse.apps.schedule.trip import policy_read

    with services_for(data_dir) as services:
        resource = f"inhouse schedule {command}"
        actor = acting_as(services, key, "apps:use", resource)
        assistants = services.assistants
        run = ReadRun(services, actor, action="apps:use", resource=resource, ahead=False)
        result: list[Any] = []
        with run.recorded():
            yield assistants.schedule, assistants.contexts.for_actor(actor, timezone=tz, model=model,
                                                                     metered=False), result
            if trips is not None and result:
                run.read_documents(*policy_read(trips(result[0])))


def _show(out: dict[str, Any]) -> None:
    console.print_json(json.dumps(out, ensure_ascii=False, default=str))


def _run(data_dir: Path | None, key: str | None, tz: str | None, command: str,
         fn: Callable[[ScheduleService, AppContext], Any], model: str | None = None,
         trips: Callable[[Any], list[dict[str, Any]]] | None = None) -> None:
    with _session(data_dir, key, tz, command, model, trips) as (svc, ctx, result):
        out = fn(svc, ctx)
        if asyncio.iscoroutine(out):
            out = asyncio.run(out)
        result.append(out)
    if out is not None:
        _show(out)


@app.command("list")
def list_(start: str = typer.Option(None, "--from", help="First day ('2026-12-01', 'tomorrow'), from its midnight, "
                                    "or a time ('2026-12-01 14:00'). Default: today."),
          end: str = typer.Option(None, "--to", help="Last day, included ('2026-12-31': to the midnight ending it), "
                                  "or a time, up to it. Default: 7 days after --from."),
          key: str = KeyOption, tz: str = TzOption, data_dir: Path = DataDirOption) -> None:
    """List your events (default: the next 7 days). Days and times are read in your time zone (--tz)."""
    _run(data_dir, key, tz, "list", lambda s, c: s.list_events(c, start, end))


@app.command("add")
def add(title: str = typer.Argument(...), start: str = typer.Option(..., "--start", help="e.g. 'next Friday 3pm'"),
        end: str = typer.Option(None, "--end"), duration: int = typer.Option(None, "--duration", help="Minutes."),
        attendee: list[str] = typer.Option([], "--attendee", "-a"), location: str = typer.Option("", "--location"),
        key: str = KeyOption, tz: str = TzOption, data_dir: Path = DataDirOption) -> None:
    """Create an event (conflicts with your other events are reported)."""
    _run(data_dir, key, tz, "add", lambda s, c: s.create_event(c, title, s.span(c, start, end, duration),
                                                        location=location, attendees=attendee))


@app.command("move")
def move(event: str = typer.Argument(..., help="Event id or title."), start: str = typer.Option(..., "--start"),
         end: str = typer.Option(None, "--end"), key: str = KeyOption, tz: str = TzOption,
         data_dir: Path = DataDirOption) -> None:
    """Move an event."""
    _run(data_dir, key, tz, "move", lambda s, c: s.move_event(c, event, start, end))


@app.command("cancel")
def cancel(event: str = typer.Argument(..., help="Event id or title."), key: str = KeyOption, tz: str = TzOption,
           data_dir: Path = DataDirOption) -> None:
    """Cancel an event."""
    _run(data_dir, key, tz, "cancel", lambda s, c: s.cancel_event(c, event))


@app.command("free")
def free(attendee: list[str] = typer.Option([], "--attendee", "-a", help="User name (repeatable)."),
         duration: int = typer.Option(60, "--duration", help="Minutes."), start: str = typer.Option(None, "--from"),
         end: str = typer.Option(None, "--to"), limit: int = typer.Option(5, "--limit"), key: str = KeyOption,
         tz: str = TzOption, data_dir: Path = DataDirOption) -> None:
    """Propose slots when every attendee is free within working hours."""
    from inhouse.apps.schedule.service import AttendeeSpec

    _run(data_dir, key, tz, "free", lambda s, c: s.free_slots(c, [AttendeeSpec(a) for a in attendee], duration,
                                                      start=start, end=end, limit=limit))


@app.command("trip")
def trip(destination: str = typer.Argument(...), depart: str = typer.Option(..., "--depart"),
         back: str = typer.Option(..., "--return"), purpose: str = typer.Option("", "--purpose"),
         key: str = KeyOption, tz: str = TzOption, data_dir: Path = DataDirOption) -> None:
    """Plan a business trip applying the travel policy you may read."""
    _run(data_dir, key, tz, "trip", lambda s, c: s.plan_trip(c, destination, depart, back, purpose=purpose),
         trips=lambda trip: [trip])


@app.command("chat")
def chat(message: str = typer.Argument(..., help="e.g. 'Book a review with Li next Friday at 3pm'"),
         model: str = typer.Option(None, "--model", "-m"), key: str = KeyOption, tz: str = TzOption,
         data_dir: Path = DataDirOption) -> None:
    """Natural language → calendar actions (the model calls the tools)."""
    from inhouse.apps.schedule.assistant import chat as run_chat

    def go(s: ScheduleService, c: AppContext) -> Any:
        async def inner() -> dict[str, Any]:
            return (await run_chat(s, c, message, max_rounds=4)).to_dict()
        return inner()

    _run(data_dir, key, tz, "chat", go, model,
         trips=lambda reply: [a["result"] for a in reply["actions"] if a["tool"] == "plan_trip"])


@app.command("export")
def export(output: Path = typer.Option(None, "--output", "-o", help="Write here (default: stdout)."),
           key: str = KeyOption, tz: str = TzOption, data_dir: Path = DataDirOption) -> None:
    """Export your calendar as .ics."""
    if output:
        check_output_path(output)  # before the calendar is read: one red line, not a traceback after it
    with _session(data_dir, key, tz, "export") as (svc, ctx, _):
        text = svc.export_ics(ctx)
    if output:
        output.write_text(text, encoding="utf-8", newline="")
        console.print(f"wrote {esc(output)}", highlight=False)
    else:
        typer.echo(text, nl=False)


@app.command("import")
def import_(path: Path = typer.Argument(..., exists=True, dir_okay=False), key: str = KeyOption, tz: str = TzOption,
            data_dir: Path = DataDirOption) -> None:
    """Import events from an .ics file (the same UID again updates the event)."""
    _run(data_dir, key, tz, "import", lambda s, c: s.import_ics(c, path.read_bytes()))
