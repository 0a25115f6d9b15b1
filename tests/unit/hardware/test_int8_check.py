"""The int8 self-test that decides ``kb.embed_engine = "auto"``: the real child on a tiny model, and how a crashed
or wrong child is judged and recorded."""

from __future__ import annotations

import sys
from pathlib import Path

from inhouse.hardware.cpu import detect_cpu
from inhouse.hardware.int8 import Int8Check, check_int8, run_check
from inhouse.kb.embed import int8_dot_product


def test_the_int8_kernels_give_a_settled_answer_on_this_machine() -> None:
    """With int8 dot products (VNNI, AMX) the kernels must pass; without them ORT's AVX2 kernels saturate int16 sums
    (cosine 0.92 on the tiny random model, measured on an AMD EPYC Zen 3), and the check must say so rather than
    let ``kb.embed_engine = auto`` pick them."""
    result = run_check()
    assert result.ort_version and result.settled, result.detail
    if int8_dot_product(detect_cpu().flags):
        assert result.ok and "cosine 0.99" in result.detail, result.detail
    else:
        assert result.ok or (result.refuted and result.detail.startswith("wrong results (cosine")), result.detail


def test_a_crashing_child_is_an_answer_not_a_crash() -> None:
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    result = run_check(command=crash)
    assert not result.ok and "crashed" in result.detail and "SIGSEGV" in result.detail


def test_wrong_results_and_garbage_are_refused() -> None:
    wrong = run_check(command=[sys.executable, "-c", "print('{\"min_cosine\": 0.31}')"])
    assert not wrong.ok and "wrong results" in wrong.detail
    garbage = run_check(command=[sys.executable, "-c", "import sys; sys.exit('no kernels')"])
    assert not garbage.ok and "exit code 1" in garbage.detail and "no kernels" in garbage.detail


def test_the_answer_is_recorded_per_machine(tmp_path: Path) -> None:
    calls: list[int] = []

    def fake() -> Int8Check:
        calls.append(1)
        return Int8Check(False, "the int8 kernels crashed (SIGILL)", "1.31.1", 0.5, refuted=True)

    first = check_int8(tmp_path, "cpu-a", run=fake)
    assert check_int8(tmp_path, "cpu-a", run=fake) == first and len(calls) == 1  # read back, not run again
    check_int8(tmp_path, "cpu-b", run=fake)
    assert len(calls) == 2  # another machine is checked anew
    (next(tmp_path.glob("ort-int8-check-cpu-a-*.json"))).write_text("{broken", encoding="utf-8")
    check_int8(tmp_path, "cpu-a", run=fake)
    assert len(calls) == 3  # an unreadable record is replaced
    check_int8(tmp_path, "cpu-a", graph_version=99, run=fake)
    assert len(calls) == 4  # a changed graph is checked anew
