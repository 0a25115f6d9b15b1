"""`inhouse service install / show`: the unit runs the server with the settings install ran with (INHOUSE_CONFIG or
--config, and the other INHOUSE_* settings variables, those in a 0600 file), and a system unit is refused, before
anything is written, when its account could not reach its data directory or its interpreter.

Before 2026-12-07 the unit was sized from INHOUSE_CONFIG (LimitNOFILE) and the first admin key made in the store it
names, but the unit did not carry it: the service served port 8000 from an empty SQLite. And `--system --run-as`
handed a data directory under a 0700 directory to the account, whose service then failed every start; and until the
fifth session of that day `uninstall` left the settings file behind."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from tests.unit.deploy.test_systemd import directives
from typer.testing import CliRunner, Result

from inhouse.cli.main import app
from inhouse.config import load_settings

runner = CliRunner()
WIDE = {"COLUMNS": "400"}
TOML = "[server]\nport = 18399\nmax_connections = 5000\n"


def invoke(*args: str, **env: str | None) -> Result:
    return runner.invoke(app, ["service", *args], env={**WIDE, "INHOUSE_CONFIG": None, "SUDO_USER": None, **env})


def service_environment(unit: str) -> dict[str, str]:
    """What the service process gets: the unit's Environment= and its EnvironmentFile= (as systemd reads them)."""
    d = directives(unit)
    env = dict(v.strip('"').split("=", 1) for v in d.get("Environment", []))
    for path in d.get("EnvironmentFile", []):
        for line in Path(path.replace("%%", "%")).read_text().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                env[name] = value[1:-1]  # test values hold nothing to unescape
    return env


def test_install_carries_the_settings_it_ran_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "inhouse.toml"
    config.write_text(TOML)
    done = invoke("install", "--data-dir", str(tmp_path / "data"), "--unit-dir", str(tmp_path / "units"),
                  INHOUSE_CONFIG=str(config), INHOUSE_ENGINE__MAX_RUNNING="8", INHOUSE_API_KEY="ih_client_key")
    assert done.exit_code == 0, done.output
    unit = (tmp_path / "units" / "inhouse.service").read_text()
    d = directives(unit)
    assert d["LimitNOFILE"] == ["6024"] and f'"INHOUSE_CONFIG={config}"' in d["Environment"]
    env_file = tmp_path / "data" / "service.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert "INHOUSE_ENGINE__MAX_RUNNING" in env_file.read_text() and "INHOUSE_API_KEY" not in env_file.read_text()
    # The server the unit starts gets these settings, and no other INHOUSE_* variable.
    for name in [n for n in os.environ if n.upper().startswith("INHOUSE_")]:
        monkeypatch.delenv(name)
    for name, value in service_environment(unit).items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert (settings.server.port, settings.server.max_connections, settings.engine.max_running) == (18399, 5000, 8)
    assert settings.data_dir == tmp_path / "data"

    # Uninstalled, the unit takes its settings file along (it may hold a database password); the data stays.
    (tmp_path / "data" / "kept").write_text("")
    removed = invoke("uninstall", "--unit-dir", str(tmp_path / "units"))
    assert removed.exit_code == 0 and f"Removed {env_file}." in removed.output, removed.output
    assert not env_file.exists() and (tmp_path / "data" / "kept").exists()


def test_the_config_option_sizes_the_unit_and_is_named_in_it(tmp_path: Path) -> None:
    config = tmp_path / "inhouse.toml"
    config.write_text(TOML)
    done = invoke("show", "--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert done.exit_code == 0, done.output
    d = directives(done.stdout)
    assert d["LimitNOFILE"] == ["6024"] and f'"INHOUSE_CONFIG={config}"' in d["Environment"]


def test_a_store_url_with_its_password_is_carried_but_never_written_into_the_unit(tmp_path: Path) -> None:
    done = invoke("show", "--data-dir", str(tmp_path / "data"),
                  INHOUSE_STORE__URL="postgresql://inhouse:s3cret@db.internal/inhouse")
    assert done.exit_code == 0, done.output
    assert "s3cret" not in done.output and "INHOUSE_STORE__URL" in done.stderr
    assert directives(done.stdout)["EnvironmentFile"] == [f"{tmp_path}/data/service.env"]


def test_a_missing_settings_file_from_the_environment_is_refused(tmp_path: Path) -> None:
    done = invoke("show", "--data-dir", str(tmp_path / "data"), INHOUSE_CONFIG=str(tmp_path / "missing.toml"))
    assert done.exit_code == 2 and "No settings file" in done.output and "INHOUSE_CONFIG" in done.output


def test_a_system_unit_without_a_data_directory_keeps_its_state_in_var_lib() -> None:
    done = invoke("show", "--system", "--run-as", "daemon", INHOUSE_DATA_DIR=None, XDG_DATA_HOME=None)
    assert done.exit_code == 0, done.output
    d = directives(done.stdout)
    assert d["ExecStart"][0].endswith('serve --data-dir "/var/lib/inhouse"') and d["StateDirectory"] == ["inhouse"]


def _interpreter(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's interpreter, as service install sees it, in ``directory`` with an ``inhouse`` script beside."""
    (directory / "bin").mkdir(parents=True)
    for name in ("python", "inhouse"):
        (directory / "bin" / name).write_text("#!/bin/sh\n")
        (directory / "bin" / name).chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(directory / "bin" / "python"))


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="a system unit's data directory is handed over as root")


@root_only
def test_a_data_directory_the_account_cannot_reach_is_refused_before_anything_is_written(
        open_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _interpreter(open_dir / "venv", monkeypatch)
    closed = open_dir / "home"
    closed.mkdir(mode=0o700)
    done = invoke("install", "--system", "--run-as", "daemon", "--unit-dir", str(open_dir / "units"),
                  "--data-dir", str(closed / "inhouse"))
    assert done.exit_code == 2, done.output
    errors = [line for line in done.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"stopped at {closed} (drwx------" in errors[0] and "data directory" in errors[0]
    assert not (open_dir / "units").exists() and not (closed / "inhouse").exists()


@root_only
def test_an_interpreter_the_account_cannot_run_is_refused(open_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = open_dir / "root-home"
    closed.mkdir(mode=0o700)
    _interpreter(closed / "venv", monkeypatch)
    done = invoke("install", "--system", "--run-as", "daemon", "--unit-dir", str(open_dir / "units"),
                  "--data-dir", str(open_dir / "data"))
    assert done.exit_code == 2 and f"stopped at {closed} (drwx------" in done.output, done.output
    assert not (open_dir / "units").exists() and not (open_dir / "data").exists()


@root_only
def test_a_reachable_system_unit_is_installed_and_its_data_handed_over(open_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    _interpreter(open_dir / "venv", monkeypatch)
    done = invoke("install", "--system", "--run-as", "daemon", "--unit-dir", str(open_dir / "units"),
                  "--data-dir", str(open_dir / "data"))
    assert done.exit_code == 0, done.output
    assert (open_dir / "data" / "inhouse.db").stat().st_uid == pwd.getpwnam("daemon").pw_uid
    assert "User=daemon" in (open_dir / "units" / "inhouse.service").read_text()
