"""A live `inhouse serve` on SmolLM2 whose engine child is killed mid-stream, with SIGKILL and with SIGSEGV:
the stream ends with an error event, /ready goes false then true, the next request answers, the crash is in the
audit log (which still verifies) and in /metrics, and nothing hangs (every wait has a timeout)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from served import serving
from test_real_server import SMOL, cli

from inhouse.hardware.cpu import descendant_pids

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


class Server:
    def __init__(self, proc: subprocess.Popen[str], url: str, key: str, data_dir: Path) -> None:
        self.proc, self.url, self.key, self.data_dir = proc, url, key, data_dir
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def engine_pid(self) -> int:
        for pid in descendant_pids(self.proc.pid):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"inhouse.engine.worker" in f.read():
                    return pid
        raise AssertionError("no engine child under the server")

    def ready(self) -> int:
        return self.http.get("/ready").status_code


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("crash-data")
    made = cli(data_dir, "keys", "create", "--name", "tests", "--role", "admin")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1].strip()
    env = {**os.environ, "INHOUSE_DATA_DIR": str(data_dir)}
    with (data_dir / "serve.log").open("w") as log, serving(env, SMOL, log=log) as (proc, url):
        srv = Server(proc, url, key, data_dir)
        try:
            yield srv
        finally:
            srv.http.close()


def chat(content: str, **extra: object) -> dict[str, object]:
    return {"model": SMOL, "messages": [{"role": "user", "content": content}], "temperature": 0, **extra}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV], ids=["SIGKILL", "SIGSEGV"])
def test_killing_the_engine_mid_stream(server: Server, sig: signal.Signals) -> None:
    pid = server.engine_pid()
    events: list[str] = []
    states: list[int] = []
    body = chat("Count from one to one thousand in words, one number per line.", stream=True, max_tokens=2000)
    with server.http.stream("POST", "/v1/chat/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        for line in lines:  # a few tokens first: the request is decoding in the child
            if line.startswith("data: "):
                events.append(line[6:])
            if len(events) >= 5:
                break
        os.kill(pid, sig)
        events += [line[6:] for line in lines if line.startswith("data: ")]
    error = json.loads(events[-1])["error"]
    assert error["code"] == "engine_crashed" and sig.name in error["message"], events[-1]
    assert "[DONE]" not in events

    # /ready: false while the engine restarts, then true again.
    deadline = time.monotonic() + 60
    while (status := server.ready()) != 200 or 503 not in states:
        states.append(status)
        assert time.monotonic() < deadline, f"/ready went {states[:5]}…{states[-5:]}"
        time.sleep(0.02)
    assert server.engine_pid() != pid

    reply = server.http.post("/v1/chat/completions", json=chat("What is the capital of France? One word.",
                                                                max_tokens=8))
    assert reply.status_code == 200 and "paris" in reply.json()["choices"][0]["message"]["content"].lower()

    verified = cli(server.data_dir, "audit", "verify", timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    exported = cli(server.data_dir, "audit", "export", "--since", "1h", timeout=60)
    crashes = [r for r in map(json.loads, exported.stdout.splitlines()) if r["action"] == "engine.crashed"]
    assert crashes and crashes[-1]["reason"] == sig.name and crashes[-1]["model"] == SMOL
    # A native crash (SIGSEGV) on the accelerated path the probe chose demotes it; SIGKILL says nothing about it.
    ran, restarted = crashes[-1]["details"]["weight_buffers"], crashes[-1]["details"]["restart_weight_buffers"]
    assert (restarted != ran) == (sig == signal.SIGSEGV and ran != "plain"), crashes[-1]["details"]
    status = server.http.get("/v1/status").json()["hardware"]["weight_buffers"][SMOL]
    assert status["value"] == restarted
    metrics = server.http.get("/metrics").text
    assert f'inhouse_engine_crashes_total{{model="{SMOL}",signal="{sig.name}"}} 1.0' in metrics
