"""Issue 11 wired end to end: the probe's verdict decides the weight path the engine child runs, and a native
crash of the served engine on an automatically chosen accelerated path demotes that path. The real wiring
(``build_services`` + ``build_llama_engine_factory`` + ``audit_crashes``) over a real child process whose fake
engine segfaults whenever it runs the CPU repack path, as llama.cpp's miscompiled AMX path did."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.bootstrap import audit_crashes, build_llama_engine_factory
from inhouse.governance.audit import ENGINE_CRASHED
from inhouse.hardware.weights import WeightDemotions
from inhouse.models.spec import ModelSpec
from inhouse.testing.fakes import build_fake_engine_in_child
from inhouse.testing.probe import fake_report
from inhouse.testing.services import FAKE_MODEL, build_fake_services

pytestmark = pytest.mark.timeout(60)


def served(tmp_path: Path, engine: dict[str, Any] | None = None) -> Iterator[tuple[TestClient, Any]]:
    holder: dict[str, Any] = {}

    def load(spec: ModelSpec) -> Any:
        return holder["factory"](spec)

    services = build_fake_services(tmp_path, settings={"engine": engine or {}}, load_engine=load)
    try:
        # This machine, as the probe saw it: no AMX, the CPU repack ran and agreed with plain.
        path = services.probe.cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(fake_report("no_amx").to_dict()))
        holder["factory"] = build_llama_engine_factory(
            services.settings, services.profiles, None, services.probe, services.weight_choices,
            on_crash=[audit_crashes(services.audit)], child_build=build_fake_engine_in_child,
            child_options={"reply": "fine", "crash_on_weight_buffers": ("amx", "repack")})
        _, key = services.keys.create_key("admin", role="admin")
        with TestClient(build_app(services), headers={"Authorization": f"Bearer {key}"}) as client:
            yield client, services
    finally:
        services.close()


@pytest.fixture
def auto(tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    yield from served(tmp_path)


def chat(content: str) -> dict[str, object]:
    return {"model": FAKE_MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 8}


def answer_after_restart(client: TestClient) -> Any:
    deadline = time.monotonic() + 30
    while (resp := client.post("/v1/chat/completions", json=chat("hello again"))).status_code != 200:
        assert resp.json()["error"]["code"] in ("engine_crashed", "model_unavailable", "unavailable"), resp.text
        assert time.monotonic() < deadline, resp.text
        time.sleep(0.1)
    return resp


def test_a_native_crash_on_the_auto_path_demotes_it_and_the_next_request_is_served(
        auto: tuple[TestClient, Any]) -> None:
    client, services = auto
    first = client.post("/v1/chat/completions", json=chat("hello"))
    assert first.status_code == 503 and first.json()["error"]["code"] == "engine_crashed"  # on repack
    again = answer_after_restart(client)
    assert again.json()["choices"][0]["message"]["content"] == "fine"  # on plain
    choice = client.get("/v1/status").json()["hardware"]["weight_buffers"][FAKE_MODEL]
    assert choice["value"] == "plain" and "crashed (SIGSEGV)" in choice["reason"]
    [record] = services.audit.records(action=ENGINE_CRASHED)
    assert record.reason == "SIGSEGV" and record.details["fallback"] is True
    assert (record.details["weight_buffers"], record.details["restart_weight_buffers"]) == ("repack", "plain")
    assert services.audit.verify().ok


def test_an_explicit_path_is_never_demoted(tmp_path: Path) -> None:
    gen = served(tmp_path, engine={"weight_buffers": "repack", "max_crashes": 2})
    client, services = next(gen)
    try:
        assert client.post("/v1/chat/completions", json=chat("hello")).status_code == 503
        deadline = time.monotonic() + 30
        while len(services.audit.records(action=ENGINE_CRASHED)) < 2:  # it restarted on repack and died again
            client.post("/v1/chat/completions", json=chat("again"))
            assert time.monotonic() < deadline
            time.sleep(0.1)
        records = services.audit.records(action=ENGINE_CRASHED)
        assert all(r.details["weight_buffers"] == "repack" and r.details["fallback"] is False for r in records)
        assert services.weight_choices[FAKE_MODEL].value == "repack"
    finally:
        gen.close()


def test_demotions_mark_the_path_and_what_carries_it_as_crashed() -> None:
    d = WeightDemotions()
    report = fake_report("amx_works")
    assert d.apply("m", report) is report
    assert not d.demote("m", "plain", "x")
    assert d.demote("m", "repack", "crashed here")
    seen = d.apply("m", report)
    assert {p: r.status for p, r in seen.paths.items()} == {"amx": "crashed", "repack": "crashed", "plain": "ok"}
    assert seen.paths["repack"].detail == "crashed here" and report.paths["repack"].ok  # the probe's own is kept
    assert d.apply("other", report) is report
    d2 = WeightDemotions()
    d2.demote("m", "amx", "amx died")
    assert {p: r.status for p, r in d2.apply("m", report).paths.items()}["repack"] == "ok"
