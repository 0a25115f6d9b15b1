"""engine.weight_buffers against faked probe answers: every fallback path the engine must take."""

from __future__ import annotations

import pytest

from inhouse.config import EngineSettings
from inhouse.errors import EngineFailure, InvalidRequest
from inhouse.hardware.weights import proven_paths, resolve_engine_settings, resolve_weight_buffers
from inhouse.testing.probe import fake_report


@pytest.mark.parametrize(("scenario", "value", "why"), [
    ("amx_works", "amx", "AMX executes through llama.cpp"),
    ("amx_crashes", "repack", "unusable here: general protection fault"),  # advertised + crashes → repack only
    ("amx_and_repack_crash", "plain", "The CPU repack failed too"),  # advertised + crashes, repack too → plain
    ("no_amx", "repack", "No AMX on this CPU"),
    ("os_refuses", "repack", "OS does not grant tile state"),
])
def test_auto_takes_the_fastest_proven_path(scenario: str, value: str, why: str) -> None:
    choice = resolve_weight_buffers("auto", fake_report(scenario))
    assert choice.value == value and why in choice.reason and choice.requested == "auto"


def test_a_forced_refuted_path_is_refused_with_the_probe_s_reason() -> None:
    with pytest.raises(InvalidRequest) as err:
        resolve_weight_buffers("amx", fake_report("amx_crashes"))
    assert err.value.code == "weight_buffers_refuted"
    assert "general protection fault" in err.value.message and "force_weight_buffers" in err.value.message
    with pytest.raises(InvalidRequest):
        resolve_weight_buffers("repack", fake_report("amx_and_repack_crash"))


def test_force_uses_a_refuted_path_and_says_so() -> None:
    choice = resolve_weight_buffers("amx", fake_report("amx_crashes"), force=True)
    assert choice.value == "amx" and "FORCED" in choice.reason


def test_a_stale_profile_falls_back_instead_of_failing() -> None:
    choice = resolve_weight_buffers("amx", fake_report("amx_crashes"), from_profile=True)
    assert choice.value == "repack" and "tuned profile asks for amx" in choice.reason and choice.requested == "amx"


def test_forced_values_the_probe_proved_are_kept() -> None:
    assert resolve_weight_buffers("plain", fake_report("amx_works")).value == "plain"
    amx_here = resolve_weight_buffers("amx", fake_report("no_amx"))  # not refuted, just absent: it is the repack
    assert amx_here.value == "amx" and "Without AMX this is the CPU repack" in amx_here.reason


def test_nothing_runs_is_an_engine_failure() -> None:
    with pytest.raises(EngineFailure) as err:
        resolve_weight_buffers("auto", fake_report("nothing_runs"))
    assert err.value.code == "hardware_unusable"


def test_without_a_probe_answer_auto_is_plain() -> None:
    choice = resolve_weight_buffers("auto", None)
    assert choice.value == "plain" and "inhouse doctor" in choice.reason
    assert resolve_weight_buffers("repack", None).value == "repack"
    with pytest.raises(InvalidRequest):
        resolve_weight_buffers("fastest", None)


def test_resolved_settings_carry_the_value_and_leave_the_input_alone() -> None:
    es = EngineSettings()
    resolved, choice = resolve_engine_settings(es, fake_report("amx_works"))
    assert resolved.weight_buffers == "amx" == choice.value and es.weight_buffers == "auto"
    assert resolved.model_dump(exclude={"weight_buffers"}) == es.model_dump(exclude={"weight_buffers"})


def test_tune_measures_only_proven_paths() -> None:
    assert proven_paths(fake_report("amx_works")) == ("amx", "repack", "plain")
    assert proven_paths(fake_report("amx_crashes")) == ("repack", "plain")
    assert proven_paths(fake_report("no_amx")) == ("repack", "plain")  # amx there is the repack again
    assert proven_paths(fake_report("amx_and_repack_crash")) == ("plain",)
