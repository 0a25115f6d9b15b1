"""`inhouse support`: an interactive customer-service session (in-process, as the given key or the local admin)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from inhouse.cli.common import DataDirOption, console, esc, services_for
from inhouse.cli.runs import ReadRun, acting_as


def register(app: typer.Typer) -> None:
    app.command("support")(support)


def support(
    collection: list[str] = typer.Option([], "--collection", "-c", help="Answer from these collections "
                                         "(default: apps.support_collections)."),
    model: str = typer.Option(None, "--model", "-m", help="Model (default: apps.model)."),
    key: str = typer.Option(None, "--key", envvar="INHOUSE_API_KEY", help="Act as this API key."),
    data_dir: Path = DataDirOption,
) -> None:
    """Chat with the customer-service assistant; an empty line or Ctrl-D ends the session."""
    with services_for(data_dir) as services:
        actor = acting_as(services, key, "apps:support", "inhouse support")
        ctx = services.assistants.contexts.for_actor(actor, model=model, metered=False)
        assistant = services.assistants.support
        session = assistant.open_session(ctx, collection or None)
        console.print(f"[dim]session {esc(session.id)} · collections {esc(', '.join(session.collections))}[/]",
                      highlight=False)
        while True:
            try:
                text = input("you> ").strip()
            except EOFError:
                break
            if not text:
                break
            # Each turn is one record, as a message over HTTP is: naming the documents the model was given.
            run = ReadRun(services, actor, action="apps:support", resource=f"inhouse support {session.id}",
                          ahead=False)
            with run.recorded():
                reply = asyncio.run(assistant.send(ctx, session.id, text))
                run.read_documents(reply.documents)
            console.print(reply.text, highlight=False, markup=False)
            for c in reply.citations:
                console.print(f"[dim][{c['index']}] {esc(c['title'])}[/]", highlight=False)
            if reply.handoff:
                console.print(f"[yellow]handed over ({esc(reply.reason)}): {esc(reply.summary)}[/]", highlight=False)
