"""`inhouse audit …`: verify the hash chain, export records as JSON lines, print the evidence report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from inhouse.cli.common import (
    DataDirOption,
    cells,
    console,
    err_console,
    esc,
    fail,
    settings_from,
    translate_errors,
)

if TYPE_CHECKING:
    from inhouse.governance.audit import AuditLog

app = typer.Typer(no_args_is_help=True)

SinceOption = typer.Option(None, "--since", help="7d, 12h, 30m or an ISO date/time (UTC unless it says).")


def _open(data_dir: Path | None) -> AuditLog:
    from inhouse.store.build import open_audit_log

    settings = settings_from(data_dir)
    log = open_audit_log(settings)
    if log is None:
        fail(f"No audit log at {settings.data_dir / 'audit.db'}.", 1)
    assert log is not None
    return log


def _since(text: str | None) -> str | None:
    from inhouse.governance.audit import parse_since

    return parse_since(text) if text else None


@app.command("verify")
def verify(data_dir: Path = DataDirOption, as_json: bool = typer.Option(False, "--json")) -> None:
    """Recompute the chain and check the signed head. Exit 0 if intact, 1 with the first broken record."""
    with translate_errors(data_dir):
        log = _open(data_dir)
        try:
            with err_console.status(f"checking {log.count():,} audit records…"):  # ~5 s per million
                report = log.verify()
            broken = (log.records(after_seq=report.first_broken_seq - 1, limit=1)
                      if report.first_broken_seq else [])
        finally:
            log.close()
    if as_json:
        console.print_json(json.dumps({**report.to_dict(), "record": broken[0].to_dict() if broken else None}))
    elif report.ok:
        console.print(f"[green]ok[/]: {report.records} records, {esc(report.message)}"
                      + (f" ({report.reseals} reseal(s) recorded)" if report.reseals else ""))
    else:
        err_console.print(f"[bold red]BROKEN[/] ({esc(report.kind)}) at record {report.first_broken_seq}: "
                          f"{esc(report.message)}", highlight=False)
        if broken:
            err_console.print_json(json.dumps(broken[0].to_dict()))
    if not report.ok:
        raise typer.Exit(1)


@app.command("export")
def export(
    since: str | None = SinceOption,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file (default: stdout)."),
    document: str | None = typer.Option(None, "--document", help="Only the records naming this document id "
                                        "(doc_…): who read, searched, downloaded or was given its passages."),
    data_dir: Path = DataDirOption,
) -> None:
    """Write the records as JSON lines, oldest first."""
    with translate_errors(data_dir):
        since_ts = _since(since)
        log = _open(data_dir)
        n = 0
        try:
            out = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
            try:
                for record in log.export(since_ts, document=document):
                    out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
                    n += 1
            finally:
                if output:
                    out.close()
        finally:
            log.close()
    if output:
        err_console.print(f"Wrote {n} records to {esc(output)}.")


@app.command("report")
def report(
    since: str | None = SinceOption, data_dir: Path = DataDirOption,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """The evidence report: requests by destination, outcomes by action, confidential items sent out."""
    from inhouse.governance.audit.report import build_report

    with translate_errors(data_dir):
        since_ts = _since(since)
        log = _open(data_dir)
        try:
            with err_console.status(f"counting and checking {log.count():,} audit records…"):
                data = build_report(log, since=since_ts)
        finally:
            log.close()
    if as_json:
        console.print_json(json.dumps(data))
        return
    print_report(data)


def print_report(data: dict[str, Any]) -> None:
    integrity = data["integrity"]
    period = data["period"]
    console.print(f"Audit report since {esc(data['since'] or 'the beginning')} "
                  f"({data['records']} records, {esc(period['first'] or '-')} .. {esc(period['last'] or '-')})")
    state = "[green]intact[/]" if integrity["ok"] else f"[bold red]BROKEN ({esc(integrity['kind'])})[/]"
    console.print(f"Chain: {state} - {esc(integrity['message'])}")
    dest = Table("destination", "requests", title="Requests by destination")
    for name, count in data["requests"]["by_destination"].items():
        dest.add_row(*cells(name, count))
    dest.add_row("(no model)", str(data["requests"]["without_model"]))
    console.print(dest)
    actions = Table("action", "outcomes", title="Records by action")
    for action, outcomes in data["by_action"].items():
        actions.add_row(*cells(action, ", ".join(f"{k}: {v}" for k, v in outcomes.items())))
    console.print(actions)
    sent = data["confidential_sent_out"]["count"]
    colour = "green" if sent == 0 else "bold red"
    console.print(f"Confidential or restricted items sent out: [{colour}]{sent}[/]")


@app.command("reseal")
def reseal(
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the log)."), data_dir: Path = DataDirOption,
) -> None:
    """Re-anchor the signed head on the current end of the chain, after investigating a reported break.
    The old head and the reason are recorded; earlier breaks inside the chain stay visible."""
    with translate_errors(data_dir):
        log = _open(data_dir)
        try:
            before = log.verify()
            record = log.reseal(reason)
        finally:
            log.close()
    console.print(f"Resealed at record {record.seq} (before: {esc(before.kind or 'ok')} - {esc(before.message)}).")
