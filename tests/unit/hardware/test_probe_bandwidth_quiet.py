"""The probe's memory bandwidth decides the default model, so a measurement under load must not stick: it waits
(briefly) for a quiet machine, records the foreign load, keeps an earlier better figure over a loaded one, and two
probes of one data directory never run at once (bug: two `inhouse doctor` together cached 6-10 GB/s instead of ~43,
and the default model dropped to a smaller one until `--refresh`)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import inhouse.hardware.probe as probe_mod
from inhouse.hardware.amx import TilePermission
from inhouse.hardware.cpu import QUIET_CORES, Bandwidth, CpuSample, measure_bandwidth_quietly
from inhouse.hardware.probe import ChildOutcome, HardwareProbe
from inhouse.models.recommend import recommend_model
from inhouse.testing.probe import ScriptedChildren

LOGITS = [[float(i % 7) - 3.0 for i in range(64)], [float(i % 5) for i in range(64)]]
TICK = os.sysconf("SC_CLK_TCK")


def answered() -> ChildOutcome:
    body = {"placed": {"CPU_REPACK": 1.0}, "extra_buffer_types": ["CPU_REPACK"], "tokens": [3, 4], "logits": LOGITS,
            "system_info": "CPU : AVX2 = 1 | REPACK = 1 |"}
    return ChildOutcome(0, json.dumps(body) + "\n", "phase=load\nphase=done\n", 0.1)


def children() -> ScriptedChildren:
    return ScriptedChildren({"plain": answered(), "repack": answered(), "amx": answered()})


@pytest.fixture(autouse=True)
def no_amx_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_mod, "tile_permission", lambda: TilePermission("unsupported", "no AMX tile state"))


class Machine:
    """CPU samples of a machine whose other processes use ``loads[i]`` cores during the i-th measurement."""

    def __init__(self, *loads: float) -> None:
        self.loads = list(loads)
        self.at, self.busy, self.measuring = 0.0, 0, False
        self.waited: list[tuple[float, float, float]] = []

    def sample(self) -> CpuSample:
        if self.measuring:  # the end of a measurement: one second in which others used loads[0] cores
            self.at += 1.0
            self.busy += int(self.loads.pop(0) * TICK)
        self.measuring = not self.measuring
        return CpuSample(at_s=self.at, busy_ticks=self.busy, own_ticks=0)

    def wait(self, threshold: float, max_wait_s: float, window_s: float) -> float:
        self.waited.append((threshold, max_wait_s, window_s))
        return 0.0


def test_a_quiet_machine_is_measured_once_without_waiting() -> None:
    m = Machine(0.05)
    figures = iter([43.0])
    bw = measure_bandwidth_quietly(measure=lambda: Bandwidth(next(figures), 1, 2, 5), sample=m.sample, wait=m.wait)
    assert bw.gb_s == 43.0 and bw.foreign_cores == pytest.approx(0.05, abs=0.02) and m.waited == []


def test_under_load_it_waits_briefly_and_keeps_the_better_measurement() -> None:
    m = Machine(1.6, 0.1)
    figures = iter([8.0, 42.0])
    bw = measure_bandwidth_quietly(measure=lambda: Bandwidth(next(figures), 1, 2, 5), sample=m.sample, wait=m.wait)
    assert bw.gb_s == 42.0 and bw.foreign_cores < QUIET_CORES
    [(threshold, max_wait_s, _)] = m.waited
    assert threshold == QUIET_CORES and max_wait_s <= 3.0  # doctor stays within its 10 s
    still_busy = Machine(1.6, 1.7)
    figures = iter([8.0, 7.0])
    bw = measure_bandwidth_quietly(measure=lambda: Bandwidth(next(figures), 1, 2, 5), sample=still_busy.sample,
                                   wait=still_busy.wait)
    assert bw.gb_s == 8.0 and bw.foreign_cores == pytest.approx(1.6, abs=0.02)  # recorded as measured under load


def probe(tmp_path: Path, runner: Any, bandwidth: Bandwidth) -> HardwareProbe:
    return HardwareProbe(tmp_path / "hw", run_child=runner, build_id=lambda: ("b1", "0.3.36"),
                         bandwidth=lambda: bandwidth, cpu_signature=lambda: "cpu1",
                         memory=lambda: (32 * 2**30, 28 * 2**30))


def test_a_measurement_under_load_never_replaces_a_better_one(tmp_path: Path) -> None:
    quiet = probe(tmp_path, children(), Bandwidth(43.0, 1, 2, 5, foreign_cores=0.02)).current()
    assert quiet.bandwidth_gb_s == 43.0 and not quiet.bandwidth_under_load
    loaded = probe(tmp_path, children(), Bandwidth(6.5, 1, 2, 5, foreign_cores=1.7)).current(force=True)
    assert loaded.bandwidth_gb_s == 43.0 and loaded.bandwidth_foreign_cores == 0.02
    cached = probe(tmp_path, children(), Bandwidth(1.0, 1, 2, 5)).cached()
    assert cached is not None and cached.bandwidth_gb_s == 43.0
    assert recommend_model(cached).name == recommend_model(quiet).name  # the default model does not flip
    # A quiet measurement is the machine as it is now: it replaces the earlier one, higher or lower.
    lower = probe(tmp_path, children(), Bandwidth(39.0, 1, 2, 5, foreign_cores=0.1)).current(force=True)
    assert lower.bandwidth_gb_s == 39.0
    # With no earlier answer a loaded figure is kept (the best there is), marked as measured under load.
    first = probe(tmp_path / "other", children(), Bandwidth(6.5, 1, 2, 5, foreign_cores=1.7)).current()
    assert first.bandwidth_gb_s == 6.5 and first.bandwidth_under_load


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_two_probes_of_one_data_directory_never_run_at_once(tmp_path: Path, gate: threading.Event) -> None:
    """Two processes (here: two probe objects, each with its own lock file descriptor) start together: the second
    waits for the first and reads its answer instead of probing (and measuring) alongside it."""
    running = threading.Event()
    first_children, second_children = children(), children()

    def slow(weight_buffers: str, model: Path) -> ChildOutcome:
        running.set()
        assert gate.wait(10)
        return first_children(weight_buffers, model)

    first = probe(tmp_path, slow, Bandwidth(43.0, 1, 2, 5))
    second = probe(tmp_path, second_children, Bandwidth(6.0, 1, 2, 5, foreign_cores=1.0))
    results: dict[str, Any] = {}
    t1 = threading.Thread(target=lambda: results.update(first=first.current()))
    t1.start()
    assert running.wait(10)
    t2 = threading.Thread(target=lambda: results.update(second=second.current()))
    t2.start()
    t2.join(0.3)
    assert t2.is_alive()  # waiting for the first probe
    gate.set()
    t1.join(10)
    t2.join(10)
    assert second_children.calls == [] and len(first_children.calls) == 3
    assert results["second"].bandwidth_gb_s == results["first"].bandwidth_gb_s == 43.0
