"""``ModelServer``: one model on one machine, as a Ray Serve replica.

It is today's engine, built on its machine the way ``inhouse serve`` builds it (``bootstrap.build_model_host``: the
machine's own model cache and the tuned profile matching its own CPU), behind a streaming ``generate``. Serve caps
its in-flight calls at ``max_ongoing_requests`` = the engine's ``max_running`` (``cluster/app.py``), so a full
replica is skipped by the router instead of queueing inside the engine. Closing the stream (the client went away, or
the ingress cancelled) closes the engine's delta stream, which aborts the request in the engine's next step.

The replica knows nothing of keys, quotas or audit: the ingress did all of that before calling it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

from inhouse.cluster.wire import ErrorRecord, ReplicaInfo, coalesce, error_record
from inhouse.config import Settings
from inhouse.engine.params import Delta, GenerationRequest
from inhouse.engine.protocol import EngineClient, EngineStats
from inhouse.errors import InhouseError, InvalidRequest, Unavailable

log = logging.getLogger(__name__)


def uncap_threads() -> None:
    """Ray sets OMP_NUM_THREADS=1 in actors that reserve no CPU; our replicas size their own threads (the engine's
    n_threads and tuned profile, kb.embed_threads), as under `inhouse serve`, so OpenMP in llama.cpp (and an engine
    child process) must not inherit that cap. Call before llama.cpp is imported: OpenMP reads it once."""
    if os.environ.get("OMP_NUM_THREADS") == "1":
        del os.environ["OMP_NUM_THREADS"]


class ModelServer:
    """A Serve deployment class (wrapped by ``cluster/app.py``); ``engine="fake"`` runs the scripted FakeBackend
    engine of the tests (``fake_delay_s`` per step, answering ``fake_reply``) instead of llama.cpp."""

    def __init__(self, model: str, *, engine: str = "llama", engine_overrides: dict[str, Any] | None = None,
                 fake_delay_s: float = 0.0, fake_reply: str | None = None) -> None:
        import ray
        from ray import serve

        uncap_threads()
        settings = Settings()  # this machine's: its INHOUSE_DATA_DIR, INHOUSE_CONFIG, INHOUSE_* variables
        if engine_overrides:
            settings.engine = type(settings.engine).model_validate(
                {**settings.engine.model_dump(exclude_unset=True), **engine_overrides})
        self._closers: list[Callable[[], None]] = []
        get_engine: Callable[[], EngineClient]  # loads the model when idle release unloaded it (blocking)
        loaded: Callable[[], EngineClient | None]  # the engine if it is loaded, never loading it
        if engine == "fake":
            from inhouse.engine.backends.fake import reply_script
            from inhouse.testing.fakes import build_fake_engine

            script = reply_script(fake_reply) if fake_reply else None
            fake = build_fake_engine(model, delay_s=fake_delay_s, script=script, **settings.engine.model_dump())
            get_engine, loaded, profile = (lambda: fake), (lambda: fake), "none (fake engine)"
            self._closers.append(fake.close)
        elif engine == "llama":
            from inhouse.bootstrap import build_model_host
            from inhouse.models.residency import ModelResidency
            from inhouse.models.tuning.status import tuned_status

            registry, profiles = build_model_host(settings)
            spec = registry.resolve(model, require_present=True)
            status, message = tuned_status(profiles.match(spec.sha256), registry, settings.engine)
            profile = message or status  # what the replica does with it, as `inhouse models list` says
            registry.get_engine(model)  # loaded now: the replica is ready once its model is
            get_engine = lambda: registry.get_engine(model)  # noqa: E731
            loaded = lambda: dict(registry.loaded_engines()).get(model)  # noqa: E731
            self._closers.append(registry.close)
            if settings.models.idle_release_s:
                # Idle release inside a replica that autoscaling keeps (min_replicas > 0): the engine's memory
                # goes back after models.idle_release_s without requests and the next request reloads it.
                residency = ModelResidency(registry, idle_release_s=settings.models.idle_release_s)
                residency.start()
                self._closers.insert(0, residency.stop)
        else:
            raise InvalidRequest(f"Unknown engine {engine!r}: llama or fake.")
        self._get_engine, self._loaded = get_engine, loaded
        self._interval_s = settings.cluster.stream_interval_s
        self.info = ReplicaInfo(model=model, replica=serve.get_replica_context().replica_id.unique_id,
                                node_id=ray.get_runtime_context().get_node_id(), pid=os.getpid(),
                                n_ctx=get_engine().n_ctx,
                                max_running=settings.engine.max_running, profile=profile)
        self._served = 0
        log.info("model replica %s of %s on node %s: %s", self.info.replica, model, self.info.node_id, profile)

    async def _engine(self) -> EngineClient:
        """The engine, reloaded off the event loop if idle release unloaded it."""
        engine = self._loaded()
        return engine if engine is not None else await asyncio.to_thread(self._get_engine)

    async def describe(self, replica_id: str | None = None) -> ReplicaInfo:
        return self.info

    async def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        engine = await self._engine()
        return engine.tokenize(text, add_special=add_special, parse_special=parse_special)

    async def generate(self, request: GenerationRequest, affinity_key: str | None = None
                       ) -> AsyncIterator[Delta | ErrorRecord]:
        """The engine's deltas. An error before the first one comes as one ``ErrorRecord`` (the ingress raises it
        again with its status); ``affinity_key`` is read by the router, not here."""
        self._served += 1
        deltas = (await self._engine()).generate(request)
        try:
            try:
                first = await deltas.__anext__()
            except StopAsyncIteration:
                return
            except InhouseError as exc:
                yield error_record(exc)
                return
            yield first
            if first.finish_reason is not None:
                return
            async for delta in coalesce(deltas, self._interval_s):
                yield delta
        finally:
            await deltas.aclose()  # type: ignore[attr-defined]

    async def stats(self, replica_id: str | None = None) -> dict[str, Any]:
        """This replica's engine counters (``EngineStats``), who it is, and the requests it was given."""
        engine = self._loaded()
        stats = engine.stats() if engine is not None else EngineStats(self.info.model)
        return {**asdict(stats), **asdict(self.info), "served": self._served, "loaded": engine is not None}

    def check_health(self) -> None:
        """Serve's health check: a failed engine takes the replica out of routing (Serve restarts it)."""
        engine = self._loaded()  # released on purpose (idle) is healthy: the next request reloads it
        if engine is not None and not engine.healthy():
            raise Unavailable(f"the engine of {self.info.model} on this replica is not healthy")

    def __del__(self) -> None:
        for close in getattr(self, "_closers", ()):
            try:
                close()
            except Exception:
                log.exception("closing the model replica failed")
