"""/v1/models reports a tuned profile's status as serve applies it: a valid profile of this CPU whose
re-quantized weights are gone, or whose values do not fit this server's settings, is not "applied"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.models.tuning.profile import TunedProfile, WeightsVariant
from inhouse.testing.gguf_writer import write_tiny_model

TEMPLATE = "{% for m in messages %}{{ m.content }}\n{% endfor %}"


def test_a_missing_variant_or_a_misfit_is_not_applied(make_services: Any, tmp_path: Path) -> None:
    services = make_services(settings={"models": {"default": "tiny"}, "engine": {"step_token_budget": 16,
                                                                                 "max_running": 8}},
                             models={"tiny": TEMPLATE}, preload=False)
    registry, profiles = services.registry, services.profiles
    sha = registry.resolve("tiny").sha256
    vsha = registry.add(write_tiny_model(tmp_path / "q8.gguf", context_length=4096), "tiny@q8_0").sha256

    def save(**engine: int) -> None:
        profiles.save(TunedProfile(model="tiny", model_sha256=sha, cpu_signature=profiles.cpu_signature,
                                   created_at="t", engine={"n_threads": 1, **engine},
                                   weights=WeightsVariant(name="tiny@q8_0", sha256=vsha, format="q8_0")))

    save()
    with TestClient(build_app(services), headers={"Authorization": f"Bearer {services.member_key}"}) as client:
        def status() -> Any:
            entry = {m["id"]: m for m in client.get("/v1/models").json()["data"]}["tiny"]["tuned_profile"]
            assert entry["weights"] == "tiny@q8_0"
            return entry["status"]

        assert status() == "applied"
        registry.remove("tiny@q8_0")
        assert status() == "variant_missing"
        assert client.get("/v1/models/tiny").json()["tuned_profile"]["status"] == "variant_missing"
        registry.add(tmp_path / "q8.gguf", "tiny@q8_0")
        save(max_running=32)  # more sequences than this server's 16-token step budget feeds
        assert status() == "does_not_fit"
