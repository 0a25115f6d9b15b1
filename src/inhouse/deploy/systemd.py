"""Running ``inhouse serve`` as a systemd service: the unit file ``inhouse service install`` writes, and the
``sd_notify`` messages the server sends while it runs under it.

Why systemd: the server supervises its engines (a crash in native code is recovered in-process,
docs/engine-process.md), but nothing restarts the server itself after an OOM kill, a crash of Python or a reboot.
The unit restarts it (``Restart=always``) and starts it at boot. ``Type=notify``: systemd counts the service as
started once the server says ``READY=1`` (after the model loaded and the port listens), so a dependent unit or an
operator's ``systemctl start`` waits for a server that answers; ``WatchdogSec``: the event loop says ``WATCHDOG=1``
every third of it, and a loop stuck for longer (a deadlock, a blocking call) is killed and restarted.

In a cluster (docs/scale-out.md) each machine runs its Ray node as ``inhouse-node.service`` (``inhouse cluster up``
or ``join ADDRESS`` with ``--foreground``, ``Type=notify``: ready once the node is up; restarted for ever, so a worker
whose head is away keeps trying to rejoin), and the head also ``inhouse-app.service``: the one-shot ``inhouse serve
--cluster`` that deploys the app onto it, started after its node and again whenever the node is (a restarted head
holds no app until it is deployed again). No ``PrivateTmp`` there: the app's driver reaches the node through the
sockets Ray keeps under /tmp.

The notify protocol is a datagram to the socket in ``$NOTIFY_SOCKET`` (``@`` for Linux's abstract namespace);
without the variable (not under systemd) every call does nothing. No library: the protocol is one ``sendto``.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

Scope = Literal["system", "user"]
UNIT_NAME = "inhouse.service"
NODE_UNIT = "inhouse-node.service"
APP_UNIT = "inhouse-app.service"
UNIT_NAMES = (UNIT_NAME, NODE_UNIT, APP_UNIT)
# A system unit's data directory when none is named: systemd's place for a service's state (StateDirectory=), not
# the home of root that runs `sudo inhouse service install` (0700: out of the service account's reach).
SYSTEM_DATA_DIR = Path("/var/lib/inhouse")
ENVIRONMENT_FILE = "service.env"  # in the data directory, 0600: the settings variables the unit carries
NODE_RESTART_S = 10  # a worker retries its head this often while the head is away
_PLAIN = re.compile(r"[A-Za-z0-9_./:,+-]+")  # a word of a command line that needs no quotes
# Seconds: a 13B model loads in minutes on a 2-core machine; beyond that the start has failed.
START_TIMEOUT_S = 900
WATCHDOG_S = 60
RESTART_S = 3


@dataclass(frozen=True)
class ClusterNode:
    """This machine's part in a cluster: the head (``cluster up``) or a worker joining ``address``."""

    head: bool
    address: str  # the head's host:port as the other machines and the app's driver reach it
    node_ip: str = "127.0.0.1"  # this machine's address as the others reach it
    port: int = 6379  # the head's port
    num_cpus: int | None = None
    token_file: Path | None = None

    def command(self) -> list[str]:
        """``inhouse cluster …`` arguments of the node, run in the foreground."""
        argv = ["cluster", "up", "--port", str(self.port)] if self.head else ["cluster", "join", self.address]
        argv += ["--foreground", "--node-ip", self.node_ip]
        if self.num_cpus is not None:
            argv += ["--num-cpus", str(self.num_cpus)]
        if self.token_file is not None:
            argv += ["--token-file", str(self.token_file)]
        return argv


@dataclass(frozen=True)
class ServiceUnit:
    """What the units run: ``inhouse serve`` of this installation on ``data_dir``; in a cluster, this machine's node
    and, on the head, the deployment of the app (module doc)."""

    executable: Path  # the ``inhouse`` console script of the virtualenv
    data_dir: Path
    scope: Scope
    run_as: str | None = None  # system scope: the account the server runs as (never root)
    config: Path | None = None  # INHOUSE_CONFIG, when the settings live in a TOML file
    open_files: int = 2048  # LimitNOFILE: above server.max_connections plus the databases, models and sockets
    cluster: ClusterNode | None = None
    # INHOUSE_* settings variables install ran with, for the service to run with the same: in a 0600 file, since
    # any of them may hold a secret (a store URL with a password) and the unit file is world-readable.
    environment: tuple[tuple[str, str], ...] = ()

    @property
    def environment_file(self) -> Path | None:
        return self.data_dir / ENVIRONMENT_FILE if self.environment else None

    def render_environment(self) -> str:
        """The ``EnvironmentFile=``: ``NAME="VALUE"`` lines, read the same by systemd and by a POSIX shell."""
        lines = ["# Written by `inhouse service install`: the settings variables it ran with. Mode 0600."]
        for name, value in self.environment:
            if any(c in value for c in "\n\r\0"):
                raise ValueError(f"{name} holds a line break, which an environment file cannot carry")
            escaped = re.sub(r'(["\\`$])', r"\\\1", value)
            lines.append(f'{name}="{escaped}"')
        return "\n".join(lines) + "\n"

    def units(self) -> dict[str, str]:
        """The unit files to install, by name."""
        if self.cluster is None:
            return {UNIT_NAME: self.render()}
        return {NODE_UNIT: self.render_node(), **({APP_UNIT: self.render_app()} if self.cluster.head else {})}

    def _run(self, *argv: str) -> list[str]:
        """ExecStart of ``inhouse ARGV --data-dir``, the environment and, for a system unit, the account."""
        q = quote
        words = " ".join(a if _PLAIN.fullmatch(a) else q(a, command=True) for a in argv)
        lines = [f"ExecStart={q(self.executable, command=True)} {words} --data-dir {q(self.data_dir, command=True)}",
                 f"Environment={q(f'INHOUSE_DATA_DIR={self.data_dir}')}"]
        if self.config is not None:
            lines.append(f"Environment={q(f'INHOUSE_CONFIG={self.config}')}")
        if self.environment_file is not None:  # the rest of the line is the path, quotes and all: only % escaped
            lines.append(f"EnvironmentFile={str(self.environment_file).replace('%', '%%')}")
        if self.scope == "system":
            if not self.run_as or self.run_as in ("root", "nobody"):
                # nobody: its files would be everybody's who runs as nobody (systemd warns the same).
                raise ValueError("a system unit runs inhouse as a named account of its own, never root or nobody")
            lines += [f"User={self.run_as}", "NoNewPrivileges=yes", "ProtectSystem=full",
                      f"ReadWritePaths={q(self.data_dir)}"]
            if self.data_dir.parent == SYSTEM_DATA_DIR.parent:  # systemd keeps it there, owned by User=, 0700
                lines += [f"StateDirectory={self.data_dir.name}", "StateDirectoryMode=0700"]
        return lines

    def _file(self, description: str, unit: list[str], service: list[str], wanted_by: str | None = None) -> str:
        target = wanted_by or ("multi-user.target" if self.scope == "system" else "default.target")
        return "\n".join([
            "# Written by `inhouse service install`; `inhouse service uninstall` removes it.",
            "[Unit]", f"Description={description}", *unit, "",
            "[Service]", *service, "",
            "[Install]", f"WantedBy={target}", "",
        ])

    def render_node(self) -> str:
        """``inhouse-node.service``: this machine's Ray node."""
        assert self.cluster is not None
        role = "head" if self.cluster.head else "worker"
        return self._file(
            f"inhouse: this machine's {role} node of the Ray cluster",
            # Never give up: a worker's head may be away for minutes (rebooting), and the node must come back.
            ["After=network-online.target", "Wants=network-online.target", "StartLimitIntervalSec=0"],
            ["Type=notify", "NotifyAccess=main", *self._run(*self.cluster.command()),
             "Restart=always", f"RestartSec={NODE_RESTART_S}", f"TimeoutStartSec={START_TIMEOUT_S}",
             # Ray drains for up to 30 s on SIGTERM; the node's own stop sends it and then kills what is left.
             "TimeoutStopSec=60", "KillMode=mixed", "LimitNOFILE=65536", "UMask=0077"])

    def render_app(self) -> str:
        """``inhouse-app.service`` (head only): deploy the app onto the node, after it and whenever it starts."""
        assert self.cluster is not None
        return self._file(
            "inhouse: the app (HTTP API, model replicas) deployed onto the Ray cluster",
            [f"After={NODE_UNIT}", f"BindsTo={NODE_UNIT}", "StartLimitIntervalSec=0"],
            ["Type=oneshot", "RemainAfterExit=yes",
             *self._run("serve", "--cluster", self.cluster.address, "--node-ip", self.cluster.node_ip),
             "Restart=on-failure", f"RestartSec={NODE_RESTART_S}", f"TimeoutStartSec={START_TIMEOUT_S}",
             "UMask=0077"],
            wanted_by=NODE_UNIT)

    def render(self) -> str:
        """``inhouse.service``: ``inhouse serve`` on this machine."""
        service = ["Type=notify", "NotifyAccess=main", *self._run("serve")]
        service += [
            "Restart=always",
            f"RestartSec={RESTART_S}",
            f"TimeoutStartSec={START_TIMEOUT_S}",
            "TimeoutStopSec=30",
            f"WatchdogSec={WATCHDOG_S}",
            # SIGTERM to the server alone: it stops its engine processes itself; whatever is left is killed after.
            "KillMode=mixed",
            f"LimitNOFILE={self.open_files}",
            "PrivateTmp=yes",
            "UMask=0077",
        ]
        return self._file(
            "inhouse: private AI on this machine's CPUs",
            ["After=network-online.target", "Wants=network-online.target",
             # Restart for ever, but not in a tight loop: 10 failed starts in 5 minutes stop it (a broken install).
             "StartLimitIntervalSec=300", "StartLimitBurst=10"],
            service)


class Account(NamedTuple):
    """The account a system unit runs as, as the kernel checks its access to a file: its uid and every group."""

    name: str
    uid: int
    gids: frozenset[int]

    @classmethod
    def named(cls, name: str) -> Account:
        entry = pwd.getpwnam(name)
        return cls(name, entry.pw_uid, frozenset(os.getgrouplist(name, entry.pw_gid)))


class _Mode(NamedTuple):
    st_mode: int
    st_uid: int
    st_gid: int


def _may(account: Account, mode: _Mode, want: int) -> bool:
    """The permission check of the mode bits (no ACLs): the owner's bits for the owner, else the group's for a
    member, else the others'; ``want`` of R_OK, W_OK, X_OK."""
    if account.uid == 0:
        return True
    shift = 6 if mode.st_uid == account.uid else 3 if mode.st_gid in account.gids else 0
    return (mode.st_mode >> shift) & want == want


def _described(path: Path, mode: _Mode) -> str:
    try:
        user = pwd.getpwuid(mode.st_uid).pw_name
    except KeyError:
        user = str(mode.st_uid)
    try:
        group = grp.getgrgid(mode.st_gid).gr_name
    except KeyError:
        group = str(mode.st_gid)
    return f"{path} ({stat.filemode(mode.st_mode)} {user}:{group})"


def first_blocked(account: Account, path: Path, want: int = os.X_OK) -> str | None:
    """Where ``account`` is stopped on its way to ``path``: the first directory above it that it may not search
    (as written, and as symbolic links resolve), or ``path`` itself when it lacks ``want``; described with its mode
    and owner, None when nothing stops it. Directories not there yet are judged as this process will make them
    (``mkdir -p``: its user and group, 0777 less its umask)."""
    umask = os.umask(0o022)
    os.umask(umask)
    made = _Mode(stat.S_IFDIR | (0o777 & ~umask), os.geteuid(), os.getegid())
    absolute = path.absolute()
    steps: list[tuple[Path, int]] = []
    for chain in (absolute, absolute.resolve()):
        for step in (*reversed(chain.parents), chain):
            entry = (step, want if step == chain else os.X_OK)
            if entry not in steps:
                steps.append(entry)
    for step, bits in steps:
        try:
            st = step.stat()
            mode = _Mode(st.st_mode, st.st_uid, st.st_gid)
        except FileNotFoundError:
            mode = made
        except OSError:  # this process may not look (not root): the service will find out itself
            continue
        if not _may(account, mode, bits):
            return _described(step, mode)
    return None


def quote(value: object, *, command: bool = False) -> str:
    """``value`` as one word of a unit file: in double quotes, with ``\\`` and ``"`` escaped, ``%`` doubled (a
    specifier otherwise) and, in a command line, ``$`` doubled (a variable otherwise)."""
    text = str(value)
    if any(c in text for c in "\n\r\0"):
        raise ValueError(f"a unit file cannot hold {text!r}")
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{text.replace("$", "$$") if command else text}"'


def unit_dir(scope: Scope, home: Path | None = None) -> Path:
    """Where systemd looks for units an administrator (``system``) or a user (``user``) installs."""
    if scope == "system":
        return Path("/etc/systemd/system")
    config = os.environ.get("XDG_CONFIG_HOME")
    return (Path(config) if config else (home or Path.home()) / ".config") / "systemd" / "user"


def systemd_running() -> bool:
    """True when systemd is this machine's init (not in most containers)."""
    return Path("/run/systemd/system").is_dir()


class Notifier:
    """``sd_notify`` for the server. ``watchdog_interval_s`` is how often to say ``WATCHDOG=1`` (a third of what
    systemd allows), None when no watchdog is asked for."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        path = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + path[1:] if path.startswith("@") else path
        self.watchdog_interval_s: float | None = None
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval_s = int(usec) / 1e6 / 3

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *lines: str) -> None:
        """Send ``lines`` (``READY=1``, ``STATUS=…``) as one message; errors are ignored (systemd may be gone)."""
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto("\n".join(lines).encode(), self._address)
        except OSError:
            pass

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")
