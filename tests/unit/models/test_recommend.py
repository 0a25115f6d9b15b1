"""models.default = "auto": the best packaged model the probed machine runs well."""

from __future__ import annotations

from pathlib import Path

from inhouse.bootstrap import build_probe, build_services
from inhouse.config import Settings
from inhouse.hardware.probe import ProbeReport
from inhouse.models.recommend import MIN_DECODE_TOK_S, recommend_model
from inhouse.testing.probe import fake_report


def test_a_box_with_memory_and_bandwidth_serves_qwen_1_5b() -> None:
    rec = recommend_model(fake_report("no_amx", memory_gb=24, bandwidth_gb_s=40))
    assert rec.name == "qwen2.5-coder-1.5b" and rec.predicted_decode_tok_s is not None
    assert rec.predicted_decode_tok_s >= MIN_DECODE_TOK_S and "40 GB/s" in rec.reason


def test_slow_memory_steps_down_with_the_reason() -> None:
    rec = recommend_model(fake_report("no_amx", memory_gb=24, bandwidth_gb_s=12))
    assert rec.name == "qwen2.5-coder-0.5b" and "qwen2.5-coder-1.5b would decode at" in rec.reason


def test_small_memory_gets_smollm2() -> None:
    rec = recommend_model(fake_report("no_amx", memory_gb=2.5, bandwidth_gb_s=40))
    assert rec.name == "smollm2-135m" and "needs" in rec.reason


def test_no_probe_answer_gets_smollm2_and_says_why() -> None:
    rec = recommend_model(None)
    assert rec.name == "smollm2-135m" and "inhouse doctor" in rec.reason


def _cache(settings: Settings, report: ProbeReport) -> None:
    import json

    path = build_probe(settings).cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(report.to_dict()))


def test_services_resolve_auto_once_from_the_cached_probe(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    _cache(settings, fake_report("no_amx", memory_gb=24, bandwidth_gb_s=40))
    services = build_services(settings, load_engine=lambda spec: None)  # type: ignore[arg-type, return-value]
    try:
        assert settings.models.default == "qwen2.5-coder-1.5b"
        assert services.default_model is not None and "predicted decode" in services.default_model.reason
    finally:
        services.close()


def test_an_explicit_default_is_never_replaced(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, models={"default": "smollm2-135m"})
    _cache(settings, fake_report("no_amx"))
    services = build_services(settings, load_engine=lambda spec: None)  # type: ignore[arg-type, return-value]
    try:
        assert settings.models.default == "smollm2-135m" and services.default_model is None
    finally:
        services.close()
