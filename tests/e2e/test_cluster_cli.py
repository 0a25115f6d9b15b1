"""`inhouse cluster up | join | status | down` and `inhouse serve --cluster` with real `ray start` nodes (two on
this machine), the real SmolLM2 replica, Ray token authentication, and every process gone after `down`."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from inhouse.cluster.local import free_port
from inhouse.cluster.nodes import read_record, temp_dir_of
from inhouse.cluster.processes import alive, descendants

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(600)]

BIN = str(Path(sys.executable).parent / "inhouse")


def run(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    head, worker = tmp_path / "head", tmp_path / "worker"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INHOUSE_", "RAY_"))}
    env["COLUMNS"] = "200"
    yield head, worker, env
    for d in (worker, head):  # whatever the test did: our nodes, by PID
        record = read_record(d)
        if record is not None and alive(record.pid):
            run("cluster", "down", "--data-dir", str(d), env=env)


def test_up_join_serve_status_down(machines: tuple[Path, Path, dict[str, str]]) -> None:
    head, worker, env = machines
    assert run("cluster", "down", "--data-dir", str(head), env=env).returncode == 3  # nothing started yet
    up = run("cluster", "up", "--data-dir", str(head), "--port", str(free_port()), "--num-cpus", "1", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    address = re.search(r"at (127\.0\.0\.2:\d+)", up.stdout)
    assert address, up.stdout
    token = head / "cluster" / "auth_token"
    assert token.stat().st_mode & 0o777 == 0o600
    again = run("cluster", "up", "--data-dir", str(head), env=env)
    assert again.returncode != 0 and "already running" in again.stderr
    joined = run("cluster", "join", address[1], "--token-file", str(token), "--data-dir", str(worker),
                 "--num-cpus", "1", env=env)
    assert joined.returncode == 0, joined.stdout + joined.stderr

    # Without the token a driver is refused.
    refused = subprocess.run([sys.executable, "-c", (
        "import ray, sys\n"
        f"try: ray.init(address='{address[1]}', _node_ip_address='127.0.0.1')\n"
        "except ConnectionError: sys.exit(7)\n")], env={**env, "RAY_USAGE_STATS_ENABLED": "0"},
        capture_output=True, text=True, timeout=120)
    assert refused.returncode == 7, refused.stderr[-500:]

    port = free_port()
    served = run("serve", "--cluster", address[1], "--model", "smollm2-135m", "--data-dir", str(head), "--port",
                 str(port), env=env)
    assert served.returncode == 0, served.stdout + served.stderr
    key = re.search(r"(ih_\S+)", served.stdout)
    assert key, served.stdout
    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers={"Authorization": f"Bearer {key[1]}"},
                   json={"model": "smollm2-135m", "messages": [{"role": "user", "content": "Say hi"}],
                         "max_tokens": 6}, timeout=180)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] > 0
    assert httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={}, timeout=30).status_code == 401
    # The knowledge base embeds with the real e5 in the Embedder deployment's replica.
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key[1]}"}
    col = httpx.post(base + "/v1/collections", headers=headers, json={"name": "hr"}, timeout=60).json()
    up = httpx.post(f"{base}/v1/collections/{col['id']}/documents", headers=headers, timeout=180, files={
        "file": ("leave.md", b"# Leave\n\nEmployees get 18 days of annual leave.\n", "text/markdown")})
    assert up.status_code == 201, up.text
    hits = httpx.post(base + "/v1/search", headers=headers, json={"query": "How much annual leave?"}, timeout=60)
    assert hits.status_code == 200 and "18 days" in hits.json()["data"][0]["text"], hits.text

    status = run("cluster", "status", "--data-dir", str(head), env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count("yes") == 2  # two machines alive
    assert "app: RUNNING" in status.stdout and re.search(r"smollm2-135m: HEALTHY, running 1", status.stdout)
    assert re.search(r"embedder: HEALTHY, running 1", status.stdout), status.stdout
    embedded = re.search(r"multilingual-e5-small\W+\w+\W+\w+\W+(\d+)\W+(\d+)\W+(\d+)", status.stdout)
    assert embedded and (int(embedded[2]), int(embedded[3])) == (up.json()["chunk_count"], 1), status.stdout

    pids = {d: [read_record(d).pid, *descendants(read_record(d).pid)] for d in (head, worker)}  # type: ignore[union-attr]
    for d in (worker, head):
        down = run("cluster", "down", "--data-dir", str(d), env=env)
        assert down.returncode == 0, down.stdout + down.stderr
    deadline = time.monotonic() + 20
    while any(alive(p) for ps in pids.values() for p in ps) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for ps in pids.values() for p in ps if alive(p)], "processes left after down"
    assert not [d for d in (head, worker) if temp_dir_of(d).exists()], "Ray's temp dirs left after down"


def _foreground(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """A node as its systemd unit runs it: `inhouse cluster up|join --foreground`, until it ends."""
    return subprocess.Popen([BIN, "cluster", *args, "--foreground"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _until_up(proc: subprocess.Popen[str], lines: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "node is up" in line:
            threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True).start()  # keep draining
            return
    raise AssertionError(f"the node ended before it was up (exit {proc.wait()}):\n{''.join(lines)[-2000:]}")


def test_a_node_run_in_the_foreground_rejoins_when_run_again_after_a_crash(
        machines: tuple[Path, Path, dict[str, str]]) -> None:
    """What `inhouse service install --cluster-head/--cluster-join` has systemd do: run each node in the foreground,
    and after a crash run the same command again, which rejoins the cluster with no other step."""
    head, worker, env = machines
    port = free_port()
    head_lines: list[str] = []
    head_node = _foreground("up", "--port", str(port), "--num-cpus", "1", "--data-dir", str(head), env=env)
    try:
        _until_up(head_node, head_lines)
        address = f"127.0.0.2:{port}"
        join = ("join", address, "--num-cpus", "1", "--token-file", str(head / "cluster" / "auth_token"),
                "--data-dir", str(worker))
        first = _foreground(*join, env=env)
        _until_up(first, [])
        record = read_record(worker)
        assert record is not None and record.pid == first.pid  # `down` and `status` know the node
        crashed = [first.pid, *descendants(first.pid)]
        for pid in crashed:  # the machine's node dies at once: an OOM kill of the whole unit
            os.kill(pid, signal.SIGKILL)
        assert first.wait(30) == -signal.SIGKILL
        second = _foreground(*join, env=env)  # systemd's Restart=always
        _until_up(second, [])
        deadline = time.monotonic() + 120  # the head takes a few health checks to count the killed node dead
        while True:
            status = run("cluster", "status", "--data-dir", str(head), env=env)
            assert status.returncode == 0, status.stdout + status.stderr
            rows = [line for line in status.stdout.splitlines() if " worker " in line or " head " in line]
            alive_rows = [r for r in rows if " yes " in r]
            if (len(rows), len(alive_rows)) == (3, 2) or time.monotonic() > deadline:
                break
            time.sleep(3)
        # The head and the worker, rejoined as a new node; the crashed one is listed dead.
        assert (len(rows), len(alive_rows)) == (3, 2), status.stdout
        down = run("cluster", "down", "--data-dir", str(worker), env=env)
        assert down.returncode == 0 and second.wait(60) == 0, down.stdout + down.stderr
    finally:
        if head_node.poll() is None:
            head_node.send_signal(signal.SIGTERM)  # systemd stopping the unit
    assert head_node.wait(90) == 0, "".join(head_lines)[-2000:]
    assert read_record(head) is None and not temp_dir_of(head).exists()
    leftovers = [p for p in crashed if alive(p)]
    assert not leftovers, leftovers


class Restarted:
    """A node under systemd's ``Restart=always``: its command run again ``delay_s`` after each exit, until ``stop``."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str], *, delay_s: float = 2.0) -> None:
        self.args, self.env, self.delay_s = args, env, delay_s
        self.runs: list[subprocess.Popen[str]] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            proc = _foreground(*self.args, env=self.env)
            self.runs.append(proc)
            for _ in proc.stdout or ():  # drained until it ends
                pass
            proc.wait()
            self._stopping.wait(self.delay_s)

    def stop(self, *, then: Callable[[], object]) -> None:
        """No more runs; ``then`` ends the current one (``cluster down``)."""
        self._stopping.set()
        then()
        self._thread.join(120)


def _alive_rows(head: Path, env: dict[str, str]) -> tuple[int, str]:
    status = run("cluster", "status", "--data-dir", str(head), env=env)
    rows = [line for line in status.stdout.splitlines() if " worker " in line or " head " in line]
    return len([r for r in rows if " yes " in r]), status.stdout + status.stderr


def test_a_head_that_crashes_serves_again_once_run_again_and_the_app_deployed_again(
        machines: tuple[Path, Path, dict[str, str]]) -> None:
    """What `inhouse service install --cluster-head/--cluster-join` has systemd do when the head machine's node dies:
    run the head's node again (`inhouse-node.service`, Restart=always) and deploy the app onto it again
    (`inhouse-app.service`, bound to the node); the worker's node, which ends once it has lost its head, is run again
    by its own unit until it rejoins. Ray keeps the cluster's state in the head's memory, so the app is gone with it;
    these commands bring it back with no other step, the same admin key works, and the request that was streaming
    when the head died is closed as interrupted in the audit log. (The worker gives up on a lost head after 5 s here,
    not Ray's default 60 s: `RAY_gcs_rpc_server_reconnect_timeout_s`.)"""
    from inhouse.config import Settings
    from inhouse.governance.audit import INTERRUPTED
    from inhouse.store.build import open_audit_log

    head, worker, env = machines
    port, http = free_port(), free_port()
    up = ("up", "--port", str(port), "--num-cpus", "1", "--data-dir", str(head))
    serve = ("serve", "--cluster", f"127.0.0.2:{port}", "--model", "smollm2-135m", "--data-dir", str(head),
             "--port", str(http))
    base = f"http://127.0.0.1:{http}"
    first = _foreground(*up, env=env)
    worker_unit: Restarted | None = None
    try:
        _until_up(first, [])
        worker_unit = Restarted(("join", f"127.0.0.2:{port}", "--num-cpus", "1", "--token-file",
                                 str(head / "cluster" / "auth_token"), "--data-dir", str(worker)),
                                {**env, "RAY_gcs_rpc_server_reconnect_timeout_s": "5"})
        deadline = time.monotonic() + 120
        while _alive_rows(head, env)[0] < 2 and time.monotonic() < deadline:
            time.sleep(2)
        served = run(*serve, env=env)
        assert served.returncode == 0, served.stdout + served.stderr
        key = re.search(r"(ih_\S+)", served.stdout)
        assert key, served.stdout
        auth = {"Authorization": f"Bearer {key[1]}"}
        body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Count from 1 to 500."}],
                "max_tokens": 400, "stream": True}
        crashed: list[int] = []
        with contextlib.suppress(httpx.HTTPError), httpx.stream(  # the connection just ends when the head dies
                "POST", base + "/v1/chat/completions", json=body, headers=auth, timeout=180) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: {") and not crashed:  # streaming: the head machine's node dies at once
                    crashed = [first.pid, *descendants(first.pid)]
                    for pid in crashed:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
        assert crashed and first.wait(30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    with contextlib.suppress(httpx.HTTPError):  # nothing answers on the API port now
        assert httpx.get(base + "/health", timeout=5).status_code != 200
    time.sleep(8)  # the head's machine reboots meanwhile: the worker's node gives up on it and ends

    second = _foreground(*up, env=env)  # systemd's Restart=always
    second_lines: list[str] = []
    try:
        _until_up(second, second_lines)
        again = run(*serve, env=env)  # inhouse-app.service, started again with the node it is bound to
        assert again.returncode == 0, again.stdout + again.stderr
        assert "ih_" not in again.stdout  # the data directory's admin key stands
        r2 = httpx.post(base + "/v1/chat/completions", headers=auth, timeout=180,
                        json={"model": "smollm2-135m", "messages": [{"role": "user", "content": "Say hi"}],
                              "max_tokens": 6})
        assert r2.status_code == 200 and r2.json()["usage"]["completion_tokens"] > 0, r2.text
        log = open_audit_log(Settings(data_dir=head))
        assert log is not None
        try:
            assert log.unfinished() == []
            closed = [rec for rec in log.iter_records() if rec.outcome == INTERRUPTED]
            assert len(closed) == 1 and closed[0].action == "chat:create", closed
            assert "stopped before the request finished" in (closed[0].reason or "")
            assert log.verify().ok
        finally:
            log.close()
        deadline = time.monotonic() + 120  # the worker's unit runs it again until the head answers: it rejoins
        nodes_up, status = _alive_rows(head, env)
        while nodes_up < 2 and time.monotonic() < deadline:
            time.sleep(3)
            nodes_up, status = _alive_rows(head, env)
        assert nodes_up == 2, status
        assert worker_unit is not None and len(worker_unit.runs) >= 2, "the worker's node never ended"
        leftovers = [p for p in crashed if alive(p)]
        assert not leftovers, leftovers
    finally:
        if worker_unit is not None:
            worker_unit.stop(then=lambda: run("cluster", "down", "--data-dir", str(worker), env=env))
        second.send_signal(signal.SIGTERM)  # systemd stopping the unit
    assert second.wait(90) == 0, "".join(second_lines)[-2000:]
    assert read_record(head) is None and not temp_dir_of(head).exists()
