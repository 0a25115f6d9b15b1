"""`inhouse outline FILE`: headings and key points of a document, with page/section references."""

from __future__ import annotations

import asyncio
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
    app.command("outline")(outline)


def outline(
    file: Path = typer.Argument(..., help="Any document the knowledge base parses (PDF, DOCX, PPTX, MD, TXT, …)."),
    fmt: str = typer.Option("md", "--format", "-f", help="md or json."),
    output: Path = typer.Option(None, "--output", "-o", help="Write here instead of standard output."),
    key_points: bool = typer.Option(True, "--key-points/--headings-only", help="Ask the model for key points."),
    model: str = typer.Option(None, "--model", "-m", help="Model (default: the apps.model setting)."),
    data_dir: Path = DataDirOption,
) -> None:
    """Hierarchical outline: the document's own headings, and up to five key points per section."""
    import json

    from inhouse.apps.outline import OutlineInput, to_markdown

    if fmt not in ("md", "json"):
        fail("--format must be md or json.")
    if not file.is_file():
        fail(f"No such file: {file}", 3)
    if output is not None:
        check_output_path(output)  # before the model's work, not after
    with translate_errors(data_dir):
        settings = settings_from(data_dir)
        max_bytes = int(settings.apps.max_upload_mb * 1024 * 1024)
        data = file.read_bytes()
        if len(data) > max_bytes:
            fail(f"{file.name} is larger than {settings.apps.max_upload_mb:.0f} MB (apps.max_upload_mb).")
        services = open_services(settings)
        try:
            ctx = services.assistants.contexts.for_actor(CLI_ACTOR, model=model, metered=False)
            inp = OutlineInput(data=data, filename=file.name, key_points=key_points)
            with err_console.status(f"Outlining {esc(file.name)}…"):
                result = asyncio.run(services.assistants.outline.run(ctx, inp))
        finally:
            services.close()
    text = to_markdown(result) if fmt == "md" else json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n"
    if output is not None:
        with translate_errors(data_dir):
            output.write_text(text, encoding="utf-8")
        err_console.print(f"Wrote {esc(output)}.")
    else:
        console.out(text, end="", highlight=False)
