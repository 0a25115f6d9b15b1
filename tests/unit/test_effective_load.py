"""``bootstrap.engine_settings_for`` is the one computation of what a model loads with: the engine factory,
the registry's memory estimate and the benchmarks all read it, so a tuned profile and the probe's weight-path
verdict reach each of them alike."""

from __future__ import annotations

import json
from pathlib import Path

from inhouse.bootstrap import build_footprint_estimator, engine_settings_for
from inhouse.config import Settings
from inhouse.hardware.probe import HardwareProbe
from inhouse.models.footprint import estimate_footprint, model_shape
from inhouse.models.gguf import read as g
from inhouse.models.gguf.read import read_gguf_header
from inhouse.models.spec import ModelSpec
from inhouse.models.tuning.profile import ProfileStore, TunedProfile
from inhouse.testing.gguf_writer import Typed, tiny_model_kv, write_gguf
from inhouse.testing.probe import fake_report

SHA = "c" * 64


def tiny_gguf(path: Path) -> Path:
    kv = tiny_model_kv()
    kv.update({"llama.block_count": Typed(g.UINT32, 2), "llama.embedding_length": Typed(g.UINT32, 128),
               "llama.attention.head_count": Typed(g.UINT32, 4), "llama.attention.head_count_kv": Typed(g.UINT32, 2),
               "llama.feed_forward_length": Typed(g.UINT32, 256)})
    n_vocab = len(kv["tokenizer.ggml.tokens"])
    return write_gguf(path, kv, {"token_embd.weight": ((128, n_vocab), "Q8_0")})  # type: ignore[dict-item]


def probe_answering(tmp_path: Path, scenario: str) -> HardwareProbe:
    probe = HardwareProbe(tmp_path / "hw", build_id=lambda: ("b1", "0.3.36"), cpu_signature=lambda: "cpu1",
                          run_child=lambda *a, **k: (_ for _ in ()).throw(AssertionError("must not probe")))
    probe.cache_path().parent.mkdir(parents=True)
    probe.cache_path().write_text(json.dumps(fake_report(scenario).to_dict()))
    return probe


def test_profile_context_and_probe_verdict_reach_serving_and_the_memory_estimate(tmp_path: Path) -> None:
    path = tiny_gguf(tmp_path / "m.gguf")
    spec = ModelSpec(name="m", path=path, sha256=SHA, size_bytes=path.stat().st_size, quantization="Q8_0",
                     context_length=4096, architecture="llama", source="file", present=True)
    settings = Settings(data_dir=tmp_path / "data", engine={"n_ctx": 8192, "kv_type": "f16"})
    profiles = ProfileStore(tmp_path / "profiles", lambda: "cpu1")
    profiles.save(TunedProfile(model="m", model_sha256=SHA, cpu_signature="cpu1", created_at="t",
                               engine={"kv_type": "q8_0", "flash_attn": True}))
    probe = probe_answering(tmp_path, "amx_crashes")

    eff = engine_settings_for(spec, settings, probe, profiles)
    assert eff.path == path and eff.settings.kv_type == "q8_0" and eff.settings.flash_attn  # the profile applied
    assert eff.n_ctx == 4096  # the model's own context caps the setting
    assert eff.weights.value == "repack" and eff.settings.weight_buffers == "repack"  # AMX crashed: not used
    untuned = engine_settings_for(spec, settings, probe)
    assert untuned.settings.kv_type == "f16" and untuned.weights.value == "repack"

    estimate = build_footprint_estimator(settings, probe, profiles)(spec)
    shape = model_shape(read_gguf_header(path))
    es = eff.settings
    n_ubatch = min(es.n_ubatch, es.step_token_budget)
    assert estimate == estimate_footprint(shape, n_ctx=4096, kv_type="q8_0", n_ubatch=n_ubatch, flash_attn=True)
    assert estimate != estimate_footprint(shape, n_ctx=4096, kv_type="f16", n_ubatch=n_ubatch, flash_attn=False)
