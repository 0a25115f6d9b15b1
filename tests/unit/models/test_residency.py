"""Idle release and the schedule, with fake engines, fake or stand-in embedders and injected clocks."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from pathlib import Path

import numpy as np
import pytest

from inhouse.engine.params import GenerationRequest, SamplingParams
from inhouse.models.registry import ModelRegistry
from inhouse.models.residency import ModelResidency, ResidentEmbedder
from inhouse.models.timetable import Timetable
from inhouse.testing.fakes import build_fake_engine
from inhouse.testing.gguf_writer import write_tiny_model
from inhouse.testing.standin_e5 import standin_e5


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
    rss = itertools.count(100_000, -100)  # each reading lower: a release gives memory back
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


# -- the knowledge base's embedder ------------------------------------------------------------------------------


class FakeResidentEmbedder:
    """The embedder as idle release sees it (``ResidentEmbedder``): a call loads the model if it is not (reporting
    the load to ``on_load``), and a release is refused while ``busy``."""

    name = "e5-fake"
    engine = "fake"

    def __init__(self) -> None:
        self.on_load: object = None
        self.loaded = False
        self.busy = False
        self.calls = 0

    def embed(self) -> None:
        self.calls += 1
        if not self.loaded:
            self.loaded = True
            if callable(self.on_load):
                self.on_load(0.5)

    def prepare(self) -> None:
        self.embed()

    def release(self) -> bool:
        if self.busy:
            return False
        self.loaded = False
        return True


def test_idle_release_frees_the_embedder_on_its_own_timer(registry: ModelRegistry) -> None:
    """After idle release the e5 embedder stayed loaded (150-300 MB) while /v1/status said nothing was."""
    clocks = Clocks()
    emb = FakeResidentEmbedder()
    r = residency(registry, clocks, idle_release_s=60, embedder=emb)
    woke: list[tuple[str, float]] = []
    r.on_embedder_wake = lambda name, s: woke.append((name, s))
    registry.get_engine("a")
    emb.embed()  # a search: the embedder's first load is a wake, as a model's cold start is
    assert r.tick() == []
    assert r.status()["embedder"] == {"model": "e5-fake", "engine": "fake", "loaded": True, "busy": False,
                                      "idle_for_s": 0.0, "idle_release_in_s": 60.0}
    clocks.advance(40)
    emb.embed()  # searches keep the embedder...
    assert r.tick() == []
    clocks.advance(21)
    assert r.tick() == ["idle-release"]  # ...not the chat model: each has its own timer
    assert registry.loaded() == [] and emb.loaded
    assert r.last_release is not None and r.last_release.models == ["a"]
    clocks.advance(40)
    assert r.tick() == ["idle-release"] and not emb.loaded
    assert r.last_release.models == ["e5-fake"] and r.last_release.reason == "idle"
    assert r.status()["embedder"]["loaded"] is False and r.status()["embedder"]["idle_release_in_s"] is None
    emb.embed()  # the next search loads it again: a wake
    assert emb.loaded and r.status()["wakes"] == 2 and r.status()["last_wake"]["model"] == "e5-fake"
    assert woke == [("e5-fake", 0.5), ("e5-fake", 0.5)]


def test_an_embedder_in_use_is_not_released(registry: ModelRegistry) -> None:
    """An ingest or a search in progress keeps the embedder: idle release counts it as activity, a manual release
    leaves it (the embedder refuses), and a scheduled one waits for it."""
    clocks = Clocks()
    emb = FakeResidentEmbedder()
    r = residency(registry, clocks, idle_release_s=60, embedder=emb,
                  timetable=Timetable.parse(["mon-fri 08:30"], ["mon-fri 19:00"]))
    emb.embed()
    emb.busy = True  # a long upload's embedding
    clocks.advance(120)
    assert r.tick() == [] and emb.loaded
    assert r.status()["embedder"]["busy"] is True
    assert r.release("manual") is None and emb.loaded  # only the embedder was loaded, and it is in use
    registry.get_engine("a")
    record = r.release("manual")
    assert record is not None and record.models == ["a"] and emb.loaded
    clocks.advance(3600)  # 19:00 passes while it still embeds
    assert r.tick() == [] and emb.loaded
    emb.busy = False
    clocks.advance(1)
    assert r.tick() == ["release"] and not emb.loaded
    assert r.last_release is not None and r.last_release.models == ["e5-fake"]


def test_prewarm_loads_the_embedder_and_is_no_wake(registry: ModelRegistry) -> None:
    clocks = Clocks()
    emb = FakeResidentEmbedder()
    r = residency(registry, clocks, embedder=emb)
    assert r.prewarm() == ["a", "e5-fake"] and emb.loaded
    assert r.status()["wakes"] == 0
    assert r.release("schedule") is not None and not emb.loaded


def test_release_frees_the_e5_embedder_and_the_next_search_loads_it_again(registry: ModelRegistry,
                                                                         tmp_path: Path) -> None:
    """The real e5 embedder (a tiny e5 file, a stand-in encoder): release closes its encoder and drops its tokenizer
    and model file; the next query loads them again, with the same vector, and that is a wake."""
    emb, encoders = standin_e5(tmp_path)
    assert isinstance(emb, ResidentEmbedder)
    r = residency(registry, Clocks(), embedder=emb)
    assert r.release("manual") is None  # nothing loaded yet
    first = emb.embed_query("annual leave")
    assert emb.loaded and len(encoders) == 1
    record = r.release("manual")
    assert record is not None and record.models == ["multilingual-e5-small"]
    assert not emb.loaded and encoders[0].closed
    assert r.status()["embedder"]["loaded"] is False
    again = emb.embed_query("annual leave")
    assert np.allclose(again, first) and len(encoders) == 2 and emb.loaded
    assert r.status()["wakes"] == 2 and r.status()["last_wake"]["model"] == "multilingual-e5-small"
