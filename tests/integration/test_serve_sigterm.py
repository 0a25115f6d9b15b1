"""SIGTERM (systemd stopping the unit) with generations running: each ends as a crash would end it, a stream with
its final SSE error event and a non-streamed request with a 503, and each writes its final audit record before the
server exits. uvicorn cancelled them when its 5 s grace ran out: streams were cut mid-body, the non-streamed request
got no answer at all, and their records stayed ``started`` until some later ``serve`` closed them as interrupted."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from inhouse.governance.audit import STARTED
from inhouse.store.sqlite.audit import open_sqlite_audit_log
from inhouse.testing.server_process import ServerProcess, create_admin_key

pytestmark = [pytest.mark.integration]

LONG = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Write a very long story."}],
        "max_tokens": 4000, "temperature": 1.0, "seed": 7}


def test_sigterm_ends_running_generations_with_an_error_and_their_audit_records(tmp_path: Path) -> None:
    key = create_admin_key(tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    outcome: dict[str, str] = {}
    started = threading.Event()

    def stream(server: ServerProcess) -> None:
        last = ""
        with httpx.stream("POST", server.url + "/v1/chat/completions", json={**LONG, "stream": True},
                          headers=headers, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    started.set()
                    last = line
        outcome["stream"] = last

    def plain(server: ServerProcess) -> None:
        r = httpx.post(server.url + "/v1/chat/completions", json=LONG, headers=headers, timeout=60)
        outcome["plain"] = f"{r.status_code} {r.json().get('error', {}).get('code')}"

    server = ServerProcess(tmp_path, "smollm2-135m").start()
    threads = [threading.Thread(target=f, args=(server,)) for f in (stream, plain)]
    try:
        for t in threads:
            t.start()
        assert started.wait(60)
        time.sleep(0.5)  # both generating
        t0 = time.monotonic()
        # uvicorn raised the SIGTERM again once it had stopped: the process died with -15 before `serve` closed
        # its services (kept audit records, parse workers, databases) and said "stopped"
        assert server.stop() == 0, server.log_tail()
        assert time.monotonic() - t0 < 10
        assert server.log_tail().rstrip().endswith("stopped"), server.log_tail()
    finally:
        server.kill()
        for t in threads:
            t.join(30)
    assert json.loads(outcome["stream"].removeprefix("data: "))["error"]["code"] == "model_unloaded", outcome
    assert outcome["plain"] == "503 model_unloaded", outcome
    log = open_sqlite_audit_log(tmp_path / "audit.db")
    try:
        chats = [r for r in log.records(kind="request") if r.action == "chat:create"]
        finals = [(r.outcome, r.reason) for r in chats if r.outcome != STARTED]
        # both end as errors: the stream's 200 went out before it failed, and its record says so (not "success")
        assert len(chats) == 4 and finals == [("error", "model_unloaded")] * 2, [(r.outcome, r.reason) for r in chats]
        assert log.verify().ok
    finally:
        log.close()
