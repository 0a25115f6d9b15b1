"""The unit `inhouse service install` writes (checked by systemd's own `systemd-analyze verify` where it is
installed) and the sd_notify messages, received on a real datagram socket."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.deploy.systemd import APP_UNIT, NODE_UNIT, ClusterNode, Notifier, ServiceUnit, quote

EXE = Path(sys.executable)  # any executable file: verify checks that ExecStart's exists


def unit(**kw: object) -> ServiceUnit:
    return ServiceUnit(**{"executable": EXE, "data_dir": Path("/var/lib/inhouse"), "scope": "system",
                          "run_as": "daemon", **kw})  # type: ignore[arg-type]


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_a_system_unit_restarts_notifies_and_runs_as_its_account() -> None:
    d = directives(unit(config=Path("/etc/inhouse.toml")).render())
    assert d["Type"] == ["notify"] and d["Restart"] == ["always"] and d["User"] == ["daemon"]
    assert d["ExecStart"] == [f'"{EXE}" serve --data-dir "/var/lib/inhouse"']
    assert d["Environment"] == ['"INHOUSE_DATA_DIR=/var/lib/inhouse"', '"INHOUSE_CONFIG=/etc/inhouse.toml"']
    assert d["ReadWritePaths"] == ['"/var/lib/inhouse"'] and d["WantedBy"] == ["multi-user.target"]
    assert int(d["WatchdogSec"][0]) > 0 and d["KillMode"] == ["mixed"]


def test_a_user_unit_has_no_account_and_starts_with_the_session() -> None:
    d = directives(unit(scope="user", run_as=None).render())
    assert "User" not in d and d["WantedBy"] == ["default.target"]


@pytest.mark.parametrize("account", [None, "root", "nobody"])
def test_a_system_unit_never_runs_as_root(account: str | None) -> None:
    with pytest.raises(ValueError, match="never root"):
        unit(run_as=account).render()


def test_quoting_keeps_specifiers_variables_and_quotes_literal() -> None:
    assert quote('data/50% "x"\\y$', command=True) == '"data/50%% \\"x\\"\\\\y$$"'
    assert quote("A=$HOME") == '"A=$HOME"'  # Environment= does not expand variables
    with pytest.raises(ValueError):
        quote("two\nlines")


TRICKY = 'postgresql://inhouse:pa ss"$HOME`id`\\x\'%i@db.internal/inhouse'


def test_settings_variables_go_to_a_file_the_shell_and_systemd_read_the_same(tmp_path: Path) -> None:
    service = unit(data_dir=tmp_path / "data 100%", environment=(("INHOUSE_STORE__URL", TRICKY),
                                                                 ("INHOUSE_SERVER__PORT", "8001")))
    text = service.render()
    assert "pa ss" not in text and "INHOUSE_STORE__URL" not in text  # the unit file is world-readable
    assert directives(text)["EnvironmentFile"] == [f"{tmp_path}/data 100%%/service.env"]  # no quotes: a path
    assert service.environment_file == tmp_path / "data 100%" / "service.env"
    env_file = tmp_path / "service.env"
    env_file.write_text(service.render_environment())
    # systemd's EnvironmentFile= parser follows the shell's double quotes (\\, \", \`, \$ escaped; no expansion)
    done = subprocess.run(["sh", "-c", f'. "{env_file}"; printf "%s|%s" "$INHOUSE_STORE__URL" "$INHOUSE_SERVER__PORT"'],
                          capture_output=True, text=True, env={"PATH": os.environ["PATH"], "HOME": "/nowhere"},
                          timeout=30)
    assert done.stdout == f"{TRICKY}|8001", done.stderr
    with pytest.raises(ValueError, match="line break"):
        unit(environment=(("INHOUSE_SERVER__HOST", "a\nb"),)).render_environment()


def test_without_settings_variables_there_is_no_environment_file() -> None:
    service = unit()
    assert service.environment_file is None and "EnvironmentFile" not in service.render()


def test_a_system_unit_in_var_lib_lets_systemd_keep_its_state_directory() -> None:
    assert directives(unit().render())["StateDirectory"] == ["inhouse"]
    assert directives(unit().render())["StateDirectoryMode"] == ["0700"]
    assert "StateDirectory" not in unit(data_dir=Path("/var/local/inhouse")).render()
    assert "StateDirectory" not in unit(scope="user", run_as=None).render()


HEAD = ClusterNode(head=True, address="10.0.0.1:6379", node_ip="10.0.0.1", num_cpus=2,
                   token_file=Path("/var/lib/inhouse/cluster/auth_token"))
WORKER = ClusterNode(head=False, address="10.0.0.1:6379", node_ip="10.0.0.2",
                     token_file=Path("/etc/inhouse/ray token"))


def test_a_cluster_head_runs_its_node_for_ever_and_deploys_the_app_whenever_the_node_starts() -> None:
    units = unit(cluster=HEAD).units()
    assert list(units) == [NODE_UNIT, APP_UNIT]
    node, app = directives(units[NODE_UNIT]), directives(units[APP_UNIT])
    assert node["ExecStart"] == [f'"{EXE}" cluster up --port 6379 --foreground --node-ip 10.0.0.1 --num-cpus 2 '
                                 '--token-file /var/lib/inhouse/cluster/auth_token --data-dir "/var/lib/inhouse"']
    assert node["Type"] == ["notify"] and node["Restart"] == ["always"] and node["StartLimitIntervalSec"] == ["0"]
    assert node["User"] == ["daemon"] and "PrivateTmp" not in node  # the app's driver needs Ray's sockets in /tmp
    assert int(node["TimeoutStopSec"][0]) > 30  # Ray drains for 30 s on SIGTERM
    assert app["ExecStart"] == [f'"{EXE}" serve --cluster 10.0.0.1:6379 --node-ip 10.0.0.1 '
                                '--data-dir "/var/lib/inhouse"']
    assert app["Type"] == ["oneshot"] and app["RemainAfterExit"] == ["yes"] and app["Restart"] == ["on-failure"]
    assert app["After"] == app["BindsTo"] == app["WantedBy"] == [NODE_UNIT]


def test_a_cluster_worker_runs_only_its_node() -> None:
    units = unit(cluster=WORKER).units()
    assert list(units) == [NODE_UNIT]
    node = directives(units[NODE_UNIT])
    assert node["ExecStart"] == [f'"{EXE}" cluster join 10.0.0.1:6379 --foreground --node-ip 10.0.0.2 '
                                 '--token-file "/etc/inhouse/ray token" --data-dir "/var/lib/inhouse"']
    assert node["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("cluster", [HEAD, WORKER], ids=["head", "worker"])
def test_systemd_accepts_the_cluster_units(tmp_path: Path, cluster: ClusterNode) -> None:
    paths = []
    for name, text in unit(cluster=cluster).units().items():
        paths.append(tmp_path / name)
        paths[-1].write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", *map(str, paths)], capture_output=True, text=True,
                          timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if "inhouse-" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("scope", ["system", "user"])
def test_systemd_accepts_the_unit(tmp_path: Path, scope: str) -> None:
    data = tmp_path / "data dir with 100% spaces"
    data.mkdir()
    path = tmp_path / "inhouse.service"
    path.write_text(unit(scope=scope, run_as="daemon" if scope == "system" else None, data_dir=data,
                         environment=(("INHOUSE_SERVER__PORT", "8001"),)).render())
    assert "EnvironmentFile=" in path.read_text()
    runtime = tmp_path / "run"  # a user manager needs its runtime directory, which a test session has not
    runtime.mkdir(mode=0o700)
    done = subprocess.run(["systemd-analyze", "verify", *(["--user"] if scope == "user" else []), str(path)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    problems = [line for line in (done.stdout + done.stderr).splitlines() if "inhouse.service" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify")
        s.bind(name)
    else:
        name = f"@inhouse-test-{os.getpid()}-{id(s)}"
        s.bind("\0" + name[1:])
    s.settimeout(2)
    yield s, name
    s.close()


def test_the_notifier_speaks_sd_notify(notify_socket: tuple[socket.socket, str]) -> None:
    s, name = notify_socket
    n = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "30000000"})
    assert n.enabled and n.watchdog_interval_s == 10.0
    n.status("loading qwen")
    n.ready("serving")
    n.watchdog()
    n.stopping()
    got = [s.recv(4096).decode() for _ in range(4)]
    assert got[0] == "STATUS=loading qwen"
    assert got[1].splitlines()[:2] == ["READY=1", "STATUS=serving"] and f"MAINPID={os.getpid()}" in got[1]
    assert got[2] == "WATCHDOG=1" and got[3].startswith("STOPPING=1")


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": "/nonexistent/socket"}])
def test_outside_systemd_or_with_systemd_gone_nothing_fails(env: dict[str, str]) -> None:
    n = Notifier(env)
    n.ready("serving")
    n.watchdog()
    assert n.watchdog_interval_s is None


def test_a_watchdog_meant_for_another_process_is_ignored() -> None:
    n = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert n.watchdog_interval_s is None
