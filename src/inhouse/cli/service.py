"""`inhouse service …`: keep `inhouse serve` running as a systemd service (restarted after a crash, started at boot).
The unit and the notify protocol: ``deploy/systemd.py``; the decisions: docs/operations.md, "Running as a service"."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from inhouse.cli.common import DataDirOption, console, err_console, esc, fail, services_for, settings_from
from inhouse.config import Settings
from inhouse.deploy.systemd import (
    ENVIRONMENT_FILE,
    SYSTEM_DATA_DIR,
    UNIT_NAMES,
    Account,
    ClusterNode,
    Scope,
    ServiceUnit,
    first_blocked,
    systemd_running,
    unit_dir,
)

app = typer.Typer(no_args_is_help=True)

SystemOption = typer.Option(False, "--system", help="A system unit in /etc/systemd/system (as root), run as "
                            "--run-as; default: a user unit in ~/.config/systemd/user.")
UnitDirOption = typer.Option(None, "--unit-dir", help="Write the unit here instead of systemd's directory (for "
                             "configuration management); nothing is started.", show_default=False)
UninstallDirOption = typer.Option(None, "--unit-dir", help="Remove the unit(s) from here instead of systemd's "
                                  "directory (where `install --unit-dir` wrote them); nothing is stopped or "
                                  "disabled.", show_default=False)


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


HeadOption = typer.Option(False, "--cluster-head", help="This machine is the head of a cluster: install its Ray "
                          "node (`inhouse cluster up`) and the deployment of the app onto it (`serve --cluster`) "
                          "instead of `inhouse serve`.")
JoinOption = typer.Option(None, "--cluster-join", metavar="ADDRESS", help="This machine is a worker of the cluster "
                          "whose head is at ADDRESS: install its Ray node (`inhouse cluster join`).",
                          show_default=False)
NodeIpOption = typer.Option("127.0.0.1", "--node-ip", help="In a cluster: this machine's address as the others "
                            "reach it.")
PortOption = typer.Option(6379, "--port", min=1, max=65535, help="--cluster-head: the port of Ray's control service.")
CpusOption = typer.Option(None, "--num-cpus", min=0, help="In a cluster: cores Ray may schedule here (default: all).")
TokenOption = typer.Option(None, "--token-file", help="In a cluster: the Ray auth token (default: "
                           "<data-dir>/cluster/auth_token; a worker needs a copy of the head's).", show_default=False)


def _cluster(head: bool, join: str | None, node_ip: str, port: int, num_cpus: int | None,
             token_file: Path | None, data_dir: Path, *, installing: bool) -> ClusterNode | None:
    from inhouse.cluster.nodes import advertised_address, default_token_file, ensure_token

    if head and join:
        fail("A machine is the head (--cluster-head) or joins one (--cluster-join ADDRESS), not both.")
    if not head and not join:
        return None
    token = (token_file or default_token_file(data_dir)).absolute()
    if installing and head:
        ensure_token(token)  # the head makes it; the workers need a copy before they start
    elif installing and not token.is_file():
        fail(f"No token file at {token}: copy the head's {default_token_file(data_dir).name} there (or give "
             "--token-file) first.")
    return ClusterNode(head=head, address=advertised_address(node_ip, port) if head else str(join),
                       node_ip=node_ip, port=port, num_cpus=num_cpus, token_file=token)


@contextlib.contextmanager
def _settings_file(config: Path | None) -> Iterator[Path | None]:
    """The settings file of the command (--config, else $INHOUSE_CONFIG), absolute, named in $INHOUSE_CONFIG while
    the command runs: the unit is sized from it and the admin key made in its store, so the unit must name it too."""
    given = os.environ.get("INHOUSE_CONFIG")
    path = config if config is not None else Path(given) if given else None
    if path is None:
        yield None
        return
    if not path.is_file():
        fail(f"No settings file {path}{'' if config is not None else ' (INHOUSE_CONFIG)'}.")
    os.environ["INHOUSE_CONFIG"] = str(path.absolute())
    try:
        yield path.absolute()
    finally:
        if given is None:
            del os.environ["INHOUSE_CONFIG"]
        else:
            os.environ["INHOUSE_CONFIG"] = given


def _carried() -> tuple[tuple[str, str], ...]:
    """The ``INHOUSE_*`` settings variables this command runs with (but the data directory, which the unit names
    itself), for the service to run with the same settings. Other ``INHOUSE_*`` variables (a client's
    ``INHOUSE_API_KEY``) are no settings of the server and stay behind."""
    sections = {name.upper() for name in Settings.model_fields} - {"DATA_DIR"}
    carried = []
    for name, value in sorted(os.environ.items()):
        head, _, _ = name.upper().removeprefix("INHOUSE_").partition("__")
        if name.upper().startswith("INHOUSE_") and head in sections:
            if any(c in value for c in "\n\r\0"):
                fail(f"{name} holds a line break, which a service's environment cannot carry.")
            carried.append((name, value))
    return tuple(carried)


def _unreachable(account: str, data: Path, executable: Path, config: Path | None) -> str | None:
    """Why the service's account could not start it: a directory on the way to its data directory, to the
    interpreter or to the settings file that it may not enter, judged from its uid, its groups and the modes."""
    who = Account.named(account)
    interpreter = Path(os.path.realpath(sys.executable))
    elsewhere = ("install inhouse where it can (a virtualenv under /opt, not in a 0700 home) and "
                 "run this command from there")
    checks = [(data.parent, os.X_OK, f"its data directory {data}",
               f"name a data directory it can reach with --data-dir (a system unit's default: {SYSTEM_DATA_DIR})"),
              (executable, os.R_OK | os.X_OK, f"the inhouse script {executable}", elsewhere),
              (interpreter, os.X_OK, f"the Python interpreter {interpreter}", elsewhere)]
    if config is not None:
        checks.append((config, os.R_OK, f"the settings file {config}",
                       f"let it read the file (chgrp {account} FILE; chmod 0640 FILE) in a directory it can enter"))
    for path, want, what, fix in checks:
        blocked = first_blocked(who, path, want)
        if blocked is not None:
            return f"The account {account} cannot reach {what}: it is stopped at {blocked}; {fix}."
    return None


def _unit(system: bool, run_as: str | None, data_dir: Path | None, config: Path | None, *, head: bool = False,
          join: str | None = None, node_ip: str = "127.0.0.1", port: int = 6379, num_cpus: int | None = None,
          token_file: Path | None = None, installing: bool = False) -> ServiceUnit:
    settings = settings_from(data_dir)
    data = settings.data_dir.absolute()
    if system and "data_dir" not in settings.model_fields_set:  # named nowhere: not root's home (0700)
        data = SYSTEM_DATA_DIR
    executable, account = _executable(), _account(system, run_as)
    if account is not None:
        problem = _unreachable(account, data, executable, config)
        if problem is not None and installing:
            fail(f"{problem} Nothing was written.")  # the service would fail every start
        if problem is not None:
            err_console.print(f"[bold yellow]warning:[/] {esc(problem)}", highlight=False)
    environment = _carried()
    if environment:
        err_console.print(f"The service runs with {esc(', '.join(name for name, _ in environment))} as set here, "
                          f"from {esc(data / 'service.env')} (0600).", highlight=False)
    return ServiceUnit(executable=executable, data_dir=data, scope="system" if system else "user", run_as=account,
                       config=config, open_files=max(2048, settings.server.max_connections + 1024),
                       environment=environment,
                       cluster=_cluster(head, join, node_ip, port, num_cpus, token_file, data,
                                        installing=installing))


def _systemctl(scope: Scope, *args: str) -> None:
    argv = ["systemctl", *(["--user"] if scope == "user" else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()[-500:]}", code=5)


@app.command("show")
def show(system: bool = SystemOption,
         run_as: str = typer.Option(None, "--run-as", help="System unit: the account to run as.", show_default=False),
         config: Path = typer.Option(None, "--config", help="A settings file (INHOUSE_CONFIG).", show_default=False),
         cluster_head: bool = HeadOption, cluster_join: str = JoinOption, node_ip: str = NodeIpOption,
         port: int = PortOption, num_cpus: int = CpusOption, token_file: Path = TokenOption,
         data_dir: Path = DataDirOption) -> None:
    """Print the unit(s) `install` would write."""
    with _settings_file(config) as config_file:
        units = _unit(system, run_as, data_dir, config_file, head=cluster_head, join=cluster_join, node_ip=node_ip,
                      port=port, num_cpus=num_cpus, token_file=token_file).units()
    for name, text in units.items():
        typer.echo(f"# --- {name}\n{text}" if len(units) > 1 else text, nl=False)


@app.command("install")
def install(system: bool = SystemOption,
            run_as: str = typer.Option(None, "--run-as", help="System unit: the account to run as (default: "
                                       "$SUDO_USER).", show_default=False),
            config: Path = typer.Option(None, "--config", help="A settings file (INHOUSE_CONFIG).",
                                        show_default=False),
            target: Path = UnitDirOption,
            no_start: bool = typer.Option(False, "--no-start", help="Write and enable nothing else: not started."),
            cluster_head: bool = HeadOption, cluster_join: str = JoinOption, node_ip: str = NodeIpOption,
            port: int = PortOption, num_cpus: int = CpusOption, token_file: Path = TokenOption,
            data_dir: Path = DataDirOption) -> None:
    """Write the unit(s), create the first admin key (shown here once, so it never lands in the journal; not on a
    worker of a cluster), then enable and start the service (restarted after a crash, started at boot)."""
    if system and target is None and os.geteuid() != 0:
        fail("A system unit is written to /etc/systemd/system: run this with sudo.", code=4)
    with _settings_file(config) as config_file:
        unit = _unit(system, run_as, data_dir, config_file, head=cluster_head, join=cluster_join, node_ip=node_ip,
                     port=port, num_cpus=num_cpus, token_file=token_file, installing=True)
        _install(unit, target, no_start)


def _install(unit: ServiceUnit, target: Path | None, no_start: bool) -> None:
    directory = target or unit_dir(unit.scope)
    unit.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = None
    if unit.cluster is None or unit.cluster.head:  # a worker serves no API: its data directory holds models only
        with services_for(unit.data_dir) as services:  # migrates the databases now, as the service's account will
            secret = services.keys.ensure_admin_key()
    if unit.environment_file is not None:
        staged = unit.environment_file.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(unit.render_environment())
        staged.replace(unit.environment_file)
        console.print(f"Wrote {esc(unit.environment_file)} (0600).", highlight=False)
    if unit.run_as is not None and os.geteuid() == 0:
        account = pwd.getpwnam(unit.run_as)
        for path in [unit.data_dir, *unit.data_dir.rglob("*")]:
            os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
    directory.mkdir(parents=True, exist_ok=True)
    units = unit.units()
    for name, text in units.items():
        path = directory / name
        staged = path.with_suffix(".tmp")
        staged.write_text(text, encoding="utf-8")
        staged.replace(path)
        console.print(f"Wrote {esc(path)}.", highlight=False)
    if secret:
        console.print("[bold]Created the first admin API key. It is shown only this once; store it now:[/]\n"
                      f"  {secret}", highlight=False)
    names = " ".join(units)
    if target is not None or no_start:
        how = "systemctl --user" if unit.scope == "user" else "systemctl"
        console.print(f"Not started. Start it with `{how} daemon-reload && {how} enable --now {esc(names)}`.",
                      highlight=False)
        return
    if not systemd_running() or shutil.which("systemctl") is None:
        fail(f"systemd is not running on this machine (a container?): {names} written to {directory} but cannot be "
             "started. Run `inhouse serve` (or `inhouse cluster up|join --foreground`) under this machine's process "
             "supervisor instead.", code=5)
    _systemctl(unit.scope, "daemon-reload")
    _systemctl(unit.scope, "enable", "--now", *units)
    console.print(f"Started {esc(names)}; restarted after a crash and started at boot. Follow with "
                  f"`journalctl {'--user ' if unit.scope == 'user' else ''}-u {esc(next(iter(units)))} -f`.",
                  highlight=False)
    if unit.scope == "user":
        err_console.print(f"A user unit runs while you are logged in; to start it at boot: "
                          f"`sudo loginctl enable-linger {esc(pwd.getpwuid(os.getuid()).pw_name)}`.", highlight=False)


def _environment_file(unit: Path) -> Path | None:
    """The ``service.env`` an installed unit carries its settings in (``EnvironmentFile=``), if any."""
    try:
        lines = unit.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        if line.startswith("EnvironmentFile="):
            path = Path(line.removeprefix("EnvironmentFile=").replace("%%", "%"))
            return path if path.name == ENVIRONMENT_FILE else None  # never a file the unit did not write
    return None


@app.command("uninstall")
def uninstall(system: bool = SystemOption, target: Path = UninstallDirOption) -> None:
    """Stop and disable the service and remove its unit(s) (the data directory is kept)."""
    scope: Scope = "system" if system else "user"
    directory = target or unit_dir(scope)
    paths = [directory / name for name in UNIT_NAMES if (directory / name).exists()]
    if not paths:
        fail(f"No {' or '.join(UNIT_NAMES)} in {directory}: nothing to uninstall.", code=3)
    managed = target is None and systemd_running() and shutil.which("systemctl") is not None
    if managed:
        _systemctl(scope, "disable", "--now", *(p.name for p in paths))
    for path in paths:
        carried = _environment_file(path)
        path.unlink()
        console.print(f"Removed {esc(path)}; the data directory is kept.", highlight=False)
        if carried is not None and carried.exists():  # it holds settings (a database URL, maybe a password)
            carried.unlink()
            console.print(f"Removed {esc(carried)}.", highlight=False)
    if managed:
        _systemctl(scope, "daemon-reload")
