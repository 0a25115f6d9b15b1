"""What a client sees when a model's engine process dies: a 503 in the one error shape (non-streamed), a final
SSE error event (streamed), ``/ready`` false until the engine is back, the next request served, and the crash
counted in ``/metrics`` and recorded in the audit log. The real wiring (``build_services``) over a real
``ProcessEngine`` whose fake model segfaults on a marker; the crash hook is bootstrap's ``audit_crashes``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.bootstrap import audit_crashes
from inhouse.config import EngineSettings
from inhouse.engine.process import EngineCrash, EngineRecipe, ProcessEngine, RestartPolicy
from inhouse.governance.audit import ENGINE_CRASHED
from inhouse.models.spec import ModelSpec
from inhouse.testing.fakes import build_fake_engine_in_child
from inhouse.testing.services import FAKE_MODEL, build_fake_services

pytestmark = pytest.mark.timeout(60)
MODEL = FAKE_MODEL


@pytest.fixture
def wired(tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    holder: dict[str, Any] = {}

    def record(crash: EngineCrash) -> None:
        audit_crashes(holder["services"].audit)(crash)

    def load(spec: ModelSpec) -> ProcessEngine:
        # A restart slow enough (backoff) that /ready is seen false, short enough for a unit test.
        return ProcessEngine(EngineRecipe(spec.name, spec.path, EngineSettings(), 2048,
                                          {"reply": "fine, thanks", "crash_marker": "CRASH", "delay_s": 0.01},
                                          build=build_fake_engine_in_child),
                             policy=RestartPolicy(backoff_s=0.4, wait_s=20), on_crash=[record])

    services = holder["services"] = build_fake_services(tmp_path, load_engine=load)
    try:
        _, key = services.keys.create_key("admin", role="admin")
        with TestClient(build_app(services), headers={"Authorization": f"Bearer {key}"}) as c:
            yield c, services
    finally:
        services.close()


@pytest.fixture
def crashy(wired: tuple[TestClient, Any]) -> TestClient:
    return wired[0]


def chat(content: str, **extra: object) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 32, **extra}


def wait_ready(client: TestClient, want: int) -> None:
    deadline = time.monotonic() + 20
    while client.get("/ready").status_code != want:
        assert time.monotonic() < deadline, f"/ready never answered {want}"
        time.sleep(0.02)


def crash_count(client: TestClient) -> float:
    text = client.get("/metrics").text
    line = next((x for x in text.splitlines()
                 if x.startswith(f'inhouse_engine_crashes_total{{model="{MODEL}",signal="SIGSEGV"}}')), None)
    return float(line.split()[-1]) if line else 0.0


def test_a_non_streamed_request_gets_503_in_the_error_shape_and_the_next_one_is_served(crashy: TestClient) -> None:
    assert crashy.post("/v1/chat/completions", json=chat("hello")).status_code == 200
    resp = crashy.post("/v1/chat/completions", json=chat("please CRASH"))
    assert resp.status_code == 503
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert (error["type"], error["code"]) == ("server_error", "engine_crashed") and "SIGSEGV" in error["message"]
    wait_ready(crashy, 503)
    wait_ready(crashy, 200)
    again = crashy.post("/v1/chat/completions", json=chat("hello again"))
    assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"] == "fine, thanks"
    assert crash_count(crashy) == 1
    assert f'inhouse_engine_healthy{{model="{MODEL}"}} 1.0' in crashy.get("/metrics").text


def test_the_crash_is_audited_and_the_log_still_verifies(wired: tuple[TestClient, Any]) -> None:
    client, services = wired
    assert client.post("/v1/chat/completions", json=chat("CRASH")).status_code == 503
    wait_ready(client, 200)
    [record] = services.audit.records(action=ENGINE_CRASHED)
    assert (record.kind, record.model, record.outcome, record.reason) == ("security", MODEL, "failure", "SIGSEGV")
    assert record.details["in_flight"] == 1 and record.details["restarting"] is True
    assert services.audit.verify().ok


def test_a_stream_ends_with_an_error_event(wired: tuple[TestClient, Any]) -> None:
    crashy, services = wired
    with crashy.stream("POST", "/v1/chat/completions", json=chat("CRASH me", stream=True)) as resp:
        assert resp.status_code == 200
        events = [line.removeprefix("data: ") for line in resp.iter_lines() if line.startswith("data: ")]
    last = json.loads(events[-1])
    assert last["error"]["code"] == "engine_crashed" and "Retry" in last["error"]["message"]
    assert "[DONE]" not in events
    # its 200 went out before it failed: the record says it failed all the same (it said "success")
    final = [r for r in services.audit.records(kind="request") if r.action == "chat:create" and r.outcome != "started"]
    assert [(r.outcome, r.reason) for r in final] == [("error", "engine_crashed")]
    wait_ready(crashy, 200)
    with crashy.stream("POST", "/v1/chat/completions", json=chat("and now", stream=True)) as resp:
        text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "")
                       for e in (line.removeprefix("data: ") for line in resp.iter_lines() if line.startswith("data: "))
                       if e != "[DONE]")
    assert text == "fine, thanks"


def test_requests_during_a_restart_get_503_at_once_and_ready_says_so(tmp_path: Path) -> None:
    # The restart is held by the before_restart hook until the test releases it. Requests arriving meanwhile used to
    # wait for it on a worker thread each; enough of them took every thread and /ready hung until the restart ended.
    release = threading.Event()

    def load(spec: ModelSpec) -> ProcessEngine:
        return ProcessEngine(EngineRecipe(spec.name, spec.path, EngineSettings(), 2048,
                                          {"reply": "fine", "crash_marker": "CRASH"}, build=build_fake_engine_in_child),
                             policy=RestartPolicy(backoff_s=0.05, wait_s=3),
                             before_restart=lambda crash: release.wait(30) and None)

    services = build_fake_services(tmp_path, load_engine=load)
    try:
        _, key = services.keys.create_key("admin", role="admin")
        with TestClient(build_app(services), headers={"Authorization": f"Bearer {key}"}) as c:
            assert c.post("/v1/chat/completions", json=chat("CRASH")).status_code == 503
            t0 = time.monotonic()
            during = [c.post("/v1/chat/completions", json=chat("retry")) for _ in range(3)]
            ready = c.get("/ready").status_code
            elapsed = time.monotonic() - t0
            release.set()
            assert [(r.status_code, r.json()["error"]["code"]) for r in during] == [(503, "engine_crashed")] * 3
            assert all(r.headers["Retry-After"] == "5" for r in during)  # when a retry will likely be served
            assert ready == 503 and elapsed < 2
            wait_ready(c, 200)
            again = c.post("/v1/chat/completions", json=chat("hello again"))
            assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"] == "fine"
    finally:
        release.set()
        services.close()
