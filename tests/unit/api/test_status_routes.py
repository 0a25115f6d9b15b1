"""/v1/status, the wake-up header and metric after an idle release (of a model, of the embedder), and tuned_profile
in /v1/models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.models.tuning.profile import TunedProfile
from inhouse.testing.standin_e5 import standin_e5

ServicesFactory = Any

TEMPLATE = "{% for m in messages %}{{ m.content }}\n{% endfor %}"
LEAVE = b"# Leave policy\n\nEmployees with 3 years of service get 18 days of annual leave.\n"


def test_status_wake_and_tuned_profile(make_services: ServicesFactory) -> None:
    services = make_services(settings={"models": {"default": "tiny", "idle_release_s": 300}},
                             models={"tiny": TEMPLATE}, preload=False)
    spec = services.registry.resolve("tiny")
    profiles, residency = services.profiles, services.residency
    assert spec.sha256 is not None
    profiles.save(TunedProfile(model="tiny", model_sha256=spec.sha256, cpu_signature=profiles.cpu_signature,
                               created_at="t", engine={"max_running": 4}))
    with TestClient(build_app(services), headers={"Authorization": f"Bearer {services.member_key}"}) as client:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        first = client.post("/v1/chat/completions", json=body)
        assert first.status_code == 200 and "x-inhouse-wake-ms" in first.headers  # cold start
        assert "x-inhouse-wake-ms" not in client.post("/v1/chat/completions", json=body).headers

        status = client.get("/v1/status").json()
        assert status["loaded"][0]["model"] == "tiny" and status["idle_release_s"] == 300
        assert status["idle_release_in_s"] is not None and status["rss_bytes"] > 0

        assert residency.release("manual") is not None
        assert client.get("/v1/status").json()["loaded"] == []
        woke = client.post("/v1/chat/completions", json=body)
        assert woke.status_code == 200 and int(woke.headers["x-inhouse-wake-ms"]) >= 0
        assert client.get("/v1/status").json()["wakes"] == 2
        assert 'inhouse_model_wake_seconds_count{model="tiny"} 2.0' in client.get("/metrics").text

        models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        assert models["tiny"]["tuned_profile"]["status"] == "applied"
        assert models["tiny"]["tuned_profile"]["engine"] == {"max_running": 4}
        assert client.get("/v1/status", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_status_reports_the_probe_and_each_model_s_weight_path(services: Any, tmp_path: Path) -> None:
    import dataclasses
    import json

    from inhouse.hardware.probe import HardwareProbe
    from inhouse.hardware.weights import resolve_weight_buffers
    from inhouse.testing.probe import fake_report

    probe = HardwareProbe(tmp_path / "hw", build_id=lambda: ("b1", "0.3.36"), cpu_signature=lambda: "cpu1")
    report = fake_report("amx_crashes")
    probe.cache_path().parent.mkdir(parents=True)
    probe.cache_path().write_text(json.dumps(report.to_dict()))
    services = dataclasses.replace(services, probe=probe)  # Services is frozen: a copy wired with this probe
    services.weight_choices["tiny"] = resolve_weight_buffers("auto", report)
    with TestClient(build_app(services), headers={"Authorization": f"Bearer {services.member_key}"}) as client:
        hw = client.get("/v1/status").json()["hardware"]
    assert hw["probed"] and hw["paths"] == {"amx": "crashed", "repack": "ok", "plain": "ok"}
    assert hw["amx"].startswith("AMX advertised but unusable here: general protection fault")
    assert hw["weight_buffers"]["tiny"]["value"] == "repack"
    assert "unusable here" in hw["weight_buffers"]["tiny"]["reason"]


def test_status_without_a_probe_says_so(services: Any) -> None:
    with TestClient(build_app(services), headers={"Authorization": f"Bearer {services.member_key}"}) as client:
        assert client.get("/v1/status").json()["hardware"] == {"probed": False, "weight_buffers": {}}


def test_idle_release_frees_the_embedder_and_a_search_wakes_it(tmp_path: Path) -> None:
    """After idle release the e5 embedder stayed loaded in the server while /v1/status said nothing was: now the
    release frees it, the status says so, and the next search loads it again, counted as a wake."""
    from inhouse.bootstrap import build_services
    from inhouse.testing.fakes import build_fake_engine
    from inhouse.testing.services import fake_settings

    emb, encoders = standin_e5(tmp_path)
    services = build_services(fake_settings(tmp_path / "data", {"models": {"idle_release_s": 300}}), embedder=emb,
                              load_engine=lambda spec: build_fake_engine(spec.name), catalog=())
    try:
        _, admin = services.keys.create_key("admin", role="admin")
        with TestClient(build_app(services), headers={"Authorization": f"Bearer {admin}"}) as client:
            col = client.post("/v1/collections", json={"name": "hr"}).json()
            up = client.post(f"/v1/collections/{col['id']}/documents",
                             files={"file": ("leave.md", LEAVE, "text/markdown")})
            assert up.status_code == 201, up.text
            assert client.get("/v1/status").json()["embedder"] == {
                "model": "multilingual-e5-small", "engine": "llama", "loaded": True, "busy": False,
                "idle_for_s": 0.0, "idle_release_in_s": 300.0}

            record = services.residency.release("idle")
            assert record is not None and record.models == ["multilingual-e5-small"] and encoders[0].closed
            status = client.get("/v1/status").json()
            assert status["loaded"] == [] and status["embedder"]["loaded"] is False

            hits = client.post("/v1/search", json={"query": "annual leave days"}).json()["data"]
            assert hits and "18 days" in hits[0]["text"]  # the search loaded it again
            status = client.get("/v1/status").json()
            assert status["embedder"]["loaded"] is True and len(encoders) == 2
            assert status["wakes"] == 2 and status["last_wake"]["model"] == "multilingual-e5-small"
            assert 'inhouse_model_wake_seconds_count{model="multilingual-e5-small"} 2.0' in client.get("/metrics").text
    finally:
        services.close()
