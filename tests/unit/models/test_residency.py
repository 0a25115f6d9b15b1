"""Idle release and the schedule, with fake engines and injected clocks."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from inhouse.engine.params import GenerationRequest, SamplingParams
from inhouse.models.registry import ModelRegistry
from inhouse.models.residency import ModelResidency
from inhouse.models.timetable import Timetable
from inhouse.testing.fakes import build_fake_engine
from inhouse.testing.gguf_writer import write_tiny_model


class Clocks:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.now = dt.datetime(2026, 11, 25, 18, 0, tzinfo=dt.UTC)  # Wednesday

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "cache", lambda spec: build_fake_engine(spec.name), 1000, catalog=())
    reg.add(write_tiny_model(tmp_path / "a.gguf"), "a")
    yield reg
    reg.close()


def residency(registry: ModelRegistry, clocks: Clocks, **kw: object) -> ModelResidency:
    rss = iter(range(500, 0, -100))
    return ModelResidency(registry, clock=lambda: clocks.now, monotonic=lambda: clocks.mono,
                          rss=lambda: next(rss) * 2**20, drop_cache=False, prewarm_models=lambda: ["a"],
                          **kw)  # type: ignore[arg-type]


def generate(registry: ModelRegistry) -> None:
    engine = registry.get_engine("a")

    async def run() -> None:
        async for _ in engine.generate(GenerationRequest("r1", [1, 2, 3], SamplingParams(max_tokens=3))):
            pass

    asyncio.run(run())


def test_idle_release_after_n_seconds_without_work(registry: ModelRegistry) -> None:
    clocks = Clocks()
    r = residency(registry, clocks, idle_release_s=60)
    registry.get_engine("a")
    assert r.tick() == []
    clocks.advance(50)
    generate(registry)  # work resets the timer (seen in the engine's counters)
    assert r.tick() == []
    clocks.advance(50)
    assert r.tick() == [] and registry.loaded() == ["a"]
    assert r.status()["idle_release_in_s"] == 10
    clocks.advance(11)
    assert r.tick() == ["idle-release"]
    assert registry.loaded() == []
    assert r.last_release is not None and r.last_release.reason == "idle"
    assert r.last_release.rss_after_bytes < r.last_release.rss_before_bytes
    assert r.status()["idle_release_in_s"] is None
    generate(registry)  # the next request loads it again, transparently
    assert registry.loaded() == ["a"]


def test_no_idle_release_when_off(registry: ModelRegistry) -> None:
    clocks = Clocks()
    r = residency(registry, clocks)
    registry.get_engine("a")
    clocks.advance(10**6)
    assert r.tick() == [] and registry.loaded() == ["a"]


def test_schedule_prewarms_and_releases_on_time(registry: ModelRegistry) -> None:
    clocks = Clocks()
    r = residency(registry, clocks, timetable=Timetable.parse(["mon-fri 08:30"], ["mon-fri 19:00"]))
    assert r.status()["next_release"].startswith("2026-11-25T19:00")
    clocks.advance(59 * 60)
    assert r.tick() == []
    registry.get_engine("a")
    clocks.advance(61)  # 19:00:01
    assert r.tick() == ["release"] and registry.loaded() == []
    assert r.status()["next_release"].startswith("2026-11-26T19:00")
    clocks.advance(13.5 * 3600)  # Thursday 08:30:01
    assert r.tick() == ["prewarm"] and registry.loaded() == ["a"]
    assert r.tick() == []  # once per occurrence


def test_wake_is_recorded(registry: ModelRegistry) -> None:
    r = residency(registry, Clocks())
    r.record_wake("a", 0.25)
    s = r.status()
    assert s["wakes"] == 1 and s["last_wake"]["seconds"] == 0.25 and s["last_wake"]["model"] == "a"


def test_background_thread_starts_and_stops(registry: ModelRegistry) -> None:
    r = ModelResidency(registry, idle_release_s=0.05, drop_cache=False)
    registry.get_engine("a")
    r.start(interval_s=0.02)
    try:
        for _ in range(100):
            if not registry.loaded():
                break
            asyncio.run(asyncio.sleep(0.02))
    finally:
        r.stop()
    assert registry.loaded() == []


def test_a_scheduled_release_waits_for_the_requests_running(registry: ModelRegistry,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """At 19:00 every model was unloaded in the middle of whatever answer was streaming ("model_unloaded")."""
    import dataclasses

    clocks = Clocks()
    r = residency(registry, clocks, timetable=Timetable.parse(["mon-fri 08:30"], ["mon-fri 19:00"]))
    engine = registry.get_engine("a")
    real = engine.stats
    running = {"n": 1}
    monkeypatch.setattr(engine, "stats", lambda: dataclasses.replace(real(), running=running["n"]))
    clocks.advance(3601)  # 19:00:01, an answer still streaming
    assert r.tick() == [] and registry.loaded() == ["a"]
    clocks.advance(30)
    assert r.tick() == [] and registry.loaded() == ["a"]
    running["n"] = 0  # it ended: the release happens at the next tick
    clocks.advance(1)
    assert r.tick() == ["release"] and registry.loaded() == []
    assert r.last_release is not None and r.last_release.reason == "schedule"
    assert r.status()["next_release"].startswith("2026-11-26T19:00")
