"""A stopping cluster ingress fails what still runs (``cluster/ingress.py``): its engines are ``DrainedEngine`` s
over the model replicas, and its ``Drain`` ends each live stream with its final SSE error event (``shutting_down``)
and its final audit record (``error``), as a stopping ``inhouse serve`` does; a request arriving after that is a
503. Unloading a model in the ingress (idle release, eviction) ends no stream. Here over the fake engine, without
Ray."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.cluster.ingress import Drain, DrainedEngine, drained
from inhouse.governance.audit import STARTED
from inhouse.testing.fakes import build_fake_engine
from inhouse.testing.services import build_fake_services

MODEL = "fake-model"


def test_closing_ends_a_live_stream_with_its_error_event_and_record(tmp_path: Path) -> None:
    drain = Drain()
    s = build_fake_services(tmp_path, load_engine=drained(
        lambda spec: build_fake_engine(spec.name, delay_s=0.02, script={"story": "word " * 300}), drain))
    try:
        key = s.keys.ensure_admin_key()
        assert isinstance(s.registry.get_engine(MODEL), DrainedEngine)
        app = build_app(s)
        lines: list[str] = []
        with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
            body = {"model": MODEL, "messages": [{"role": "user", "content": "story"}], "max_tokens": 300,
                    "stream": True}
            with client.stream("POST", "/v1/chat/completions", json=body) as r:
                for line in r.iter_lines():
                    lines.append(line)
                    if len(lines) == 3:  # a few tokens out: the ingress is told to stop (Ingress._watch_stop)
                        drain.stop()
                        s.registry.close()
            events = [json.loads(x.removeprefix("data: ")) for x in lines if x.startswith("data: {")]
            assert events[-1]["error"]["code"] == "shutting_down", lines[-3:]
            assert len(events) < 100  # not the whole answer
            after = client.post("/v1/chat/completions", json={**body, "stream": False})
            assert after.status_code == 503 and after.json()["error"]["code"] == "shutting_down"
        final = [r for r in s.audit.records(kind="request") if r.action == "chat:create" and r.outcome != STARTED]
        assert (final[0].outcome, final[0].reason) == ("error", "shutting_down")
        assert s.audit.unfinished() == []
    finally:
        s.close()


def test_unloading_a_model_in_the_ingress_ends_no_stream(tmp_path: Path) -> None:
    s = build_fake_services(tmp_path, load_engine=drained(
        lambda spec: build_fake_engine(spec.name, delay_s=0.01, script={"story": "word " * 40}), Drain()))
    try:
        key = s.keys.ensure_admin_key()
        with TestClient(build_app(s), headers={"Authorization": f"Bearer {key}"}) as client:
            body = {"model": MODEL, "messages": [{"role": "user", "content": "story"}], "max_tokens": 60,
                    "stream": True}
            with client.stream("POST", "/v1/chat/completions", json=body) as r:
                lines = []
                for line in r.iter_lines():
                    lines.append(line)
                    if len(lines) == 3:
                        assert s.registry.unload(MODEL)  # as idle release or an eviction would
            assert "data: [DONE]" in lines
            assert not any('"error"' in x for x in lines)
    finally:
        s.close()
