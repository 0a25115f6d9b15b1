"""``RemoteEngine``: the ``EngineClient`` of the ingress, whose engine is a model's replicas in the cluster.

The ingress's registry loads models through ``remote_engine_factory`` instead of llama.cpp, so ``ChatService``,
``serving.py`` and the routes run unchanged: ``generate`` streams from ``handle.options(stream=True).generate``,
``tokenize`` is a short call to any replica. Whichever replica serves a request is the router's choice
(``cluster/router.py``, by ``GenerationRequest.affinity_key``).

Failures at the boundary:

* an ``inhouse.errors`` error raised by the replica before the first delta comes back as the same kind of error
  (``wire.ErrorRecord``), so a full engine is still a 429 and a long prompt a 400;
* a replica that dies (its machine, its process) before the first delta is ``EngineCrashed`` (503, retry); after
  it, the stream ends with an ``error`` delta coded ``engine_crashed``, which ``serving.py`` turns into the SSE error
  event. Nothing waits forever:
  Ray reports the dead actor to the waiting stream, and the router stops choosing it;
* a stream Serve cancelled (it cancels the calls of an ingress request whose client left) ends with
  ``asyncio.CancelledError``, as the request's own task does: the request is recorded aborted, not failed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any, cast

from inhouse.cluster.wire import ErrorRecord, ReplicaInfo, error_from
from inhouse.engine.params import Delta, GenerationRequest
from inhouse.engine.protocol import EngineStats
from inhouse.errors import EngineCrashed, EngineFailure, InhouseError, Unavailable

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

    from inhouse.engine.protocol import EngineClient
    from inhouse.models.spec import ModelSpec

log = logging.getLogger(__name__)

REPLICA_PREFIX = "SERVE_REPLICA::"
_STATS_FIELDS = tuple(f.name for f in fields(EngineStats)
                      if f.name not in ("model", "crashes", "queue_wait_estimate_s"))


def _lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the replica (its actor, its process or its machine) is gone."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return isinstance(exc, (RayActorError, ActorDiedError, ActorUnavailableError))


def _cancelled(exc: BaseException) -> bool:
    """Whether ``exc`` says Serve cancelled the call: it cancels the calls of a request it cancelled (the ingress's,
    whose client left), which then raise ``RequestCancelledError`` (a ``TaskCancelledError``) instead of the
    ``CancelledError`` the request's own task gets."""
    from ray.exceptions import TaskCancelledError

    return isinstance(exc, TaskCancelledError) or isinstance(_unwrapped(exc), TaskCancelledError)


def _unwrapped(exc: BaseException) -> BaseException:
    from ray.exceptions import RayTaskError

    cause = exc.cause if isinstance(exc, RayTaskError) else None
    return cause if isinstance(cause, BaseException) else exc


def call_replica(handle: DeploymentHandle, method: str, *args: Any, what: str, timeout_s: float, **kwargs: Any
                 ) -> Any:
    """A short blocking call to one of a deployment's replicas (from a worker thread, never the event loop), its
    failures in the error hierarchy: an ``ErrorRecord`` answer or an ``inhouse.errors`` error raised in the
    replica comes back as the same kind of error; no answer within ``timeout_s`` (no replica yet, a cold start
    that takes too long) and a replica that went away are ``Unavailable`` (503, retry); anything else is
    ``EngineFailure``. ``what`` names the deployment in messages."""
    try:
        answer = getattr(handle, method).remote(*args, **kwargs).result(timeout_s=timeout_s)
    except TimeoutError as exc:
        raise Unavailable(f"No replica of {what} answered within {timeout_s:g} s.") from exc
    except Exception as exc:
        cause = _unwrapped(exc)
        if isinstance(cause, InhouseError):
            raise cause from exc
        if _lost(exc):
            raise Unavailable(f"The replica of {what} went away; retry.") from exc
        raise EngineFailure(f"The replica of {what} failed: {type(cause).__name__}.") from exc
    if isinstance(answer, ErrorRecord):
        raise error_from(answer)
    return answer


class RemoteEngine:
    """Implements ``EngineClient`` over the replicas of one model deployment."""

    def __init__(self, model: str, handle: DeploymentHandle, *, app_name: str, call_timeout_s: float,
                 stats_max_age_s: float = 2.0) -> None:
        self._model = model
        self._handle = handle
        self._app = app_name
        self._timeout_s = call_timeout_s
        # Waits for a first replica (a cold start from zero replicas included): the model is "loaded" once one is up.
        info: ReplicaInfo = self._call("describe")
        self._n_ctx = info.n_ctx
        self._stats_lock = threading.Lock()
        self._stats = EngineStats(model)
        self._stats_at = 0.0
        self._stats_max_age_s = stats_max_age_s
        self._refreshing = False

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return call_replica(self._handle, method, *args, what=self._model, timeout_s=self._timeout_s, **kwargs)

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        tokens: list[int] = self._call("tokenize", text, add_special, parse_special)
        return tokens

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        stream = cast("DeploymentResponseGenerator[Any]", self._handle.options(stream=True).generate.remote(
            request, affinity_key=request.affinity_key))
        started = False
        try:
            async for item in stream:
                if isinstance(item, ErrorRecord):
                    raise error_from(item)
                started = True
                yield item
        except InhouseError:
            raise
        except Exception as exc:
            if _cancelled(exc):  # the request was cancelled (its client left): not a failure of the replica
                raise asyncio.CancelledError from exc
            lost = _lost(exc)
            what = "went away" if lost else f"failed ({type(_unwrapped(exc)).__name__})"
            log.error("request %s: the replica of %s %s: %s", request.request_id, self._model, what, exc)
            if not started:
                kind = EngineCrashed if lost else EngineFailure
                raise kind(f"The replica of {self._model} {what}; retry.") from exc
            # A lost replica is a crashed engine to the client (a coded SSE error event: retry); another failure
            # stays internal (its details are in the log).
            yield Delta(request.request_id, finish_reason="error",
                        error=f"The model replica serving this request {what}; retry." if lost else None,
                        error_code=EngineCrashed.code if lost else None)
        finally:
            stream.cancel()  # a no-op once the stream ended; otherwise the replica's generator is closed

    def abort(self, request_id: str) -> None:
        """Closing ``generate``'s stream cancels the replica's generator, which aborts the request there."""

    def healthy(self) -> bool:
        return True  # Serve health-checks the replicas and routes around a failed one

    def stats(self) -> EngineStats:
        """The sum over the model's replicas, refreshed in the background at most every ``stats_max_age_s`` (a
        metrics scrape never waits for the cluster)."""
        with self._stats_lock:
            stale = time.monotonic() - self._stats_at > self._stats_max_age_s
            if stale and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, name=f"stats-{self._model}", daemon=True).start()
            return self._stats

    def replica_stats(self) -> list[dict[str, Any]]:
        """Each live replica's counters (``ModelServer.stats``), one call per replica."""
        return replica_stats(self._handle, self._app, self._deployment_name(), timeout_s=min(self._timeout_s, 10.0))

    def _deployment_name(self) -> str:
        return str(self._handle.deployment_name)

    def _refresh(self) -> None:
        try:
            total = sum_stats(self._model, self.replica_stats())
        except Exception:
            log.exception("collecting the replicas' stats of %s failed", self._model)
            total = None
        with self._stats_lock:
            if total is not None:
                self._stats = total
            self._stats_at = time.monotonic()
            self._refreshing = False


def sum_stats(model: str, per_replica: list[dict[str, Any]]) -> EngineStats:
    """The counters summed; the engine processes' crashes summed by cause; the queue-wait estimate of the replica
    that would serve a new request soonest."""
    total = EngineStats(model)
    for name in _STATS_FIELDS:
        setattr(total, name, sum(int(s.get(name, 0)) for s in per_replica))
    total.queue_wait_estimate_s = min((float(s.get("queue_wait_estimate_s", 0.0)) for s in per_replica), default=0.0)
    for s in per_replica:
        for cause, n in (s.get("crashes") or {}).items():
            total.crashes[cause] = total.crashes.get(cause, 0) + int(n)
    return total


def replica_ids(app_name: str, deployment: str) -> list[str]:
    """The unique ids of a deployment's replica actors (starting ones included), from Ray's named actors."""
    import ray

    prefix = f"{REPLICA_PREFIX}{app_name}#{deployment}#"
    return sorted(a["name"][len(prefix):] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a.get("namespace") == "serve" and a["name"].startswith(prefix))


def replica_stats(handle: DeploymentHandle, app_name: str, deployment: str, *, timeout_s: float
                  ) -> list[dict[str, Any]]:
    """``stats`` (``ModelServer``, ``EmbedderServer``) of every replica that answers within ``timeout_s``. The
    router sends a call carrying ``replica_id`` to that replica, or, while it is not running (starting, or dead but
    still named), to another one, whose answer is dropped here: it names another replica."""
    pending = [(r, handle.stats.remote(replica_id=r)) for r in replica_ids(app_name, deployment)]
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    for replica, response in pending:
        try:
            answer = response.result(timeout_s=max(0.1, deadline - time.monotonic()))
        except Exception as exc:  # starting, stopping or dead: not counted this time
            log.debug("a replica of %s did not answer: %s", deployment, exc)
            response.cancel()
            continue
        if answer.get("replica") == replica:
            out.append(answer)
    return out


def remote_engine_factory(handles: dict[str, DeploymentHandle], *, app_name: str, call_timeout_s: float
                          ) -> Callable[[ModelSpec], EngineClient]:
    """The ingress registry's engine factory: a model is "loaded" once a replica of it answers."""

    def load(spec: ModelSpec) -> EngineClient:
        handle = handles.get(spec.name)
        if handle is None:
            raise Unavailable(f"The model '{spec.name}' is registered but not deployed in this cluster; deploy it "
                              f"with `inhouse serve --cluster ADDRESS --model {spec.name}`.")
        return RemoteEngine(spec.name, handle, app_name=app_name, call_timeout_s=call_timeout_s)

    return load
