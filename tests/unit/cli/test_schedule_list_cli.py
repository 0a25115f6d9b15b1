"""`inhouse schedule list --from D1 --to D2` includes the events of D2, and `--from D --to D` lists day D (before,
`--to 2026-12-31` ended the window at the 31st's first midnight, leaving out its events, and a one-day window was
refused: "The end must be after the start."); `--help` says what --from and --to take."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app


@pytest.fixture(autouse=True)
def data(cli_data_dir: Path) -> Path:
    return cli_data_dir


def listed(*window: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["schedule", "list", *window, "--tz", "Asia/Shanghai"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_day_given_to_to_is_listed_and_one_day_is_a_window() -> None:
    for title, start in (("NYE prep", "2026-12-31 10:00"), ("New year", "2027-01-01 00:30")):
        added = CliRunner().invoke(app, ["schedule", "add", title, "--start", start, "--tz", "Asia/Shanghai"])
        assert added.exit_code == 0, added.output
    month = listed("--from", "2026-12-01", "--to", "2026-12-31")
    assert [e["title"] for e in month["events"]] == ["NYE prep"]  # type: ignore[index]
    assert month["to"] == "2027-01-01T00:00:00+08:00"
    day = listed("--from", "2026-12-31", "--to", "2026-12-31")
    assert (day["from"], day["to"]) == ("2026-12-31T00:00:00+08:00", "2027-01-01T00:00:00+08:00")
    assert [e["title"] for e in day["events"]] == ["NYE prep"]  # type: ignore[index]
    # A time given is kept: up to it, not to the day's end.
    until = listed("--from", "2026-12-31", "--to", "2026-12-31 10:00")
    assert until["to"] == "2026-12-31T10:00:00+08:00" and until["events"] == []


def test_help_describes_from_and_to() -> None:
    result = CliRunner().invoke(app, ["schedule", "list", "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert re.search(r"--from <str> First day .* Default: today\.", text), text
    assert re.search(r"--to <str> Last day, included .* Default: 7 days after --from\.", text), text
