"""Which models stay in memory, and when: idle release and the "AI hours" schedule.

``ModelResidency`` watches the loaded engines. With ``idle_release_s`` set, after that many seconds in
which no engine did any work, every model is unloaded: the engine thread stops, llama.cpp frees its
context and model (its weights are memory-mapped, so freeing the model unmaps them), glibc is asked to
return freed heap to the kernel, and the kernel is told the weight file's cached pages are no longer
needed. The machine gets its memory and cores back; the next request loads the model again (the
registry does that transparently) and the wait is reported as a *wake*.

The schedule loads the default (and preloaded) models at ``prewarm`` times and releases them at
``release`` times. ``tick()`` does all of it; the server calls it every second from a background thread,
and tests call it directly with injected clocks.

Activity is read from the engines' own counters (steps, running and waiting requests), so the API does
not have to report every request. A request that took its engine just before a release fails with
"unloading; retry" — the window is one scheduler step wide and needs an idle timer to have expired.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inhouse.hardware.cpu import drop_file_cache, process_tree_rss_bytes, return_free_heap
from inhouse.models.registry import ModelRegistry
from inhouse.models.timetable import Timetable

log = logging.getLogger(__name__)


def local_now() -> dt.datetime:
    return dt.datetime.now().astimezone()


@dataclass(frozen=True)
class ReleaseRecord:
    at: str
    reason: str  # "idle", "schedule" or "manual"
    models: list[str]
    rss_before_bytes: int
    rss_after_bytes: int
    seconds: float


@dataclass(frozen=True)
class WakeRecord:
    at: str
    model: str
    seconds: float


class ModelResidency:
    def __init__(
        self,
        registry: ModelRegistry,
        *,
        idle_release_s: float = 0.0,
        timetable: Timetable | None = None,
        prewarm_models: Callable[[], list[str]] = list,
        clock: Callable[[], dt.datetime] = local_now,
        monotonic: Callable[[], float] = time.monotonic,
        rss: Callable[[], int] = process_tree_rss_bytes,
        drop_cache: bool = True,
    ) -> None:
        self._registry = registry
        self.idle_release_s = idle_release_s
        self._timetable = timetable or Timetable()
        self._prewarm_models = prewarm_models
        self._clock = clock
        self._mono = monotonic
        self._rss = rss
        self._drop_cache = drop_cache
        self._lock = threading.RLock()  # one tick / release / prewarm at a time
        self._last_activity = monotonic()
        self._snapshot: dict[str, tuple[int, ...]] = {}
        now = clock()
        self._next_prewarm = self._timetable.next_prewarm(now)
        self._next_release = self._timetable.next_release(now)
        # A scheduled release that came while requests ran: done at the first tick with none (not in their middle).
        self._release_waiting = False
        self.last_release: ReleaseRecord | None = None
        self.last_wake: WakeRecord | None = None
        self.wakes = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- what the API reports --------------------------------------------------------------------------

    def touch(self) -> None:
        """Count as activity now (e.g. a request is about to use a model)."""
        with self._lock:
            self._last_activity = self._mono()

    def record_wake(self, model: str, seconds: float) -> None:
        with self._lock:
            self.wakes += 1
            self.last_wake = WakeRecord(at=self._clock().isoformat(timespec="seconds"), model=model,
                                        seconds=seconds)
            self._last_activity = self._mono()

    def status(self) -> dict[str, Any]:
        with self._lock:
            self._observe()
            loaded = []
            for name, engine in self._registry.loaded_engines():
                stats = engine.stats()
                path = _model_path(engine)
                size = path.stat().st_size if path is not None and path.exists() else 0
                loaded.append({"model": name, "weights_bytes": size, "running": stats.running,
                               "waiting": stats.waiting, "engine": _engine_state(engine),
                               "crashes": sum(stats.crashes.values())})
            idle_for = max(0.0, self._mono() - self._last_activity)
            release_in = None
            if self.idle_release_s and loaded:
                release_in = max(0.0, self.idle_release_s - idle_for)
            return {
                "loaded": loaded,
                "rss_bytes": self._rss(),
                "idle_release_s": self.idle_release_s or None,
                "idle_for_s": round(idle_for, 1),
                "idle_release_in_s": None if release_in is None else round(release_in, 1),
                "next_prewarm": _iso(self._next_prewarm),
                "next_release": _iso(self._next_release),
                "prewarm": [t.text for t in self._timetable.prewarm],
                "release": [t.text for t in self._timetable.release],
                "last_release": asdict(self.last_release) if self.last_release else None,
                "last_wake": asdict(self.last_wake) if self.last_wake else None,
                "wakes": self.wakes,
            }

    # -- the decisions -----------------------------------------------------------------------------------

    def tick(self) -> list[str]:
        """Observe activity, run due schedule events, release when idle. Returns what it did (for tests)."""
        done: list[str] = []
        with self._lock:
            busy = self._observe()
            now = self._clock()
            due: list[tuple[dt.datetime, str]] = []
            if self._next_prewarm is not None and now >= self._next_prewarm:
                due.append((self._next_prewarm, "prewarm"))
            if self._next_release is not None and now >= self._next_release:
                due.append((self._next_release, "release"))
            for _, kind in sorted(due):
                if kind == "prewarm":
                    self._release_waiting = False  # the day starts again: an evening's release still waiting is moot
                    self.prewarm()
                    done.append(kind)
                else:
                    self._release_waiting = True
            if self._release_waiting and not busy:
                self._release_waiting = False
                self.release("schedule")
                done.append("release")
            if due:
                self._next_prewarm = self._timetable.next_prewarm(now)
                self._next_release = self._timetable.next_release(now)
            idle = self._mono() - self._last_activity
            if self.idle_release_s and self._registry.loaded() and idle >= self.idle_release_s:
                self.release("idle")
                done.append("idle-release")
        return done

    def _observe(self) -> bool:
        """Note activity from the engines' counters; whether any request is running or waiting now."""
        snapshot: dict[str, tuple[int, ...]] = {}
        busy = False
        for name, engine in self._registry.loaded_engines():
            s = engine.stats()
            snapshot[name] = (s.steps, s.prompt_tokens, s.generated_tokens, s.aborted)
            busy = busy or s.running > 0 or s.waiting > 0
        # A model that went away (LRU eviction) is not activity by itself; a new one or new work is.
        vanished_only = all(self._snapshot.get(k) == v for k, v in snapshot.items())
        if busy or not vanished_only:
            self._last_activity = self._mono()
        self._snapshot = snapshot
        return busy

    def prewarm(self) -> list[str]:
        loaded = []
        with self._lock:
            for name in self._prewarm_models():
                try:
                    self._registry.get_engine(name)
                    loaded.append(name)
                except Exception:  # one model failing to load must not stop the others (or the server)
                    log.exception("prewarm of %s failed", name)
            self._last_activity = self._mono()
        log.info("prewarmed %s", ", ".join(loaded) or "nothing")
        return loaded

    def release(self, reason: str) -> ReleaseRecord | None:
        """Unload every model and give its memory back. None when nothing was loaded."""
        with self._lock:
            engines = self._registry.loaded_engines()
            if not engines:
                return None
            t0 = time.perf_counter()
            rss_before = self._rss()
            paths = [p for _, e in engines if (p := _model_path(e)) is not None]
            for name, _ in engines:
                self._registry.unload(name)
            return_free_heap()
            if self._drop_cache:
                for path in paths:
                    drop_file_cache(path)
            record = ReleaseRecord(at=self._clock().isoformat(timespec="seconds"), reason=reason,
                                   models=[n for n, _ in engines], rss_before_bytes=rss_before,
                                   rss_after_bytes=self._rss(), seconds=time.perf_counter() - t0)
            self.last_release = record
            self._snapshot = {}
        log.info("released %s (%s): RSS %.0f MB -> %.0f MB", ", ".join(record.models), reason,
                 record.rss_before_bytes / 2**20, record.rss_after_bytes / 2**20)
        return record

    # -- the background thread -------------------------------------------------------------------------

    def start(self, interval_s: float = 1.0) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.tick()
                except Exception:  # the ticker must survive a failing load or unload
                    log.exception("model residency tick failed")

        self._thread = threading.Thread(target=run, name="model-residency", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def _model_path(engine: Any) -> Path | None:
    # An engine in a child process knows its path; an in-process one through its backend.
    path = getattr(engine, "model_path", None) or getattr(getattr(engine, "backend", None), "model_path", None)
    return path if isinstance(path, Path) else None


def _engine_state(engine: Any) -> str:
    """"process 1234" (a child process serving), its state while it is not ("restarting", "failed"), or
    "in-process"."""
    pid = getattr(engine, "pid", None)
    if pid is not None:
        return f"process {pid}"
    state = getattr(engine, "state", None)
    return state if isinstance(state, str) else "in-process"


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="minutes") if value is not None else None
