"""The OS's and SQLite's errors at the CLI edge (a data directory that is a file, an output in a missing directory, a
database on a full disk): one red line naming the path, the documented exit code, no traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from inhouse.cli import common
from inhouse.cli.main import app
from inhouse.testing.gguf_writer import write_tiny_model

runner = CliRunner()
WIDE = {"COLUMNS": "400"}  # one message, one line


def one_line_error(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # nothing escaped the handler
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize("command", [["models", "list"], ["doctor"], ["users", "list"],
                                     ["restore", "BACKUP"]])
def test_a_data_directory_that_is_a_file(command: list[str], tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    argv = [str(tmp_path / "backup") if a == "BACKUP" else a for a in command]
    if command[0] == "restore":  # a backup to restore, so that the data directory is what fails
        data = tmp_path / "data"
        assert runner.invoke(app, ["models", "list", "--data-dir", str(data)]).exit_code == 0
        assert runner.invoke(app, ["backup", str(tmp_path / "backup"), "--data-dir", str(data)]).exit_code == 0
    line = one_line_error(runner.invoke(app, [*argv, "--data-dir", str(afile)], env=WIDE), 2)
    assert f"{afile} is a file, not a directory" in line


def test_a_backup_into_a_file(tmp_path: Path) -> None:
    data, afile = tmp_path / "data", tmp_path / "afile"
    afile.write_text("not a directory")
    assert runner.invoke(app, ["models", "list", "--data-dir", str(data)]).exit_code == 0
    line = one_line_error(runner.invoke(app, ["backup", str(afile), "--data-dir", str(data)], env=WIDE), 2)
    assert f"{afile} is a file" in line


@pytest.mark.parametrize("out", ["missing/x.tar", "missing/bundle"])
def test_an_image_built_into_a_missing_directory(out: str, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    write_tiny_model(tmp_path / "tiny.gguf")
    added = runner.invoke(app, ["models", "add", str(tmp_path / "tiny.gguf"), "--name", "tiny", "--data-dir", data])
    assert added.exit_code == 0, added.output
    if out.endswith(".tar"):
        line = one_line_error(runner.invoke(app, ["image", "build", "tiny", "-o", str(tmp_path / out),
                                                  "--data-dir", data], env=WIDE), 2)
        assert f"{tmp_path / 'missing'}: no such directory" in line
    else:  # a bundle directory: its parents are made, as mkdir -p would
        (tmp_path / "missing").write_text("a file where the directory should be")
        line = one_line_error(runner.invoke(app, ["image", "build", "tiny", "-o", str(tmp_path / out),
                                                  "--data-dir", data], env=WIDE), 2)
        assert f"{tmp_path / 'missing'} is a file, not a directory" in line


def fail_opening(exc: Exception) -> Any:
    def open_services(settings: Any) -> Any:
        raise exc
    return open_services


def test_a_database_on_a_full_disk_is_storage_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite says only "disk I/O error" when it cannot grow its journal: the CLI looks at the disk itself.
    monkeypatch.setattr(common, "open_services", fail_opening(sqlite3.OperationalError("disk I/O error")))
    monkeypatch.setattr("inhouse.errors.shutil.disk_usage", lambda path: SimpleNamespace(total=100, used=100, free=0))
    line = one_line_error(runner.invoke(app, ["models", "list", "--data-dir", str(tmp_path)], env=WIDE), 6)
    assert f"the database in {tmp_path}" in line and "the disk is full" in line


def test_a_database_error_with_space_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "open_services", fail_opening(sqlite3.DatabaseError("file is not a database")))
    line = one_line_error(runner.invoke(app, ["models", "list", "--data-dir", str(tmp_path)], env=WIDE), 1)
    assert f"the database in {tmp_path} cannot be opened or written: file is not a database" in line


def test_an_os_error_for_a_full_disk_is_storage_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = OSError(28, "No space left on device", str(tmp_path / "models" / "x.gguf"))
    monkeypatch.setattr(common, "open_services", fail_opening(full))
    line = one_line_error(runner.invoke(app, ["models", "list", "--data-dir", str(tmp_path)], env=WIDE), 6)
    assert f"{tmp_path / 'models' / 'x.gguf'}: the disk is full" in line


def test_any_other_error_keeps_its_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "open_services", fail_opening(ZeroDivisionError("a bug")))
    result = runner.invoke(app, ["models", "list", "--data-dir", str(tmp_path)])
    assert isinstance(result.exception, ZeroDivisionError)


@pytest.mark.parametrize(("env", "toml", "expected"), [
    ({"INHOUSE_ENGINE__MAX_RUNNING": "999"}, None,
     "engine.max_running (INHOUSE_ENGINE__MAX_RUNNING): Input should be less than or equal to 64 (given: '999')"),
    ({"INHOUSE_ENGINE__MAX_RUNNING": "32", "INHOUSE_ENGINE__STEP_TOKEN_BUDGET": "16"}, None,
     "engine: step_token_budget (16) must be at least max_running (32)"),
    ({}, "[engine]\nmax_running = 'x'\n", "engine.max_running (in {file}): Input should be a valid"),  # not a variable
    ({}, "engine = [\n", "(INHOUSE_CONFIG) is not valid TOML"),
    ({"INHOUSE_CONFIG": "missing.toml"}, None, "missing.toml, which cannot be read (not a file)"),  # no silent defaults
])
@pytest.mark.parametrize("command", [["status"], ["keys", "list"], ["serve"]])
def test_settings_that_cannot_be_used_are_named(command: list[str], env: dict[str, str], toml: str | None,
                                                 expected: str, tmp_path: Path) -> None:
    env = {**WIDE, "INHOUSE_DATA_DIR": str(tmp_path / "data"), **env}
    if "INHOUSE_CONFIG" in env:
        env["INHOUSE_CONFIG"] = str(tmp_path / env["INHOUSE_CONFIG"])
    if toml is not None:
        (tmp_path / "config.toml").write_text(toml)
        env["INHOUSE_CONFIG"] = str(tmp_path / "config.toml")
    line = one_line_error(runner.invoke(app, command, env=env), 2)
    expected = expected.replace("{file}", str(tmp_path / "config.toml"))
    assert line.startswith("error: ") and expected in line, line
    assert not (tmp_path / "data").exists()  # refused before anything was written
