"""`inhouse store …`: where data is kept (`store.url`), and moving an embedded install into PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import typer

from inhouse.cli.common import DataDirOption, console, err_console, esc, settings_from, translate_errors

app = typer.Typer(no_args_is_help=True)


@app.command("migrate")
def migrate(
    to: str = typer.Option(..., "--to", help="PostgreSQL URL of an empty database, e.g. postgresql://inhouse@db/inhouse."),
    data_dir: Path = DataDirOption,
) -> None:
    """Copy this data directory's users, keys, usage, conversations, audit chain and knowledge index into an empty
    PostgreSQL database, then verify the chain there. Stop the server first. Exit 0 when every table matches and
    the chain verifies, 1 otherwise; a non-empty target is refused."""
    with translate_errors(data_dir):
        if not to.startswith(("postgresql://", "postgres://")):
            err_console.print("[bold red]error:[/] --to must be a postgresql:// URL.")
            raise typer.Exit(2)
        from inhouse.store.copy import copy_to_postgres

        report = copy_to_postgres(settings_from(data_dir), to, say=lambda line: console.print(esc(line)))
    for table, n in report.copied.items():
        there = report.target_counts.get(table)
        mark = "[green]ok[/]" if there == n else f"[bold red]{there} in the target[/]"
        console.print(f"  {esc(table)}: {n} copied, {mark}")
    if report.audit is not None:
        colour = "green" if report.audit.ok else "bold red"
        console.print(f"audit chain in PostgreSQL: [{colour}]{'ok' if report.audit.ok else 'BROKEN'}[/]"
                      f" ({report.audit.records} records, {esc(report.audit.message)})")
    if report.ok:
        console.print(f"done: set store.url (INHOUSE_STORE__URL) to this URL on every node, and copy "
                      f"{esc(settings_from(data_dir).data_dir / 'audit.key')} to each of them.")
    else:
        raise typer.Exit(1)
