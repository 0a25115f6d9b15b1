"""The int8 self-test records only lasting answers: a pass, wrong results or a native crash. A timeout, a kill or an
exit failure (a busy machine, an operator) is tried again at the next start."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from inhouse.hardware.int8 import Int8Check, check_int8, run_check
from inhouse.hardware.probe import ChildOutcome


def judged(outcome: ChildOutcome) -> Int8Check:
    return run_check(run=lambda argv: outcome, command=["self-test"])


@pytest.mark.parametrize(("outcome", "refuted"), [
    (ChildOutcome(-signal.SIGSEGV, "", "phase=embed\n", 0.3), True),
    (ChildOutcome(-signal.SIGILL, "", "phase=embed\n", 0.3), True),
    (ChildOutcome(0, '{"min_cosine": 0.31}\n', "", 0.3), True),
    (ChildOutcome(-signal.SIGKILL, "", "phase=embed\n", 60.0, timed_out=True), False),
    (ChildOutcome(-signal.SIGKILL, "", "phase=embed\n", 3.0), False),
    (ChildOutcome(1, "", "MemoryError\n", 0.3), False),
])
def test_which_failures_are_lasting(outcome: ChildOutcome, refuted: bool) -> None:
    result = judged(outcome)
    assert not result.ok and result.refuted is refuted and result.settled is refuted
    assert judged(ChildOutcome(0, '{"min_cosine": 0.9991}\n', "", 0.8)).settled


def test_a_timeout_is_tried_again_and_a_pass_is_kept(tmp_path: Path) -> None:
    answers = [Int8Check(False, "the int8 kernels failed: no answer within 60 s", "1.20", 60.0),
               Int8Check(True, "cosine 0.9990", "1.20", 0.8)]
    calls: list[Int8Check] = []

    def run() -> Int8Check:
        calls.append(answers[len(calls)])
        return calls[-1]

    assert not check_int8(tmp_path, "cpu1", run=run).ok
    assert not list(tmp_path.glob("*.json"))
    assert check_int8(tmp_path, "cpu1", run=run).ok and len(calls) == 2
    assert check_int8(tmp_path, "cpu1", run=run).ok and len(calls) == 2  # recorded


def test_a_timeout_recorded_by_an_older_version_is_tried_again(tmp_path: Path) -> None:
    check_int8(tmp_path, "cpu1", run=lambda: Int8Check(True, "cosine 0.999", "1.20", 0.8))
    record = next(tmp_path.glob("ort-int8-check-cpu1-*.json"))
    record.write_text(json.dumps({"ok": False, "detail": "the int8 kernels failed: no answer within 60 s",
                                  "ort_version": "1.20", "seconds": 60.0}), encoding="utf-8")
    assert check_int8(tmp_path, "cpu1", run=lambda: Int8Check(True, "cosine 0.999", "1.20", 0.8)).ok
