"""Tuned profiles: round trip, strict parsing, CPU matching, and how serve applies them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from inhouse.config import EngineSettings
from inhouse.errors import InvalidModelFile, InvalidRequest
from inhouse.models.tuning.profile import (
    ProfileStore,
    TunedProfile,
    WeightsVariant,
    dump_toml,
    parse_profile,
    tuned_settings,
)

SHA = "a" * 64
VSHA = "b" * 64


def profile(**kw: object) -> TunedProfile:
    base: dict[str, object] = dict(
        model="m", model_sha256=SHA, cpu_signature="cpu1", created_at="2026-01-01T00:00:00Z",
        engine={"n_threads": 1, "n_threads_batch": 2, "flash_attn": True, "kv_type": "q8_0", "max_running": 8},
        measured={"default": {"decode_tok_s": 10.0}, "tuned": {"decode_tok_s": 12.5}},
    )
    base.update(kw)
    return TunedProfile(**base)  # type: ignore[arg-type]


def store(tmp_path: Path, sig: str = "cpu1") -> ProfileStore:
    return ProfileStore(tmp_path / "profiles", lambda: sig)


def test_round_trip(tmp_path: Path) -> None:
    p = profile(weights=WeightsVariant("m@q8_0", VSHA, "q8_0"), cpu='AMD "quoted"\tx')
    path = store(tmp_path).save(p)
    assert path.name == f"{SHA}.toml"
    assert store(tmp_path).read(path) == p


def test_match_applies_on_same_cpu_and_settings_override(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(profile())
    m = s.match(SHA)
    assert m.applies and m.to_dict() is not None and m.to_dict()["status"] == "applied"  # type: ignore[index]
    es = m.profile.apply(EngineSettings()) if m.profile else None
    assert es is not None and (es.n_threads, es.n_threads_batch, es.kv_type, es.max_running) == (1, 2, "q8_0", 8)
    assert s.match("c" * 64).status == "none" and s.match(None).to_dict() is None


def test_other_cpu_is_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store(tmp_path).save(profile())
    m = store(tmp_path, sig="other").match(SHA)
    assert m.status == "other_cpu" and not m.applies and "another CPU" in m.message
    with caplog.at_level(logging.WARNING):
        es, path = tuned_settings(m, EngineSettings(), Path("/w.gguf"), None)
    assert es == EngineSettings() and path == Path("/w.gguf")
    assert "another CPU" in caplog.text


@pytest.mark.parametrize(("text", "reason"), [
    ("not = [toml", "not TOML"),
    ("format = 2\n", "format must be 1"),
    (f'format = 1\nmodel = "m"\nmodel_sha256 = "{SHA}"\ncpu_signature = "c"\ncreated_at = "t"\n', "[engine]"),
    (f'format = 1\nmodel = "m"\nmodel_sha256 = "{SHA}"\ncpu_signature = "c"\ncreated_at = "t"\n'
     '[engine]\nn_threadz = 2\n', "unknown engine setting(s) n_threadz"),
    (f'format = 1\nmodel = "m"\nmodel_sha256 = "{SHA}"\ncpu_signature = "c"\ncreated_at = "t"\n'
     '[engine]\nkv_type = "q2"\n', "engine.kv_type"),
    (f'format = 1\nmodel = "m"\nmodel_sha256 = "{SHA}"\ncpu_signature = "c"\ncreated_at = "t"\n'
     '[engine]\nn_threads = 2\n[weights]\nvariant = "x"\n', "[weights]"),
])
def test_corrupt_profiles_are_refused_naming_the_file(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / f"{SHA}.toml"
    with pytest.raises(InvalidRequest) as err:
        parse_profile(path, text)
    assert str(path) in err.value.message and reason in err.value.message
    assert err.value.code == "invalid_tuned_profile"


def test_corrupt_profile_file_serves_untuned_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = store(tmp_path)
    s.save(profile())
    path = s.path_for(SHA)
    path.write_bytes(path.read_bytes()[:40] + b"\xff\x00garbage[[")
    m = s.match(SHA)
    assert m.status == "invalid" and str(path) in m.message
    with caplog.at_level(logging.ERROR):
        es, _ = tuned_settings(m, EngineSettings(), Path("/w.gguf"), None)
    assert es == EngineSettings() and "untuned" in caplog.text
    assert s.check_all() == [(path, m.message)]


def test_renamed_profile_is_refused(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(profile())
    s.path_for(SHA).rename(s.path_for("d" * 64))
    assert s.match("d" * 64).status == "invalid"


def test_variant_weights_are_resolved_or_the_profile_is_dropped(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(profile(weights=WeightsVariant("m@q8_0", VSHA, "q8_0")))
    m = s.match(SHA)
    es, path = tuned_settings(m, EngineSettings(), Path("/orig.gguf"), lambda name, sha: Path(f"/{name}-{sha[:2]}"))
    assert path == Path("/m@q8_0-bb") and es.kv_type == "q8_0"

    def missing(name: str, sha: str) -> Path:
        raise InvalidModelFile(f"Model '{name}' changed.")

    es, path = tuned_settings(m, EngineSettings(), Path("/orig.gguf"), missing)
    assert path == Path("/orig.gguf") and es == EngineSettings()  # all or nothing


def test_a_profile_that_does_not_fit_this_machines_settings_is_dropped(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.save(profile(weights=WeightsVariant("m@q8_0", VSHA, "q8_0"), engine={"max_running": 32}))
    mine = EngineSettings(step_token_budget=16, max_running=4)  # a budget too small for 32 running sequences
    es, path = tuned_settings(s.match(SHA), mine, Path("/orig.gguf"), lambda name, sha: Path(f"/{name}"))
    assert path == Path("/orig.gguf") and es == mine  # served untuned, not a failed load


def test_dump_toml_nested_tables() -> None:
    text = dump_toml({"a": 1, "b": {"c": True, "d": {"e": 1.5, "f": ["x", "y"]}}})
    assert text == 'a = 1\n\n[b]\nc = true\n\n[b.d]\ne = 1.5\nf = ["x", "y"]\n'
