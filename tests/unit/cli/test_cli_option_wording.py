"""Messages and help that name what the user typed: ``keys create --scope`` refuses an unknown scope naming the
option (it named the API's ``'scopes'`` field), and ``service uninstall --help`` says what ``--unit-dir`` does there
(it showed install's "Write the unit here … nothing is started")."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app


@pytest.fixture(autouse=True)
def data(cli_data_dir: Path) -> Path:
    return cli_data_dir


def test_an_unknown_scope_is_refused_naming_the_option(data: Path) -> None:
    result = CliRunner().invoke(app, ["keys", "create", "--name", "w", "--scope", "apps:support",
                                      "--scope", "bogus:scope"])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert line == "error: --scope must be one of: apps:support (not 'bogus:scope')."
    assert not data.exists()  # refused before the data directory is opened
    made = CliRunner().invoke(app, ["keys", "create", "--name", "w", "--scope", "apps:support"])
    assert made.exit_code == 0 and "(member)" in made.output, made.output


def test_uninstall_help_says_what_unit_dir_does_there() -> None:
    text = " ".join(CliRunner().invoke(app, ["service", "uninstall", "--help"]).output.split())
    assert "Remove the unit(s) from here instead of systemd's directory" in text, text
    assert "nothing is stopped or disabled" in text and "Write the unit here" not in text
    install = " ".join(CliRunner().invoke(app, ["service", "install", "--help"]).output.split())
    assert "Write the unit here instead of systemd's directory" in install
