"""Where a weight path came from decides what may overrule it: an operator's ``engine.weight_buffers`` wins over a
tuned profile's, a profile's path is an automatic choice (demoted after a native crash like ``auto``'s), and a probe
child that gave no answer (``failed``) proves nothing either way, never refusing to serve."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import inhouse.bootstrap as bootstrap
from inhouse.bootstrap import build_llama_engine_factory, engine_settings_for
from inhouse.config import EngineSettings, Settings
from inhouse.engine.process import EngineCrash, EngineRecipe
from inhouse.errors import EngineFailure
from inhouse.hardware.probe import HardwareProbe, PathResult, ProbeReport
from inhouse.hardware.weights import resolve_weight_buffers
from inhouse.models.spec import ModelSpec
from inhouse.models.tuning.profile import ProfileStore, TunedProfile
from inhouse.testing.probe import fake_report

SHA = "d" * 64


def answering(tmp_path: Path, report: ProbeReport) -> HardwareProbe:
    probe = HardwareProbe(tmp_path / "hw", build_id=lambda: ("b1", "0.3.36"), cpu_signature=lambda: "cpu1",
                          run_child=lambda *a, **k: (_ for _ in ()).throw(AssertionError("must not probe")))
    probe.cache_path().parent.mkdir(parents=True)
    probe.cache_path().write_text(json.dumps(report.to_dict()))
    return probe


def tuned_for_repack(tmp_path: Path) -> tuple[ModelSpec, ProfileStore]:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    spec = ModelSpec(name="m", path=path, sha256=SHA, size_bytes=4, quantization="Q4_0", context_length=2048,
                     architecture="llama", source="file", present=True)
    profiles = ProfileStore(tmp_path / "profiles", lambda: "cpu1")
    profiles.save(TunedProfile(model="m", model_sha256=SHA, cpu_signature="cpu1", created_at="t",
                               engine={"weight_buffers": "repack", "max_running": 3}))
    return spec, profiles


# -- 1. the operator's weight_buffers wins over the profile's; the profile's is automatic ---------------------------


def test_an_operator_set_weight_path_wins_over_the_tuned_profile(tmp_path: Path) -> None:
    spec, profiles = tuned_for_repack(tmp_path)
    probe = answering(tmp_path, fake_report("no_amx"))
    forced = engine_settings_for(spec, Settings(data_dir=tmp_path, engine={"weight_buffers": "plain"}), probe,
                                 profiles)
    assert forced.settings.weight_buffers == "plain" and forced.settings.max_running == 3  # the rest still applies
    assert "set explicitly" in forced.weights.reason and not forced.weights.automatic
    auto = engine_settings_for(spec, Settings(data_dir=tmp_path), probe, profiles)
    assert auto.settings.weight_buffers == "repack" and auto.weights.automatic
    assert "from the tuned profile" in auto.weights.reason and "set explicitly" not in auto.weights.reason


def test_profile_apply_keeps_the_operator_s_weight_path() -> None:
    profile = TunedProfile(model="m", model_sha256=SHA, cpu_signature="c", created_at="t",
                           engine={"weight_buffers": "repack", "n_threads": 1})
    assert profile.apply(EngineSettings(weight_buffers="plain")).weight_buffers == "plain"
    assert profile.apply(EngineSettings(weight_buffers="plain")).n_threads == 1
    assert profile.apply(EngineSettings()).weight_buffers == "repack"


def restart_hook(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
                 ) -> tuple[EngineRecipe, Any]:
    """The recipe the engine child would start with and the hook the supervisor calls before a restart."""
    spec, profiles = tuned_for_repack(tmp_path)
    probe = answering(tmp_path, fake_report("no_amx"))
    started: dict[str, Any] = {}

    def start_engine(recipe: EngineRecipe, *, on_crash: Any, before_restart: Any) -> Any:
        started.update(recipe=recipe, hook=before_restart)
        return object()

    monkeypatch.setattr(bootstrap, "start_engine", start_engine)
    build_llama_engine_factory(settings, profiles, None, probe)(spec)
    return started["recipe"], started["hook"]


def segfault(recipe: EngineRecipe) -> EngineCrash:
    return EngineCrash(model="m", pid=1, returncode=-11, reason="SIGSEGV", at=time.time(), in_flight=0,
                       crashes_in_window=1, restarting=True, recipe=recipe)


def test_a_native_crash_on_the_profile_s_path_demotes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe, hook = restart_hook(tmp_path, Settings(data_dir=tmp_path), monkeypatch)
    assert recipe.settings.weight_buffers == "repack"
    again = hook(segfault(recipe))
    assert again is not None and again.settings.weight_buffers == "plain"
    assert again.settings.max_running == 3  # still tuned, only the path fell back


def test_a_native_crash_on_the_operator_s_path_is_not_demoted(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    recipe, hook = restart_hook(tmp_path, Settings(data_dir=tmp_path, engine={"weight_buffers": "repack"}),
                                monkeypatch)
    assert recipe.settings.weight_buffers == "repack"
    assert hook(segfault(recipe)) is None  # restarts on the same path


# -- 2. a probe child with no answer proves nothing, and never stops the server -------------------------------------


def no_answer(report: ProbeReport, *names: str, why: str = "killed (out of memory?) (SIGKILL, signal 9) during load"
              ) -> ProbeReport:
    paths = dict(report.paths)
    for name in names:
        paths[name] = PathResult(name, "failed", why if name == "plain" else
                                 "the plain path gave no reference to compare with")
    return replace(report, paths=paths)


@pytest.mark.parametrize("scenario", ["no_amx", "amx_works", "amx_crashes"])
def test_no_answer_about_plain_serves_plain_and_says_to_probe_again(scenario: str) -> None:
    report = no_answer(fake_report(scenario), "plain", "repack", *(["amx"] if scenario != "amx_crashes" else []))
    choice = resolve_weight_buffers("auto", report)
    assert choice.value == "plain" and choice.automatic
    assert "no answer" in choice.reason and "inhouse doctor --refresh" in choice.reason
    assert "does not run" not in choice.reason


def test_a_refuted_plain_path_still_stops_the_engine() -> None:
    with pytest.raises(EngineFailure):
        resolve_weight_buffers("auto", fake_report("nothing_runs"))


def test_no_answer_about_the_repack_is_named_as_such() -> None:
    report = no_answer(fake_report("amx_and_repack_crash"), "repack")
    report = replace(report, paths={**report.paths, "repack": PathResult("repack", "failed", "no answer within 60 s")})
    choice = resolve_weight_buffers("auto", report)
    assert choice.value == "plain" and "no answer about the CPU repack" in choice.reason
    assert "failed too" not in choice.reason


def test_a_path_that_gave_no_answer_is_never_called_proven() -> None:
    report = no_answer(fake_report("amx_works"), "plain", "amx", "repack")
    explicit = resolve_weight_buffers("amx", report)
    assert explicit.value == "amx" and "not proven" in explicit.reason and "proven by" not in explicit.reason
    assert "inhouse doctor --refresh" in explicit.reason and not explicit.automatic
    from_profile = resolve_weight_buffers("amx", report, from_profile=True)
    assert from_profile.value == "plain" and "tuned profile asks for amx" in from_profile.reason
    assert "no answer" in from_profile.reason and from_profile.automatic


def test_a_probed_path_of_the_profile_is_proven_by_the_probe() -> None:
    choice = resolve_weight_buffers("repack", fake_report("no_amx"), from_profile=True)
    assert choice.value == "repack" and choice.reason.startswith("repack: from the tuned profile, proven")
