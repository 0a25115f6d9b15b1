"""Every CLI output shows the values it prints as written. Rich reads ``[…]`` in a printed string, and in a table's
cells, as markup: a member's key named ``[/] my laptop``, an uploaded ``[/bold]report.txt`` or a heading
``# Budget [/] plan`` crashed the admin's `inhouse keys list`, `collections show` and `search` (MarkupError, exit 1,
a traceback), and a name holding ``[link=…]`` or ``[reverse]`` was rendered as markup in the admin's terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from inhouse.cli.audit import print_report
from inhouse.cli.main import app
from inhouse.cli.status import print_status
from inhouse.kb.answer import Answerer, GroundedAnswer, Grounding, cited

LINK = "[link=https://evil.example]click[/link]"
KEY = f"[/] my laptop {LINK} :warning:"  # an emoji code is shown as typed too
DISPLAY = f"[/] Eve {LINK}"
DESCRIPTION = "[/bold] quarterly [reverse]figures"
FILE = "[/bold]report.txt"  # the directory "[" and its file "bold]report.txt": the source path is relative
HEADING = "Budget [/] plan"
SECTION = f"Costs {LINK}"
EVENT = f"[/] standup {LINK}"
PLACE = "[reverse]room 4"
ANSWER = f"The budget is 42 units [1]. [/] {LINK}"
SUPPORT = f"I want to talk to a human about [/] my order {LINK}"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    monkeypatch.setenv("INHOUSE_KB__MIN_SIMILARITY", "0")  # the fake embedder's similarities are not e5's
    monkeypatch.setenv("COLUMNS", "400")  # no cell wrapped: each value is on one line

    def invoke(*args: str, code: int = 0, stdin: str | None = None) -> Result:
        result = CliRunner().invoke(app, list(args), input=stdin)
        shown = result.output + (result.stderr if result.stderr_bytes else "")
        assert result.exit_code == code and "Traceback" not in shown, (args, shown, result.exception)
        assert "MarkupError" not in repr(result.exception), (args, result.exception)
        return result

    return invoke


def test_every_listing_show_and_search_prints_hostile_values_as_written(
        cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "docs"
    (docs / "[").mkdir(parents=True)
    (docs / FILE).write_text("The quarterly numbers of [reverse]marketing.\n")
    (docs / "budget.md").write_text(f"# {HEADING}\n\n## {SECTION}\n\nThe quarterly budget for marketing is 42 "
                                    f"units. {LINK}\n")
    cli("users", "add", "eve", "--display-name", DISPLAY)
    cli("groups", "add", "sales")
    cli("groups", "add-member", "sales", "eve")
    created = cli("keys", "create", "--name", KEY, "--user", "eve")
    assert KEY in created.output
    cli("collections", "create", "sales", "--group", "sales", "--description", DESCRIPTION)
    ingested = cli("ingest", str(docs), "--collection", "sales")
    assert "2 files (2 added" in ingested.output

    assert KEY in cli("keys", "list").output
    assert DISPLAY in cli("users", "list").output
    assert "eve" in cli("groups", "list").output
    assert DESCRIPTION in cli("collections", "list").output
    shown = cli("collections", "show", "sales").output
    assert FILE in shown and HEADING in shown
    found = cli("search", "quarterly budget", "--collection", "sales").output
    assert HEADING in found and SECTION in found and FILE in found and LINK in found and "[reverse]" in found

    async def complete(self: Answerer, g: Grounding, *, model: str, **sampling: Any) -> GroundedAnswer:
        return GroundedAnswer(ANSWER, cited(ANSWER, g.hits), g, model)

    monkeypatch.setattr(Answerer, "complete", complete)
    answered = cli("ask", "What is the quarterly budget?", "--collection", "sales", "--model", "m").output
    assert ANSWER in answered and "[1] " in answered

    cli("schedule", "add", EVENT, "--start", "tomorrow 3pm", "--location", PLACE, "--attendee", "eve")
    events = cli("schedule", "list", "--to", "in 3 days").output
    assert EVENT in events and PLACE in events

    handed = cli("support", "--collection", "sales", stdin=SUPPORT + "\n\n").output
    assert SUPPORT in " ".join(handed.split())  # the summary quotes the customer, wrapped at the console's width

    report = cli("audit", "report").output
    assert "Records by action" in report
    cli("collections", "markings", "sales")
    deleted = cli("collections", "delete", "sales").output
    assert "Deleted sales." in deleted


def test_an_error_quoting_a_hostile_path_is_one_line_not_a_traceback(cli: Any, tmp_path: Path) -> None:
    missing = tmp_path / "[" / "bold]nowhere.txt"
    refused = cli("ingest", str(missing), "--collection", "sales", code=2)
    assert f"{missing}: no such file or directory" in refused.output  # translate_errors' printer
    absent = cli("minutes", str(tmp_path / "[reverse][/]nowhere.txt"), code=3)
    assert "[reverse][/]nowhere.txt" in absent.output  # fail()


def test_the_status_and_audit_report_printers_show_a_server_s_values_as_written(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    print_status({"loaded": [{"model": f"[/]m {LINK}", "weights_bytes": 2**20, "running": 1}], "rss_bytes": 2**30,
                  "next_prewarm": "[/bold]soon", "hardware": {"probed": True, "cpu": "[reverse]cpu", "cores": 4,
                                                             "weight_buffers": {"[/]m": {"value": "repack",
                                                                                         "reason": LINK}}},
                  "embedder": {"model": "[/]e5", "engine": "[reverse]", "loaded": True, "idle_release_in_s": 3.5}})
    out = capsys.readouterr().out
    assert f"[/]m {LINK}" in out and "[/bold]soon" in out and "[reverse]cpu" in out and f"({LINK})" in out
    assert "Embedder [/]e5 ([reverse]): loaded, release in 3.5 s." in out
    print_report({"since": "[/]", "records": 3, "period": {"first": "[/bold]", "last": None},
                  "integrity": {"ok": False, "kind": "[/]", "message": LINK},
                  "requests": {"by_destination": {f"[/] {LINK}": 2}, "without_model": 1},
                  "by_action": {"[/]action": {"[reverse]": 1}}, "confidential_sent_out": {"count": 0}})
    out = capsys.readouterr().out
    assert f"[/] {LINK}" in out and "[/]action" in out and "[reverse]: 1" in out and "BROKEN ([/])" in out


def test_a_value_holding_terminal_escapes_cannot_drive_the_terminal(capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    # ESC [31m colours the rest of the admin's screen; ESC ] 8 writes a hyperlink; BEL rings
    print_status({"loaded": [{"model": "m\x1b[31mred\x07", "weights_bytes": 2**20, "running": 1}],
                  "rss_bytes": 2**30, "next_prewarm": "\x1b]8;;https://evil.example\x1b\\soon"})
    out = capsys.readouterr().out
    assert "\x1b[31m" not in out and "\x1b]8" not in out and "\x07" not in out
    assert "m\ufffd[31mred\ufffd" in out and "\ufffd]8;;https://evil.example\ufffd\\soon" in out


def test_a_value_ending_in_a_backslash_is_shown_once_whatever_follows(capsys: pytest.CaptureFixture[str]) -> None:
    from inhouse.cli.common import console, esc

    share = "\\\\fileserver\\share\\"
    console.print(f"[bold]1.[/] {esc(share)} Setup [dim]{esc(share)}[/]", highlight=False)
    assert capsys.readouterr().out.strip() == f"1. {share} Setup {share}"
