"""The hardware probe's logic without llama.cpp: reading child outcomes, comparing logits, caching, verdicts."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest

from inhouse.hardware.cpu import Bandwidth
from inhouse.hardware.probe import (
    REL_TOLERANCE,
    ChildOutcome,
    HardwareProbe,
    ProbeReport,
    check_paths,
    interpret,
    read_isa,
    read_memory,
    relative_error,
)
from inhouse.testing.probe import ScriptedChildren, fake_report

LOGITS = [[float(i % 7) - 3.0 for i in range(64)], [float(i % 5) for i in range(64)]]


def answered(logits: list[list[float]] = LOGITS, placed: dict[str, float] | None = None) -> ChildOutcome:
    body = {"placed": placed or {"CPU_Mapped": 2.5}, "extra_buffer_types": ["CPU_REPACK"], "tokens": [3, 4],
            "logits": logits, "system_info": "CPU : AVX2 = 1 | REPACK = 1 |"}
    return ChildOutcome(0, json.dumps(body) + "\n", "phase=load\nphase=prefill\nphase=decode\nphase=done\n", 0.4)


def crashed(sig: int, phase: str = "prefill") -> ChildOutcome:
    return ChildOutcome(-sig, "", f"phase=load\nphase={phase}\nFatal Python error: Segmentation fault\n", 0.3)


def test_a_signal_is_an_answer_naming_the_fault_and_the_step() -> None:
    result, data = interpret("amx", crashed(signal.SIGSEGV))
    assert data is None and result.status == "crashed" and result.signal == 11 and result.phase == "prefill"
    assert "general protection fault" in result.detail and "SIGSEGV, signal 11" in result.detail
    ill, _ = interpret("amx", crashed(signal.SIGILL, "decode"))
    assert "illegal instruction" in ill.detail and "during decode" in ill.detail


def test_timeouts_exit_codes_and_garbage_are_failures_not_crashes() -> None:
    slow, _ = interpret("repack", ChildOutcome(-9, "", "phase=load\n", 60.0, timed_out=True))
    assert slow.status == "failed" and "no answer within" in slow.detail and "during load" in slow.detail
    err, _ = interpret("repack", ChildOutcome(1, "", "phase=load\nRuntimeError: llama.cpp could not load x\n", 0.2))
    assert err.status == "failed" and "could not load" in err.detail
    junk, _ = interpret("repack", ChildOutcome(0, "not json\n", "", 0.2))
    assert junk.status == "failed" and "no result" in junk.detail


def test_paths_are_compared_with_plain_within_the_tolerance() -> None:
    near = [[x * 1.01 for x in row] for row in LOGITS]
    garbled = [[0.0] * 64, LOGITS[1]]  # one step's matrix product lost
    results = check_paths({"plain": answered(), "repack": answered(near), "amx": answered(garbled)})
    assert results["plain"].ok and results["plain"].rel_error == 0.0
    assert results["repack"].ok and 0 < (results["repack"].rel_error or 1) <= REL_TOLERANCE
    assert results["amx"].status == "wrong" and "computes wrong results" in results["amx"].detail


def test_without_a_plain_reference_nothing_is_proven() -> None:
    results = check_paths({"plain": crashed(signal.SIGSEGV, "load"), "repack": answered()})
    assert results["plain"].status == "crashed"
    assert results["repack"].status == "failed" and "reference" in results["repack"].detail


def test_relative_error_refuses_nan_and_shape_changes() -> None:
    assert relative_error([[math.nan] * 4], [[1.0, 2.0, 3.0, 4.0]]) == math.inf
    assert relative_error([[1.0, 2.0]], [[1.0, 2.0, 3.0]]) == math.inf
    assert relative_error(LOGITS, LOGITS) == 0.0


def probe(tmp_path: Path, children: ScriptedChildren, build: str = "b1") -> HardwareProbe:
    return HardwareProbe(tmp_path / "hw", run_child=children, build_id=lambda: (build, "0.3.36"),
                         bandwidth=lambda: Bandwidth(42.0, 1, 2, 1), cpu_signature=lambda: "cpu1",
                         memory=lambda: (16 * 2**30, 12 * 2**30))  # memory is read live: fixed here


def test_the_answer_is_cached_per_machine_and_build_and_refresh_reprobes(tmp_path: Path) -> None:
    children = ScriptedChildren({"plain": answered(), "repack": answered(), "amx": crashed(signal.SIGSEGV)})
    first = probe(tmp_path, children).current()
    assert sorted(children.calls) == ["amx", "plain", "repack"]
    assert first.paths["amx"].status == "crashed" and first.bandwidth_gb_s == 42.0
    again = probe(tmp_path, children).current()  # a new process: read from disk, no child runs
    assert len(children.calls) == 3 and again == first
    probe(tmp_path, children).current(force=True)
    assert len(children.calls) == 6
    probe(tmp_path, children, build="b2").current()  # another llama.cpp build: probed again
    assert len(children.calls) == 9
    assert probe(tmp_path, children, build="b3").cached() is None


def test_a_corrupt_cache_is_probed_again(tmp_path: Path) -> None:
    children = ScriptedChildren({"plain": answered(), "repack": answered(), "amx": answered()})
    p = probe(tmp_path, children)
    p.current()
    p.cache_path().write_text("{not json", encoding="utf-8")
    assert probe(tmp_path, children).cached() is None
    assert probe(tmp_path, children).current().works("plain") and len(children.calls) == 6


def test_report_round_trips_through_json() -> None:
    report = fake_report("amx_crashes")
    back = ProbeReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back == report
    assert report.to_dict()["amx_verdict"].startswith("AMX advertised but unusable here")


@pytest.mark.parametrize(("scenario", "verdict"), [
    ("amx_works", "AMX executes through llama.cpp here"),
    ("amx_crashes", "AMX advertised but unusable here: general protection fault"),
    ("no_amx", "No AMX on this CPU."),
    ("os_refuses", "AMX advertised but the OS does not grant tile state"),
])
def test_each_outcome_has_its_verdict(scenario: str, verdict: str) -> None:
    assert fake_report(scenario).amx_verdict().startswith(verdict)


def test_a_build_without_amx_code_is_named() -> None:
    report = fake_report("os_refuses", amx_os=fake_report("amx_works").amx_os, system_info="CPU : AVX2 = 1 |")
    assert "has no AMX code" in report.amx_verdict() and "build_llama.sh" in report.amx_verdict()


def test_summary_carries_no_logits_or_paths() -> None:
    s = fake_report("amx_works").summary()
    assert s["paths"] == {"amx": "ok", "repack": "ok", "plain": "ok"} and "amx_tile" in s["isa"]
    assert "logits" not in json.dumps(s)


def test_memory_and_isa_from_proc_files(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:  1000 kB\nMemAvailable:   12000000 kB\n")
    limit = tmp_path / "memory.max"
    limit.write_text("8192000000\n")
    assert read_memory(meminfo, tmp_path / "none") == (16_000_000 * 1024, 12_000_000 * 1024)
    assert read_memory(meminfo, limit) == (8_192_000_000, 8_192_000_000)
    limit.write_text("max\n")
    assert read_memory(meminfo, limit)[0] == 16_000_000 * 1024
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("vendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512f amx_tile amx_int8\n\n"
                       "vendor_id\t: GenuineIntel\nflags\t\t: fpu\n")
    vendor, isa = read_isa(cpuinfo)
    assert vendor == "GenuineIntel" and isa["amx_tile"] and isa["avx512f"] and not isa["avx512_bf16"]
