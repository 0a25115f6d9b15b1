"""`inhouse minutes FILE`: meeting minutes from a transcript (.txt/.vtt/.srt) or a recording (.wav/.mp3/.m4a)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import typer

from inhouse.cli.common import (
    CLI_ACTOR,
    DataDirOption,
    check_output_path,
    console,
    err_console,
    esc,
    fail,
    open_services,
    settings_from,
    translate_errors,
)


def register(app: typer.Typer) -> None:
    app.command("minutes")(minutes)


def minutes(
    file: Path = typer.Argument(..., help="Transcript (.txt, .vtt, .srt) or audio (.wav, .mp3, .m4a)."),
    date: str = typer.Option(None, "--date", help="Meeting date YYYY-MM-DD (default: from the file or header)."),
    fmt: str = typer.Option("md", "--format", "-f", help="md, json or ics."),
    output: Path = typer.Option(None, "--output", "-o", help="Write here instead of standard output."),
    attendees: str = typer.Option("", "--attendees", help="Comma-separated attendees besides the speakers."),
    language: str = typer.Option(None, "--language", help="Audio language hint (en, zh, …)."),
    model: str = typer.Option(None, "--model", "-m", help="Model (default: the apps.model setting)."),
    timezone: str = typer.Option(None, "--timezone", help="IANA zone for the .ics next-meeting time."),
    data_dir: Path = DataDirOption,
) -> None:
    """Title, summary, decisions, action items (owner, due date, evidence line), open questions, next meeting."""
    from inhouse.apps.minutes import MinutesInput
    from inhouse.apps.minutes.export import FORMATS, render

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}.")
    meeting_date = None
    if date:
        try:
            meeting_date = dt.date.fromisoformat(date)
        except ValueError:
            fail("--date must be YYYY-MM-DD.")
    if not file.is_file():
        fail(f"No such file: {file}", 3)
    if output is not None:
        check_output_path(output)  # before minutes of model work, not after
    with translate_errors(data_dir):
        settings = settings_from(data_dir)
        apps = settings.apps
        data = file.read_bytes()
        if len(data) > apps.max_upload_mb * 1024 * 1024:
            fail(f"{file.name} is larger than {apps.max_upload_mb:.0f} MB (apps.max_upload_mb).")
        services = open_services(settings)
        try:
            ctx = services.assistants.contexts.for_actor(CLI_ACTOR, timezone=timezone, model=model, metered=False)
            inp = MinutesInput(data=data, filename=file.name, meeting_date=meeting_date, language=language,
                               attendees=[a.strip() for a in attendees.split(",") if a.strip()])
            with err_console.status(f"Writing minutes of {esc(file.name)} with {esc(ctx.model)}…"):
                result = asyncio.run(services.assistants.minutes.run(ctx, inp))
            text = render(result, fmt, tz=ctx.tz)
        finally:
            services.close()
    if output is not None:
        with translate_errors(data_dir):
            output.write_text(text, encoding="utf-8", newline="")
        err_console.print(f"Wrote {esc(output)} ({len(result.action_items)} action items, "
                          f"{len(result.decisions)} decisions).")
    else:
        console.out(text, end="", highlight=False)
