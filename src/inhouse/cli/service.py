"""`inhouse service …`: keep `inhouse serve` running as a systemd service (restarted after a crash, started at boot).
The unit and the notify protocol: ``deploy/systemd.py``; the decisions: docs/operations.md, "Running as a service"."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import typer

from inhouse.cli.common import DataDirOption, console, err_console, fail, services_for, settings_from
from inhouse.deploy.systemd import UNIT_NAME, Scope, ServiceUnit, systemd_running, unit_dir

app = typer.Typer(no_args_is_help=True)

SystemOption = typer.Option(False, "--system", help="A system unit in /etc/systemd/system (as root), run as "
                            "--run-as; default: a user unit in ~/.config/systemd/user.")
UnitDirOption = typer.Option(None, "--unit-dir", help="Write the unit here instead of systemd's directory (for "
                             "configuration management); nothing is started.", show_default=False)


def _executable() -> Path:
    """The ``inhouse`` console script of this installation's virtualenv."""
    script = Path(sys.executable).with_name("inhouse")
    if not script.exists():
        fail(f"No `inhouse` script beside {sys.executable}: run this from the virtualenv inhouse is installed in.")
    return script.absolute()


def _account(system: bool, run_as: str | None) -> str | None:
    if not system:
        if run_as:
            fail("--run-as is for a system unit (--system); a user unit runs as you.")
        return None
    name = run_as or os.environ.get("SUDO_USER")
    if not name or name == "root":
        fail("Name the account the server runs as with --run-as (inhouse does not run as root).")
    assert name is not None
    try:
        pwd.getpwnam(name)
    except KeyError:
        fail(f"No account {name!r} on this machine: create it first (e.g. `useradd --system {name}`).")
    return name


def _unit(system: bool, run_as: str | None, data_dir: Path | None, config: Path | None) -> ServiceUnit:
    settings = settings_from(data_dir)
    if config is not None and not config.is_file():
        fail(f"No settings file {config}.")
    return ServiceUnit(executable=_executable(), data_dir=settings.data_dir.absolute(),
                       scope="system" if system else "user", run_as=_account(system, run_as),
                       config=config.absolute() if config else None,
                       open_files=max(2048, settings.server.max_connections + 1024))


def _systemctl(scope: Scope, *args: str) -> None:
    argv = ["systemctl", *(["--user"] if scope == "user" else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()[-500:]}", code=5)


@app.command("show")
def show(system: bool = SystemOption,
         run_as: str = typer.Option(None, "--run-as", help="System unit: the account to run as.", show_default=False),
         config: Path = typer.Option(None, "--config", help="A settings file (INHOUSE_CONFIG).", show_default=False),
         data_dir: Path = DataDirOption) -> None:
    """Print the unit `install` would write."""
    typer.echo(_unit(system, run_as, data_dir, config).render(), nl=False)


@app.command("install")
def install(system: bool = SystemOption,
            run_as: str = typer.Option(None, "--run-as", help="System unit: the account to run as (default: "
                                       "$SUDO_USER).", show_default=False),
            config: Path = typer.Option(None, "--config", help="A settings file (INHOUSE_CONFIG).",
                                        show_default=False),
            target: Path = UnitDirOption,
            no_start: bool = typer.Option(False, "--no-start", help="Write and enable nothing else: not started."),
            data_dir: Path = DataDirOption) -> None:
    """Write the unit, create the first admin key (shown here once, so it never lands in the journal), then
    enable and start the service (restarted after a crash, started at boot)."""
    unit = _unit(system, run_as, data_dir, config)
    directory = target or unit_dir(unit.scope)
    if system and target is None and os.geteuid() != 0:
        fail("A system unit is written to /etc/systemd/system: run this with sudo.", code=4)
    unit.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with services_for(unit.data_dir) as services:  # migrates the databases now, as the service's account will
        secret = services.keys.ensure_admin_key()
    if unit.run_as is not None and os.geteuid() == 0:
        account = pwd.getpwnam(unit.run_as)
        for path in [unit.data_dir, *unit.data_dir.rglob("*")]:
            os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / UNIT_NAME
    staged = path.with_suffix(".tmp")
    staged.write_text(unit.render(), encoding="utf-8")
    staged.replace(path)
    console.print(f"Wrote {path}.", highlight=False)
    if secret:
        console.print("[bold]Created the first admin API key. It is shown only this once; store it now:[/]\n"
                      f"  {secret}", highlight=False)
    if target is not None or no_start:
        how = "systemctl --user" if unit.scope == "user" else "systemctl"
        console.print(f"Not started. Start it with `{how} daemon-reload && {how} enable --now {UNIT_NAME}`.",
                      highlight=False)
        return
    if not systemd_running() or shutil.which("systemctl") is None:
        fail(f"systemd is not running on this machine (a container?): {path} is written but cannot be started. "
             "Run `inhouse serve` under this machine's process supervisor instead.", code=5)
    _systemctl(unit.scope, "daemon-reload")
    _systemctl(unit.scope, "enable", "--now", UNIT_NAME)
    console.print(f"Started {UNIT_NAME}; it restarts after a crash and starts at boot. Follow it with "
                  f"`journalctl {'--user ' if unit.scope == 'user' else ''}-u inhouse -f`.", highlight=False)
    if unit.scope == "user":
        err_console.print(f"A user unit runs while you are logged in; to start it at boot: "
                          f"`sudo loginctl enable-linger {pwd.getpwuid(os.getuid()).pw_name}`.", highlight=False)


@app.command("uninstall")
def uninstall(system: bool = SystemOption, target: Path = UnitDirOption) -> None:
    """Stop and disable the service and remove its unit (the data directory is kept)."""
    scope: Scope = "system" if system else "user"
    path = (target or unit_dir(scope)) / UNIT_NAME
    if not path.exists():
        fail(f"No {path}: nothing to uninstall.", code=3)
    if target is None and systemd_running() and shutil.which("systemctl") is not None:
        _systemctl(scope, "disable", "--now", UNIT_NAME)
    path.unlink()
    if target is None and systemd_running() and shutil.which("systemctl") is not None:
        _systemctl(scope, "daemon-reload")
    console.print(f"Removed {path}; the data directory is kept.", highlight=False)
