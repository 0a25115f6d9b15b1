"""`inhouse schedule export -o PATH`: an output that cannot be written is one red line and exit 2 before the calendar
is read (before, a missing directory was a FileNotFoundError traceback after it); a writable one is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app


@pytest.fixture(autouse=True)
def data(cli_data_dir: Path) -> Path:
    return cli_data_dir


@pytest.mark.parametrize(("where", "says"), [("missing_dir/x.ics", "does not exist"), (".", "is a directory")])
def test_an_output_that_cannot_be_written_is_refused_before_the_calendar_is_read(
        where: str, says: str, tmp_path: Path, data: Path) -> None:
    result = CliRunner().invoke(app, ["schedule", "export", "-o", str(tmp_path / where)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert says in line, line
    assert not data.exists()  # the services were never opened


def test_an_output_in_a_writable_folder_is_written(tmp_path: Path) -> None:
    out = tmp_path / "cal.ics"
    result = CliRunner().invoke(app, ["schedule", "export", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("BEGIN:VCALENDAR")
