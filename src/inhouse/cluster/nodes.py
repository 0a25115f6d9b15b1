"""Machines joining and leaving the cluster: ``inhouse cluster up`` / ``join`` / ``down``, and connecting a driver.

A node is one ``ray start --block`` process of ours, started in its own session; its PID and the PID's start time
(and the address, the token file and the log) are kept in ``<data_dir>/cluster/node.json`` and ``down`` stops that
process and its descendants by PID (``processes.stop_tree``), never with ``ray stop``. ``run_node``
(``--foreground``, what a systemd unit runs) keeps ``ray start --block`` as its child instead and records its own PID.

node.json outlives its node (a reboot, a SIGKILLed foreground node) and the PID is then reused by another process,
so a PID counts as our node only while it has the start time recorded with it (``node_running``); ``down`` signals
nothing else and ``up``/``join`` take such a record as stale. A record written before the start time was kept has
only the PID: it counts while that process's command line is ``ray start`` or ``inhouse cluster`` (the only two
processes a record names).

Security defaults: Ray's token authentication is on (``RAY_AUTH_MODE=token``): ``up`` writes a random token to
``<data_dir>/cluster/auth_token`` (mode 0600) and every node and driver must present it (``join --token-file``).
Ray's ports listen on every interface; the token is what keeps strangers out, and the HTTP API still binds
``server.host`` (127.0.0.1 unless told otherwise).

Machine facts baked in: no usage statistics; on one machine a node joins and a driver connects through
``127.0.0.2:PORT`` with node address 127.0.0.1, because Ray replaces a 127.0.0.1 address by the outbound one (and
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which stops that in a one-process cluster, refuses a second node here).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from inhouse.cluster.app import INGRESS_RESOURCE, NODE_RESOURCE
from inhouse.cluster.local import free_port
from inhouse.cluster.processes import alive, stop_tree
from inhouse.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound, Unavailable
from inhouse.governance.process import started_at

READY_LINE = "Ray runtime started"
# Seconds to wait for the head's port to accept a TCP connection before ``connect`` gives up: Ray itself retries an
# unreachable GCS about 20 times 40 s (14 minutes) before it says so.
REACH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class NodeRecord:
    """What ``up``/``join`` leave in ``node.json`` for ``status`` and ``down``."""

    role: str  # head | worker
    pid: int  # the ray start --block process; the node's daemons are its descendants
    address: str  # the cluster's address as drivers and other nodes use it
    node_ip: str
    token_file: str | None
    log_file: str
    start: int | None = None  # when ``pid`` started (governance.process.started_at): our node, not a later PID


def cluster_dir(data_dir: Path) -> Path:
    return data_dir / "cluster"


def default_token_file(data_dir: Path) -> Path:
    return cluster_dir(data_dir) / "auth_token"


def ensure_token(path: Path) -> Path:
    """A random token in ``path`` (mode 0600), created once."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path


def ray_env(token_file: Path | None) -> dict[str, str]:
    """The variables every Ray process of ours (node or driver) of a ``ray start`` cluster runs with (not
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: that one refuses a second node; addresses are given explicitly)."""
    env = {"RAY_USAGE_STATS_ENABLED": "0"}
    if token_file is not None:
        env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)})
    return env


def read_record(data_dir: Path) -> NodeRecord | None:
    path = cluster_dir(data_dir) / "node.json"
    if not path.exists():
        return None
    return NodeRecord(**json.loads(path.read_text(encoding="utf-8")))


def temp_dir_of(data_dir: Path) -> Path:
    # Ray puts Unix sockets under its temp dir: keep the path short (a socket path has at most 107 bytes).
    digest = hashlib.blake2b(str(data_dir.resolve()).encode(), digest_size=4).hexdigest()
    return Path(tempfile.gettempdir()) / f"inhouse-ray-{os.getuid()}-{digest}"


def node_running(record: NodeRecord) -> bool:
    """Whether the process ``record`` names is still our node, not a later process that got its PID (module doc)."""
    if not alive(record.pid):
        return False
    if record.start is not None:
        return started_at(record.pid) == record.start
    try:  # a record without the start time: trust a command line that can only be a node's
        argv = Path(f"/proc/{record.pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    names = [Path(arg).name for arg in argv]
    return any(pair in (("ray", "start"), ("inhouse", "cluster")) for pair in itertools.pairwise(names))


def _ray_start(data_dir: Path, *, head: bool, address: str | None, port: int, node_ip: str, num_cpus: int | None,
               token_file: Path | None) -> tuple[list[str], dict[str, str]]:
    """The ``ray start --block`` command line and environment of this machine's node, after the checks."""
    existing = read_record(data_dir)
    if existing is not None and existing.pid != os.getpid() and node_running(existing):
        raise Conflict(f"A {existing.role} node of this data directory is already running (pid {existing.pid}); "
                       "run `inhouse cluster down` first.")
    if not head and not address:
        raise InvalidRequest("Joining needs the head's ADDRESS (host:port).")
    cluster_dir(data_dir).mkdir(parents=True, exist_ok=True)
    if token_file is not None and not token_file.is_file():
        raise NotFound(f"No token file at {token_file}; copy the head's {default_token_file(data_dir).name}.")
    resources = {NODE_RESOURCE: 1.0, **({INGRESS_RESOURCE: 1.0} if head else {})}
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--block", f"--node-ip-address={node_ip}",
           "--disable-usage-stats", f"--resources={json.dumps(resources)}",
           f"--temp-dir={temp_dir_of(data_dir)}"]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    if head:
        cmd += ["--head", f"--port={port}", "--include-dashboard=false", f"--dashboard-port={free_port()}"]
    else:
        cmd.append(f"--address={address}")
    return cmd, {**os.environ, **ray_env(token_file), "INHOUSE_DATA_DIR": str(data_dir)}


def advertised_address(node_ip: str, port: int) -> str:
    """The head's address as the other nodes and drivers use it (on one machine, 127.0.0.2: module doc)."""
    return f"{'127.0.0.2' if node_ip == '127.0.0.1' else node_ip}:{port}"


def _record(data_dir: Path, pid: int, *, head: bool, address: str | None, port: int, node_ip: str,
            token_file: Path | None, log_file: str) -> NodeRecord:
    advertised = address or advertised_address(node_ip, port)
    # Absolute: status and serve --cluster may run from another directory than the one `join --token-file` was typed in.
    record = NodeRecord("head" if head else "worker", pid, advertised, node_ip,
                        str(token_file.resolve()) if token_file else None, log_file, started_at(pid))
    (cluster_dir(data_dir) / "node.json").write_text(json.dumps(asdict(record), indent=2), encoding="utf-8")
    return record


def start_node(data_dir: Path, *, head: bool, address: str | None = None, port: int = 6379,
               node_ip: str = "127.0.0.1", num_cpus: int | None = None, token_file: Path | None = None,
               ready_timeout_s: float = 120.0) -> NodeRecord:
    """Start this machine's Ray node (the head, or a worker joining ``address``) in the background."""
    cmd, env = _ray_start(data_dir, head=head, address=address, port=port, node_ip=node_ip, num_cpus=num_cpus,
                          token_file=token_file)
    log_file = cluster_dir(data_dir) / "ray-start.log"
    with open(log_file, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + ready_timeout_s
    while READY_LINE not in log_file.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                stop_tree(proc.pid)
            tail = log_file.read_text(errors="replace")[-1500:]
            raise Unavailable(f"The Ray node did not start (log {log_file}):\n{tail}")
        time.sleep(0.3)
    return _record(data_dir, proc.pid, head=head, address=address, port=port, node_ip=node_ip,
                   token_file=token_file, log_file=str(log_file))


def run_node(data_dir: Path, *, head: bool, address: str | None = None, port: int = 6379,
             node_ip: str = "127.0.0.1", num_cpus: int | None = None, token_file: Path | None = None,
             on_ready: Callable[[NodeRecord], None] = lambda record: None) -> int:
    """Run this machine's Ray node in the foreground, as a process supervisor (systemd) wants it: Ray's output on
    ours, ``on_ready`` once the node is up (the unit's ``READY=1``), and back when the node ends, with its exit
    status (a node whose Ray processes died is restarted by the supervisor, which reruns this). SIGTERM (the
    supervisor stopping the unit) stops the node as ``cluster down`` does. The record names this process, so
    ``cluster down`` and ``status`` work on a node run so too."""
    cmd, env = _ray_start(data_dir, head=head, address=address, port=port, node_ip=node_ip, num_cpus=num_cpus,
                          token_file=token_file)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()
        stop_tree(proc.pid, timeout_s=15.0)

    previous = signal.signal(signal.SIGTERM, stop)
    record: NodeRecord | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # Ray's own lines, to our output (the journal under systemd)
            sys.stdout.write(line)
            sys.stdout.flush()
            if record is None and READY_LINE in line:
                record = _record(data_dir, os.getpid(), head=head, address=address, port=port, node_ip=node_ip,
                                 token_file=token_file, log_file="(the output of the process that runs the node)")
                on_ready(record)
        code = proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            stop_tree(proc.pid, timeout_s=15.0)
        shutil.rmtree(temp_dir_of(data_dir), ignore_errors=True)
        if record is not None:
            (cluster_dir(data_dir) / "node.json").unlink(missing_ok=True)
    return 0 if stopping.is_set() else (code or 1)


def stop_node(data_dir: Path) -> NodeRecord:
    """Stop this data directory's node: our ``ray start`` process and its descendants, by PID (only while the PID is
    still our node's: ``node_running``; a stale record is just removed); then remove Ray's temporary directory of the
    node (session logs, sockets)."""
    record = read_record(data_dir)
    if record is None:
        raise NotFound(f"No node was started from {data_dir} (no {cluster_dir(data_dir) / 'node.json'}).")
    if node_running(record):
        stop_tree(record.pid, timeout_s=15.0)
    shutil.rmtree(temp_dir_of(data_dir), ignore_errors=True)
    (cluster_dir(data_dir) / "node.json").unlink(missing_ok=True)  # a foreground node removes it itself
    return record


def check_token_file(token_file: Path | None) -> None:
    """``NotFound`` naming ``token_file`` unless it can be read (Ray would fail later with a traceback of its own)."""
    if token_file is None:
        return
    try:
        with open(token_file, "rb"):
            pass
    except OSError as exc:
        raise NotFound(f"Cannot read the cluster's token file {token_file} ({exc.strerror}): copy the head's "
                       f"<data-dir>/cluster/auth_token here and pass it with --token-file.") from exc


def check_reachable(address: str, *, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """``Unavailable`` at once when nothing accepts a TCP connection at ``address`` (host:port) within ``timeout_s``.
    Other address forms (``auto``, ``ray://``) are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or "/" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        why = f"no answer within {timeout_s:g} s" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise Unavailable(f"Cannot reach the cluster at {address} ({why}). Is the head up (`inhouse cluster up`), "
                          "and are the address and port right?") from exc


def connect(address: str, *, node_ip: str = "127.0.0.1", token_file: Path | None = None) -> None:
    """Connect this process to the cluster as a driver (``serve --cluster``, ``cluster status``): the token file is
    checked first (``NotFound``), then that the head's port answers (``Unavailable`` within seconds), then Ray
    connects; a token the cluster refuses is ``AuthenticationFailed``."""
    check_token_file(token_file)
    check_reachable(address)
    os.environ.update(ray_env(token_file.resolve() if token_file else None))  # before Ray is imported: read once
    import ray
    from ray.exceptions import AuthenticationError

    try:
        ray.init(address=address, _node_ip_address=node_ip, logging_level=logging.WARNING, log_to_driver=False)
    except AuthenticationError as exc:
        raise AuthenticationFailed(f"The cluster at {address} refused this driver's token ({token_file}): use the "
                                   f"head's auth_token. Ray said: {exc}") from exc
    except (ConnectionError, RuntimeError) as exc:
        raise Unavailable(f"Cannot reach the cluster at {address}: {exc}") from exc
