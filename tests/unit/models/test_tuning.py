"""The tuner's search, objective, profile and report, on a synthetic machine (no llama.cpp)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from inhouse.config import EngineSettings
from inhouse.errors import InvalidRequest, ModelNotFound, Unavailable
from inhouse.hardware.cpu import Bandwidth, CpuInfo
from inhouse.models.registry import ModelRegistry
from inhouse.models.tuning.measure import Measurement, Workload, p95
from inhouse.models.tuning.profile import ProfileStore
from inhouse.models.tuning.sweep import TuneOptions, Tuner, guard, roofline_fraction, score, variant_name
from inhouse.testing.gguf_writer import write_tiny_model

CPU = CpuInfo(model_name="Synthetic", logical_cpus=2, physical_cores=2, smt=False, numa_nodes=1,
              flags=("avx2",))
BW = Bandwidth(gb_s=40.0, array_bytes=1, threads=2, runs=1)


class SyntheticMachine:
    """Aggregate throughput rises with q8_0 weights, flash attention and 8 running sequences; a
    prefill chunk of 256 makes one stream's p95 gap blow the bound."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, path: Path, es: EngineSettings, n_ctx: int, work: Workload) -> Measurement:
        self.calls.append((name, {"threads": es.n_threads, "fa": es.flash_attn, "kv": es.kv_type,
                                  "running": es.max_running, "chunk": es.prefill_chunk}))
        agg = 100.0
        agg *= 1.5 if name.endswith("@q8_0") else 1.0
        agg *= 1.2 if es.flash_attn and es.kv_type == "f16" else 1.0
        agg *= 1.1 if es.max_running == 8 else 1.0
        agg *= 0.5 if es.n_threads == 1 else 1.0
        itl = 500.0 if es.prefill_chunk == 256 else 20.0
        return Measurement(decode_tok_s=50.0, prefill_tok_s=400.0, aggregate_tok_s=agg, itl_p95_ms=itl,
                           aggregate_itl_p95_ms=itl * 2, load_s=0.1, concurrency=work.concurrency)


def fake_quantize(src: Path, dst: Path, fmt: str) -> None:
    write_tiny_model(dst, context_length=4096)  # different bytes, so a different sha256


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "cache", lambda spec: None, 1000, catalog=())  # type: ignore[arg-type, return-value]
    reg.add(write_tiny_model(tmp_path / "tiny.gguf"), "tiny")
    return reg


def tuner(registry: ModelRegistry, tmp_path: Path, machine: Any, clock: Any = None) -> Tuner:
    kw = {"clock": clock} if clock else {}
    # Defaults without flash attention, which the synthetic machine rewards: the tuner must find it.
    return Tuner(registry, ProfileStore(tmp_path / "profiles", lambda: CPU.signature), EngineSettings(flash_attn=False),
                 measure=machine, quantize=fake_quantize, **kw)


def test_sweep_picks_the_best_and_respects_the_itl_bound(registry: ModelRegistry, tmp_path: Path) -> None:
    machine = SyntheticMachine()
    t = tuner(registry, tmp_path, machine)
    result = t.tune("tiny", CPU, BW, TuneOptions(concurrency=8))
    assert result.chosen.weights == "q8_0"
    e = result.chosen.engine
    assert (e["n_threads"], e["flash_attn"], e["kv_type"], e["max_running"]) == (2, True, "f16", 8)
    assert e["prefill_chunk"] != 256  # its throughput was not worse, but one stream's ITL broke the bound
    assert result.itl_bound_ms == pytest.approx(30.0)  # 1.5 × the default p95
    assert result.tuned.aggregate_tok_s == pytest.approx(100 * 1.5 * 1.2 * 1.1)
    assert any(not math.isfinite(tr.score) for tr in result.trials)
    # coordinate descent, not a grid: well under the 2*2*2*3*4*4*3 = 1152 combinations
    assert len(machine.calls) < 30
    assert "tiny@q8_0" in registry.names()  # the variant is a registered model with its own digest
    assert registry.resolve("tiny@q8_0").sha256 != registry.resolve("tiny").sha256


def test_save_writes_profile_and_reports(registry: ModelRegistry, tmp_path: Path) -> None:
    t = tuner(registry, tmp_path, SyntheticMachine())
    result = t.save(t.tune("tiny", CPU, BW, TuneOptions(concurrency=8)))
    store = ProfileStore(tmp_path / "profiles", lambda: CPU.signature)
    spec = registry.resolve("tiny")
    match = store.match(spec.sha256)
    assert match.applies and match.profile is not None and match.profile.weights is not None
    assert match.profile.weights.name == "tiny@q8_0"
    assert match.profile.measured["tuned"]["aggregate_tok_s"] > match.profile.measured["default"]["aggregate_tok_s"]
    assert store.match(registry.resolve("tiny@q8_0").sha256).applies  # serving the variant directly is tuned
    md, js = result.report_paths
    data = json.loads(js.read_text())
    assert data["tuned_over_default"]["aggregate_tok_s"] == pytest.approx(1.98)
    assert 0 < data["tuned"]["roofline_fraction"] < 1
    assert "| aggregate tok/s (8 streams) |" in md.read_text()


def test_budget_stops_the_sweep(registry: ModelRegistry, tmp_path: Path) -> None:
    ticks = iter(range(0, 10_000, 100))
    result = tuner(registry, tmp_path, SyntheticMachine(), clock=lambda: float(next(ticks))).tune(
        "tiny", CPU, BW, TuneOptions(budget_s=250))
    assert result.budget_exhausted and len(result.trials) <= 4


def test_missing_and_absent_models_are_clear_errors(registry: ModelRegistry, tmp_path: Path) -> None:
    t = tuner(registry, tmp_path, SyntheticMachine())
    with pytest.raises(ModelNotFound, match="'nope' is not registered"):
        t.tune("nope", CPU, BW, TuneOptions())
    (tmp_path / "tiny.gguf").unlink()
    with pytest.raises(Unavailable, match="missing"):
        t.tune("tiny", CPU, BW, TuneOptions())
    with pytest.raises(InvalidRequest, match="concurrency"):
        TuneOptions(concurrency=0)


def test_objective_and_helpers() -> None:
    m = Measurement(10, 100, 50, 40, 80, 0.1, 8)
    assert score(m, 50) == 50 and score(m, 30) == -math.inf
    assert roofline_fraction(10**9, 20, 40.0) == pytest.approx(0.5)
    assert p95([1.0] * 19 + [10.0]) == 1.0 and p95([1.0] * 18 + [10.0, 10.0]) == 10.0


class TradeOffMachine(SyntheticMachine):
    """Flash attention lifts aggregate 30 % but costs 20 % of prefill; the plain weight path lifts aggregate
    10 % over the repack without costing anything."""

    def __call__(self, name: str, path: Path, es: EngineSettings, n_ctx: int, work: Workload) -> Measurement:
        m = super().__call__(name, path, es, n_ctx, work)
        agg = 100.0 * (1.3 if es.flash_attn else 1.0) * (1.1 if es.weight_buffers == "plain" else 1.0)
        prefill = 400.0 * (0.8 if es.flash_attn else 1.0)
        return Measurement(decode_tok_s=50.0, prefill_tok_s=prefill, aggregate_tok_s=agg, itl_p95_ms=m.itl_p95_ms,
                           aggregate_itl_p95_ms=m.aggregate_itl_p95_ms, load_s=0.1, concurrency=work.concurrency)


def test_aggregate_is_never_bought_with_prefill(registry: ModelRegistry, tmp_path: Path) -> None:
    t = Tuner(registry, ProfileStore(tmp_path / "profiles", lambda: CPU.signature),
              EngineSettings(weight_buffers="repack", flash_attn=False), measure=TradeOffMachine(),
              quantize=fake_quantize)
    result = t.tune("tiny", CPU, BW, TuneOptions(formats=(), weight_paths=("repack", "plain")))
    assert result.chosen.engine["flash_attn"] is False
    refused = [tr for tr in result.trials if tr.refused.startswith("prefill")]
    assert refused and all(tr.refused.startswith("prefill 0.80× the default") for tr in refused)
    assert all(tr.candidate.engine["flash_attn"] for tr in refused)
    assert result.tuned.prefill_tok_s >= 0.95 * result.default.prefill_tok_s


def test_weight_paths_are_swept_and_the_reason_is_recorded(registry: ModelRegistry, tmp_path: Path) -> None:
    t = Tuner(registry, ProfileStore(tmp_path / "profiles", lambda: CPU.signature),
              EngineSettings(weight_buffers="repack", flash_attn=False), measure=TradeOffMachine(),
              quantize=fake_quantize)
    result = t.save(t.tune("tiny", CPU, BW, TuneOptions(formats=(), weight_paths=("repack", "plain"))))
    assert result.trials[1].axis == "weight buffers"  # first after the default
    assert result.chosen.engine["weight_buffers"] == "plain"
    profile = ProfileStore(tmp_path / "profiles", lambda: CPU.signature).match(registry.resolve("tiny").sha256)
    assert profile.profile is not None and profile.profile.engine["weight_buffers"] == "plain"
    assert "weight buffers: weight_buffers=plain (aggregate 1.10x" in profile.profile.reason
    assert "weight paths the hardware probe proved: repack, plain" in profile.profile.reason
    md = result.report_paths[0].read_text()
    assert "- Why: weight buffers: weight_buffers=plain" in md and "refused: prefill" in md


def test_guard_names_what_a_candidate_would_lose() -> None:
    default = Measurement(50, 400, 100, 20, 40, 0.1, 8)
    assert guard(Measurement(48, 390, 120, 20, 40, 0.1, 8), default, 30, 0.05) == ""  # within 5 %
    assert guard(Measurement(45, 400, 120, 20, 40, 0.1, 8), default, 30, 0.05).startswith("decode 0.90×")
    assert guard(Measurement(50, 400, 120, 40, 40, 0.1, 8), default, 30, 0.05).startswith("ITL p95")


def test_variant_is_reused_only_for_the_same_weights(registry: ModelRegistry, tmp_path: Path) -> None:
    """After `tiny` is removed and re-added with other weights, its old `tiny@q8_0` (made from the old weights)
    must not be measured, nor pinned in the new weights' profile: it is made again."""
    made: list[Path] = []

    def quantize(src: Path, dst: Path, fmt: str) -> None:
        made.append(src)
        dst.write_bytes(src.read_bytes() + b"q8")  # a variant that differs with its source

    def fresh() -> Tuner:
        return Tuner(registry, ProfileStore(tmp_path / "profiles", lambda: CPU.signature), EngineSettings(),
                     measure=SyntheticMachine(), quantize=quantize)

    old = registry.resolve("tiny")
    v_old, _ = fresh().variant(old, "q8_0")
    assert fresh().variant(old, "q8_0")[1] == v_old.path and len(made) == 1  # same weights: reused

    registry.remove("tiny")
    new = registry.add(write_tiny_model(tmp_path / "new.gguf", context_length=4096), "tiny")
    assert new.sha256 != old.sha256
    v_new, path = fresh().variant(new, "q8_0")
    assert len(made) == 2 and made[-1] == new.path
    assert path.name == f"{new.sha256}.q8_0.gguf" and v_new.sha256 != v_old.sha256
    assert registry.resolve("tiny@q8_0").path == path
    assert v_old.path is not None and not v_old.path.exists()  # the old weights' variant is not left behind


def test_a_variant_file_another_model_uses_is_kept(registry: ModelRegistry, tmp_path: Path) -> None:
    old = registry.resolve("tiny")
    v_old, _ = tuner(registry, tmp_path, SyntheticMachine()).variant(old, "q8_0")
    assert v_old.path is not None
    registry.add(v_old.path, "tiny-q8-pinned")  # someone registered the variant file itself
    registry.remove("tiny")
    registry.add(write_tiny_model(tmp_path / "new.gguf", context_length=1024), "tiny")  # other weights
    tuner(registry, tmp_path, SyntheticMachine()).variant(registry.resolve("tiny"), "q8_0")
    assert v_old.path.is_file() and registry.resolve("tiny-q8-pinned").present


@pytest.mark.parametrize("length", [58, 60, 64])
def test_a_long_model_name_still_gets_variants(registry: ModelRegistry, tmp_path: Path, length: int) -> None:
    long_name = ("finance-assistant-llama2-13b-chat-" * 2)[:length]
    spec = registry.add(write_tiny_model(tmp_path / "long.gguf"), long_name)
    vspec, _ = tuner(registry, tmp_path, SyntheticMachine()).variant(spec, "q8_0")
    assert len(vspec.name) <= 64 and vspec.name.endswith("@q8_0") and vspec.name in registry.names()
    assert variant_name(long_name, "q8_0") == vspec.name != variant_name(long_name[:-1] + "x", "q8_0")
