"""`inhouse service install / show / uninstall` as a user runs them: the unit written where systemd looks (or where
asked), the first admin key shown once at install and never again, clear refusals, and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from inhouse.deploy.systemd import Account, first_blocked, systemd_running
from inhouse.testing.crash import inhouse_argv


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(inhouse_argv("service", *args), env={**os.environ, "COLUMNS": "200", **env},
                          capture_output=True, text=True, timeout=120)


def test_install_show_and_uninstall_a_user_unit(tmp_path: Path) -> None:
    env = {"INHOUSE_DATA_DIR": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    first = run("install", "--no-start", env=env)
    assert first.returncode == 0, first.stderr
    unit = tmp_path / "config" / "systemd" / "user" / "inhouse.service"
    text = unit.read_text()
    assert f'serve --data-dir "{tmp_path / "data"}"' in text and "Type=notify" in text
    assert "ih_" in first.stdout and "shown only this once" in first.stdout  # the key, here and not in the journal
    again = run("install", "--no-start", env=env)
    assert again.returncode == 0 and "ih_" not in again.stdout  # the admin key exists: no second one
    assert run("show", env=env).stdout == text
    gone = run("uninstall", "--unit-dir", str(unit.parent), env=env)
    assert gone.returncode == 0 and not unit.exists() and (tmp_path / "data").is_dir()
    missing = run("uninstall", "--unit-dir", str(unit.parent), env=env)
    assert missing.returncode == 3 and "nothing to uninstall" in missing.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["--system", "--unit-dir", "UNITS"], "--run-as"),
    (["--system", "--run-as", "root", "--unit-dir", "UNITS"], "--run-as"),
    (["--system", "--run-as", "no-such-account-x", "--unit-dir", "UNITS"], "No account"),
    (["--run-as", "daemon", "--unit-dir", "UNITS"], "a user unit runs as you"),
    (["--config", "missing.toml", "--unit-dir", "UNITS"], "No settings file"),
])
def test_refusals_are_one_clear_line(tmp_path: Path, args: list[str], says: str) -> None:
    env = {"INHOUSE_DATA_DIR": str(tmp_path / "data"), "SUDO_USER": ""}
    done = run("install", *[str(tmp_path / "units") if a == "UNITS" else a for a in args], env=env)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "units").exists()


def test_a_system_unit_for_a_named_account_passes_systemds_own_check(open_dir: Path) -> None:
    env = {"INHOUSE_DATA_DIR": str(open_dir / "data")}
    done = run("install", "--system", "--run-as", "daemon", "--unit-dir", str(open_dir / "units"), env=env)
    # An interpreter the account cannot run (a pyenv in root's home, as on the development machine) is refused.
    interpreter = Path(os.path.realpath(sys.executable))
    blocked = first_blocked(Account.named("daemon"), interpreter)
    if blocked is not None:
        assert done.returncode == 2 and f"stopped at {blocked}" in " ".join(done.stderr.split()), done.stderr
        assert not (open_dir / "units").exists() and not (open_dir / "data").exists()
        return
    assert done.returncode == 0, done.stderr
    text = (open_dir / "units" / "inhouse.service").read_text()
    assert "User=daemon" in text and "WantedBy=multi-user.target" in text
    if os.geteuid() == 0:  # the data directory now belongs to the account the service runs as
        import pwd

        assert (open_dir / "data").stat().st_uid == pwd.getpwnam("daemon").pw_uid


def test_a_system_unit_whose_data_directory_is_out_of_its_accounts_reach_is_refused(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)  # as root's home is
    env = {"INHOUSE_DATA_DIR": str(tmp_path / "data")}
    done = run("install", "--system", "--run-as", "daemon", "--unit-dir", str(tmp_path / "units"), env=env)
    assert done.returncode == 2 and "cannot reach its data directory" in " ".join(done.stderr.split()), done.stderr
    assert not (tmp_path / "units").exists() and not (tmp_path / "data").exists()


def test_the_machines_of_a_cluster_install_their_node_and_the_head_the_app(tmp_path: Path) -> None:
    head_env = {"INHOUSE_DATA_DIR": str(tmp_path / "head")}
    head = run("install", "--cluster-head", "--node-ip", "10.0.0.1", "--unit-dir", str(tmp_path / "head-units"),
               env=head_env)
    assert head.returncode == 0, head.stderr
    assert sorted(p.name for p in (tmp_path / "head-units").iterdir()) == ["inhouse-app.service",
                                                                          "inhouse-node.service"]
    assert "ih_" in head.stdout  # the head serves the API: its first admin key, shown once
    token = tmp_path / "head" / "cluster" / "auth_token"
    assert token.stat().st_mode & 0o777 == 0o600  # made for the workers to copy
    worker_env = {"INHOUSE_DATA_DIR": str(tmp_path / "worker")}
    refused = run("install", "--cluster-join", "10.0.0.1:6379", "--unit-dir", str(tmp_path / "w-units"),
                  env=worker_env)
    assert refused.returncode == 2 and "copy the head's auth_token" in refused.stderr, refused.stderr
    assert not (tmp_path / "w-units").exists()
    worker = run("install", "--cluster-join", "10.0.0.1:6379", "--node-ip", "10.0.0.2", "--token-file", str(token),
                 "--unit-dir", str(tmp_path / "w-units"), env=worker_env)
    assert worker.returncode == 0 and "ih_" not in worker.stdout, worker.stderr  # a worker serves no API
    text = (tmp_path / "w-units" / "inhouse-node.service").read_text()
    assert "cluster join 10.0.0.1:6379 --foreground" in text and [p.name for p in (tmp_path / "w-units").iterdir()
                                                                   ] == ["inhouse-node.service"]
    both = run("install", "--cluster-head", "--cluster-join", "10.0.0.1:6379", "--unit-dir", str(tmp_path / "x"),
               env=worker_env)
    assert both.returncode == 2 and "not both" in both.stderr
    gone = run("uninstall", "--unit-dir", str(tmp_path / "head-units"), env=head_env)
    assert gone.returncode == 0 and not list((tmp_path / "head-units").iterdir())


@pytest.mark.skipif(systemd_running(), reason="systemd runs here: install would really start the service")
def test_without_systemd_install_says_so_and_exits_non_zero(tmp_path: Path) -> None:
    env = {"INHOUSE_DATA_DIR": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = run("install", env=env)
    assert done.returncode == 5 and "systemd is not running" in done.stderr, done.stderr
    assert (tmp_path / "config" / "systemd" / "user" / "inhouse.service").exists()
