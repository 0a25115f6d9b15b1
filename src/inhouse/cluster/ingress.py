"""``Ingress``: today's whole HTTP app (auth, quotas, ACL, retrieval, templates, SSE, the web UI) as a Ray Serve
replica, its models reached through ``RemoteEngine`` handles instead of llama.cpp.

It is ``bootstrap.build_services`` with one seam changed (the engine factory) and ``api.app.build_app`` on top,
served by Serve's HTTP proxy. Its stores are those of its settings: the SQLite files of its data directory, or
PostgreSQL with ``store.url``. There are ``cluster.ingress_replicas`` of them on the head machine (resource
``inhouse_ingress``); more than one only with PostgreSQL, where they share every store, the requests/minute windows
and the audit chain (docs/scale-out.md). Each replica writes the chain under its own node name,
``<store.node or host>/ingress-<replica>``, and when it starts closes the requests a replica that died left open.

Stopping (a deploy with other settings, the app deleted): Serve waits for a replica's requests to end, up to the
ingress's grace (``cluster/app.INGRESS_GRACE_S``), then kills it; ``__del__`` runs only once they ended, and a long
stream does not. So each replica reads the controller's view of itself every ``STOP_POLL_S``, and once it is
STOPPING fails what still runs ``DRAIN_BEFORE_S`` before the kill, as ``inhouse serve`` does: its engines are
``DrainedEngine`` s under one ``Drain``, whose live generations then end with an error delta (``shutting_down``), so
each request ends with its final SSE error event (or a 503) and its final audit record (``error``) instead of being
cut.

Two more seams in cluster mode, both wired here: with an ``embedder`` handle (``cluster.embedder = "deployment"``)
the knowledge base embeds through ``RemoteEmbedder`` (the Embedder deployment) instead of loading e5 in this process;
with a ``metrics_board`` handle (several ingress replicas) /metrics sums the HTTP series of all of them
(``BoardExchange``).

A client that leaves: Serve's proxy cancels the request, and Ray with it the call ``receive()`` waits on, which then
raises instead of returning ``http.disconnect``; ``DisconnectOnCancel`` turns that back into the disconnect, so the
request is recorded ``aborted`` (499) as anywhere else, not as a server error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from inhouse.cluster.remote import remote_engine_factory
from inhouse.config import Settings
from inhouse.engine.params import Delta
from inhouse.errors import Unavailable

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle

    from inhouse.api.metrics import SeriesExchange
    from inhouse.engine.params import GenerationRequest
    from inhouse.engine.protocol import EngineClient, EngineStats
    from inhouse.models.spec import ModelSpec
    from inhouse.services import Services

log = logging.getLogger(__name__)

# How often a replica asks the controller whether it is being stopped, and how long before Serve's kill
# (``INGRESS_GRACE_S`` after the stop began) what still runs is failed: time to send the final events and records.
STOP_POLL_S = 1.0
DRAIN_BEFORE_S = 2.5
SHUTTING_DOWN = "shutting_down"

# ASGI's shapes, spelled out: Starlette, whose ``starlette.types`` names them, is imported only in api/ and web/.
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class Drain:
    """The live generations of one ingress replica; ``stop`` (the replica is stopping) ends them all and refuses new
    ones. Thread-safe: each generation is ended on its own event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._live: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            live, self._live = self._live, set()
        for loop, stopped in live:
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing left to end
                loop.call_soon_threadsafe(stopped.set)

    def enter(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if self._stopped:
                raise Unavailable("The server is stopping; retry.", code=SHUTTING_DOWN)
            self._live.add(entry)
        return entry

    def leave(self, entry: tuple[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
        with self._lock:
            self._live.discard(entry)


class DrainedEngine:
    """An ``EngineClient`` over another (a ``RemoteEngine``) whose generations a ``Drain`` can end: each then ends
    as a closed local engine's does, with an ``error`` delta (code ``shutting_down``). It has no ``close``: the
    registry unloading or evicting a model in the ingress frees nothing here and must not end its streams."""

    def __init__(self, engine: EngineClient, drain: Drain) -> None:
        self._engine = engine
        self._drain = drain

    @property
    def model_name(self) -> str:
        return self._engine.model_name

    @property
    def n_ctx(self) -> int:
        return self._engine.n_ctx

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return self._engine.tokenize(text, add_special=add_special, parse_special=parse_special)

    def abort(self, request_id: str) -> None:
        self._engine.abort(request_id)

    def stats(self) -> EngineStats:
        return self._engine.stats()

    def healthy(self) -> bool:
        return self._engine.healthy()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        entry = self._drain.enter()
        stream = self._engine.generate(request)
        stop = asyncio.ensure_future(entry[1].wait())
        step: asyncio.Future[Delta] | None = None
        try:
            while True:
                step = asyncio.ensure_future(anext(stream))
                await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():  # drained: the replica's generator is cancelled below (remote.py aborts it)
                    yield Delta(request.request_id, finish_reason="error", error="The server is stopping; retry.",
                                error_code=SHUTTING_DOWN)
                    return
                try:
                    delta = step.result()
                except StopAsyncIteration:
                    return
                yield delta
        finally:
            self._drain.leave(entry)
            stop.cancel()
            if step is not None and not step.done():
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
            await stream.aclose()  # type: ignore[attr-defined]


def drained(load: Callable[[ModelSpec], EngineClient], drain: Drain) -> Callable[[ModelSpec], EngineClient]:
    """An engine factory whose engines' generations ``drain`` ends."""
    return lambda spec: DrainedEngine(load(spec), drain)


class DisconnectOnCancel:
    """The ingress app's outermost ASGI layer: ``receive()`` says ``http.disconnect`` when Serve cancelled the request.

    Serve's proxy reports a client that left by cancelling the replica's call (``ray.cancel``), and Ray cancels the
    calls that request has in flight with it, among them the one ``receive()`` waits on for the client's next message
    (``receive_asgi_messages`` on the proxy). Serve's receive then raises that ``TaskCancelledError`` (Serve's
    ``RequestCancelledError`` is one) instead of the disconnect it means, and hangs on every later call. Whichever
    came first decided the audit record: the request task's cancel (``aborted``, 499), or this error, which
    ``SSEResponse``'s disconnect watcher raised inside its task group (an ``ExceptionGroup``: ``error``, 500). Here it
    is the message ASGI has for a client that left, returned again on every later call, as Serve's receive does after
    a disconnect, and which the app handles everywhere (``ClientDisconnect`` while a body is read, ``SSEResponse``
    and ``run_until_disconnect`` stop the work). Other errors of ``receive()`` pass: they are the server's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from ray.exceptions import TaskCancelledError

        gone = False

        async def receive_or_disconnect() -> Message:
            nonlocal gone
            if not gone:
                try:
                    return await receive()
                except TaskCancelledError:
                    gone = True
            return {"type": "http.disconnect"}

        await self.app(scope, receive_or_disconnect, send)


def build_ingress_app(services: Services, *, series_exchange: SeriesExchange | None = None) -> Any:
    """``api.app.build_app`` as a Serve replica runs it (``DisconnectOnCancel`` outermost)."""
    from inhouse.api.app import build_app

    app = build_app(services, series_exchange=series_exchange)
    app.add_middleware(DisconnectOnCancel)
    return app


class Ingress:
    """A Serve deployment class (wrapped with ``serve.ingress()`` by ``cluster/app.py``)."""

    def __init__(self, settings: dict[str, Any], handles: dict[str, DeploymentHandle], app_name: str, *,
                 embedder: DeploymentHandle | None = None, metrics_board: DeploymentHandle | None = None) -> None:
        from ray import serve

        from inhouse.bootstrap import build_embedder_tokens, build_services
        from inhouse.cluster.metrics_board import BoardExchange
        from inhouse.cluster.remote_embedder import RemoteEmbedder
        from inhouse.store.build import node_name

        self._settings = Settings(**settings)
        timeout_s = self._settings.cluster.call_timeout_s
        replica = serve.get_replica_context().replica_id.unique_id
        self._settings.store.node = f"{node_name(self._settings)}/ingress-{replica}"
        # The local embedder answers only the tokenizer's part; its model is never loaded here.
        remote = (RemoteEmbedder(embedder, local=build_embedder_tokens(self._settings), call_timeout_s=timeout_s)
                  if embedder is not None else None)
        self._drain = Drain()
        self.services: Services = build_services(
            self._settings, embedder=remote,
            load_engine=drained(remote_engine_factory(handles, app_name=app_name, call_timeout_s=timeout_s),
                                self._drain))
        self._exchange = BoardExchange(metrics_board, replica) if metrics_board is not None else None
        self._close_interrupted()
        self._gone = threading.Event()  # __del__ ran: the watch ends
        threading.Thread(target=self._watch_stop, args=(app_name, serve.get_replica_context().deployment, replica),
                         name="stop-watch", daemon=True).start()
        log.info("ingress %s up: models %s, embedding %s, data in %s", replica, ", ".join(sorted(handles)),
                 "in the Embedder deployment" if remote else "here", self._settings.data_dir)

    def _close_interrupted(self) -> None:
        """A replica that died (Ray starts another, under another node name) left its running requests open, and
        what it kept through a store outage in its own spool files: take those over, then close the requests whose
        process is gone, as ``inhouse serve`` does at its start (only requests that name their process: the other
        replicas' are served)."""
        from inhouse.errors import InhouseError

        try:
            taken = self.services.take_over_previous_runs(per_process=True)
        except InhouseError as exc:  # the store is away: the next replica to start takes over and closes them
            log.warning("what ingress replicas that are gone left could not be taken over now: %s", exc.message)
            return
        if taken.charges or taken.records:
            log.warning("%d token charge(s) and %d audit record(s) kept by ingress replicas that are gone are taken "
                        "over", taken.charges, taken.records)
        if taken.interrupted:
            log.warning("%d request(s) of ingress replicas that are gone recorded as interrupted",
                        len(taken.interrupted))

    def _watch_stop(self, app_name: str, deployment: str, replica: str) -> None:
        from inhouse.cluster.app import INGRESS_GRACE_S

        while not self._gone.wait(STOP_POLL_S):
            try:
                state = replica_state(app_name, deployment, replica)
            except Exception as exc:  # the controller restarting: ask again
                log.debug("the state of ingress replica %s is unknown for now: %s", replica, exc)
                continue
            if state == "STOPPING":
                break
        else:
            return
        log.warning("ingress %s is stopping: what still runs in %g s is failed", replica,
                    INGRESS_GRACE_S - DRAIN_BEFORE_S - STOP_POLL_S)
        if not self._gone.wait(max(0.0, INGRESS_GRACE_S - DRAIN_BEFORE_S - STOP_POLL_S)):
            self._drain.stop()  # live generations end with their error event; new ones are refused
            self.services.registry.close()  # and nothing is loaded any more (503 shutting_down)

    def __serve_build_asgi_app__(self) -> Any:
        return build_ingress_app(self.services, series_exchange=self._exchange)

    def __del__(self) -> None:
        gone = getattr(self, "_gone", None)
        if gone is not None:
            gone.set()
        exchange = getattr(self, "_exchange", None)
        if exchange is not None:
            exchange.close()
        services = getattr(self, "services", None)
        if services is not None:
            services.close()


def replica_state(app_name: str, deployment: str, replica: str) -> str | None:
    """The controller's state of one replica (``RUNNING``, ``STOPPING`` …), from the details ``serve status`` shows
    (``ServeInstanceDetails``); None when it is not listed."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:
        return None
    details = client.get_serve_details()
    deployments = details.get("applications", {}).get(app_name, {}).get("deployments", {})
    for r in deployments.get(deployment, {}).get("replicas", []):
        if r.get("replica_id") == replica:
            return str(getattr(r.get("state"), "value", r.get("state")))
    return None
