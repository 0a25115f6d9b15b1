"""The life of one generation request (chat or text completion), top to bottom.

``routes.py`` has already authenticated the caller (``auth.require``: API key → actor → permission → the
key's requests/minute quota) and validated the body (``schemas.py``); it hands this module a typed
``GenerationCall``. ``wire.py`` turns what comes back into OpenAI JSON or server-sent events. In between,
in this order:

    1. limits         at most ``server.max_messages`` messages (a setting, so not in the schema)
    2. grounding      the ``knowledge`` extension: retrieval as the actor (their access always applies), the
                      prompt rebuilt from the passages; nothing relevant → ``NotCovered``, no model runs
    3. egress policy  may the request leave the machine, and to whom? (labels of the conversation and of the
                      retrieved passages, PII scan, redaction) → an external provider: ``Relayed``
    4. wake, prepare  load the model if idle release unloaded it (timed: ``X-Inhouse-Wake-Ms``), render the chat
                      template, tokenize, validate the sampling parameters (``chat/service.py``)
    5. write-ahead    the request's 'started' audit record; if it cannot be written: 503, nothing generated
    6. first token    submit to the engine and wait for the first delta: until then a failure (queue full,
                      context too long) is still a real HTTP status
    7. stream         ``LocalGeneration.events()``: every delta is measured (TTFT, inter-token latency) and
                      becomes a ``Text`` event; the end is one ``Finished`` (or ``Failed``) event
    8. finish         exactly once, however the generation ended (done, engine error, client gone): the
                      token counters, the audit record's token counts, the key's daily token quota

The request's final audit record is written by ``AuditMiddleware`` (``api/audit_trail.py``) when the response
ends. A client that goes away cancels the work in progress (``streaming.run_until_disconnect`` before the first
byte, ``streaming.SSEResponse`` after it); closing the engine's delta stream aborts the request in the engine.

This is the seam a new API (the Responses API) or a remote engine plugs into: a call in, events out; the engine
itself is reached through ``ChatService`` → ``EngineClient``, local or not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from inhouse.api.audit_trail import note, note_route, write_started
from inhouse.api.openai.knowledge import ground_chat
from inhouse.api.openai.relay import Relayed, relay
from inhouse.api.streaming import run_until_disconnect
from inhouse.chat.service import OutputAccumulator, Usage
from inhouse.errors import EngineFailure, InvalidRequest, Unavailable

if TYPE_CHECKING:
    from starlette.requests import Request

    from inhouse.api.metrics import GenerationTimer, Metrics
    from inhouse.chat.service import CompletionResult, Kind, PreparedGeneration
    from inhouse.engine.params import Delta
    from inhouse.governance.egress.router import RoutedRequest
    from inhouse.kb.answer import Grounding
    from inhouse.models.registry import ModelRegistry
    from inhouse.models.residency import ModelResidency
    from inhouse.services import Services
    from inhouse.types import Actor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationCall:
    """One generation request as this module sees it: no HTTP, no wire format."""

    kind: Kind  # "chat" (messages) or "completion" (prompt)
    body: dict[str, Any]  # the OpenAI request fields the caller sent
    actor: Actor
    stream: bool = False
    received_s: float = field(default_factory=time.perf_counter)  # time to first token counts from here


@dataclass(frozen=True)
class NotCovered:
    """Step 2 found nothing relevant: the answer is the fixed "not covered" sentence, no model ran."""

    model: str
    question: str


@dataclass(frozen=True)
class Text:
    """A piece of the answer, as generated (held back instead while tool calls may be coming)."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The end of a generation: the whole text, parsed tool calls, the finish reason and the token usage."""

    result: CompletionResult
    held: bool  # the text was held back (tools were offered): it has not been sent as ``Text`` events


@dataclass(frozen=True)
class Failed:
    """The engine failed after the first token. Without ``code`` the details are logged, never sent; with one
    (``engine_crashed``, ``model_unloaded``: the caller may retry) ``error`` is a message for the client."""

    error: str | None
    code: str | None = None


Event = Text | Finished | Failed


class Serving:
    """Runs generation requests for the OpenAI routes; one per app."""

    def __init__(self, services: Services, metrics: Metrics) -> None:
        self._services = services
        self._metrics = metrics

    async def start(self, call: GenerationCall, request: Request) -> NotCovered | Relayed | LocalGeneration:
        """Steps 1-6: everything up to the first token. An error raised here is a real HTTP status."""
        services, body = self._services, dict(call.body)
        routed: RoutedRequest | None = None
        grounding: Grounding | None = None
        if call.kind == "chat":
            # 1. Limits.
            most = services.settings.server.max_messages
            if len(body["messages"]) > most:
                raise InvalidRequest(f"At most {most} messages are allowed, got {len(body['messages'])}.",
                                     param="messages")
            # 2. Grounding: the retrieved passages' labels then count in the egress decision.
            knowledge = body.pop("knowledge", None)
            if knowledge is not None:
                grounding = await ground_chat(services.kb, call.actor, body, knowledge)
                if not grounding.covered:
                    return NotCovered(str(body["model"]), grounding.question)
                body["messages"] = grounding.messages
            # 3. Egress policy: None = a local model, always allowed.
            labels = grounding.labels if grounding is not None else ()
            routed = await run_in_threadpool(lambda: services.egress.route(body, call.actor, extra_labels=labels))
            self._metrics.requests_by_destination.labels(routed.decision.destination if routed else "local").inc()
            note_route(request, routed)
            if routed is not None:
                if routed.goes_out:
                    return await relay(services.external, routed, request, stream=call.stream, grounding=grounding)
                body = routed.body  # kept local: the request for the local model
        # 4. Wake and prepare (rendering, tokenizing and maybe loading the model block: off the event loop).
        wake = WakeWatch(services.registry, body.get("model"))
        prepare = services.chat.prepare_chat if call.kind == "chat" else services.chat.prepare_completion
        prepared = await run_in_threadpool(prepare, body)
        wake_s = wake.done(self._metrics, services.residency)
        # 5. Write-ahead audit record.
        await write_started(request, prepared)
        # 6. The first token.
        timer = self._metrics.track(prepared.model, call.received_s)
        generation = LocalGeneration(prepared, services.chat.stream(prepared), request, timer=timer,
                                     hooks=self._finish_hooks(call, timer, request), routed=routed,
                                     grounding=grounding, wake_s=wake_s)
        await generation.first_token()
        return generation

    def _finish_hooks(self, call: GenerationCall, timer: GenerationTimer,
                      request: Request) -> Sequence[Callable[[Usage, bool], None]]:
        """Step 8: what runs, in this order, once a generation ends (with its usage, and whether it was aborted)."""
        quotas = self._services.quotas

        def count(usage: Usage, aborted: bool) -> None:  # metrics: prompt/generated tokens, aborted requests
            timer.finish(n_prompt=usage.prompt_tokens, n_generated=usage.completion_tokens, aborted=aborted)

        def audit(usage: Usage, _: bool) -> None:  # the token counts of the request's final audit record
            note(request, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)

        def charge(usage: Usage, _: bool) -> None:  # the key's daily token quota
            quotas.record_usage(call.actor.key_id, usage.total_tokens)

        return (count, audit, charge)


class LocalGeneration:
    """A request running on a local model: steps 6-8."""

    def __init__(self, prepared: PreparedGeneration, deltas: AsyncIterator[Delta], request: Request, *,
                 timer: GenerationTimer, hooks: Sequence[Callable[[Usage, bool], None]],
                 routed: RoutedRequest | None, grounding: Grounding | None, wake_s: float | None) -> None:
        self.prepared = prepared
        self.routed = routed  # the egress decision of a request kept local (its headers go out), else None
        self.grounding = grounding
        self.wake_s = wake_s  # seconds this request waited for its model to load; None: it was loaded
        self._deltas = deltas  # the engine's: closing it aborts the request in the engine
        self._request = request
        self._timer = timer
        self._hooks = hooks
        self._first: Delta | None = None
        self._finished = False

    async def first_token(self) -> None:
        """Step 6. Errors raised before the first delta (queue full, context) propagate as real HTTP errors."""
        try:
            self._first = await run_until_disconnect(self._request, _first_of(self._deltas))
        except BaseException:
            self._finish(Usage(self.prepared.n_prompt_tokens, 0), aborted=True)
            raise

    async def events(self) -> AsyncIterator[Event]:
        """Step 7: the answer as events; step 8 runs when this generator ends or is closed."""
        acc = OutputAccumulator(self.prepared)
        # With tools offered the text may turn out to be a tool call: it is held back and sent, parsed, at the end.
        hold = self.prepared.parse_tools
        done = False
        source = _with_first(self._first, self._deltas)
        try:
            async for delta in source:
                self._timer.on_delta(delta)
                acc.add(delta)
                if delta.finish_reason == "error":
                    done = True
                    log.error("request %s failed mid-stream: %s", self.prepared.request_id, delta.error)
                    yield Failed(delta.error, delta.error_code)
                    return
                if delta.text and not hold:
                    yield Text(delta.text)
                if delta.finish_reason is not None:
                    break
            done = acc.finish_reason is not None
            yield Finished(acc.result(), held=hold)
        finally:
            await source.aclose()  # type: ignore[attr-defined]
            await self._deltas.aclose()  # type: ignore[attr-defined]
            self._finish(acc.usage(), aborted=not done)

    async def result(self) -> CompletionResult:
        """Steps 7-8 for an answer sent whole: collect the events (cancelled if the client goes away)."""

        async def collect() -> CompletionResult:
            events = self.events()
            try:
                async for event in events:
                    if isinstance(event, Finished):
                        return event.result
                    if isinstance(event, Failed):
                        if event.code:  # the engine crashed or was unloaded: 503, retry
                            raise Unavailable(event.error or "The model is unavailable; retry.", code=event.code)
                        raise EngineFailure(event.error or "The inference backend failed.")
            finally:
                await events.aclose()  # type: ignore[attr-defined]
            raise EngineFailure("The generation ended without a result.")  # events() always ends with one

        return await run_until_disconnect(self._request, collect())

    def _finish(self, usage: Usage, *, aborted: bool) -> None:
        """Step 8, once. A failing hook is logged and does not stop the others (this runs in finally blocks)."""
        if self._finished:
            return
        self._finished = True
        for hook in self._hooks:
            try:
                hook(usage, aborted)
            except Exception:
                log.exception("a finish hook of request %s failed", self.prepared.request_id)


async def _first_of(deltas: AsyncIterator[Delta]) -> Delta | None:
    try:
        return await deltas.__anext__()
    except StopAsyncIteration:
        return None
    except BaseException:
        await deltas.aclose()  # type: ignore[attr-defined]
        raise


async def _with_first(first: Delta | None, rest: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    if first is not None:
        yield first
        if first.finish_reason is not None:
            return
    async for d in rest:
        yield d


class WakeWatch:
    """Times a request that found its model unloaded: the wait to load it is its wake-up time, reported in
    ``X-Inhouse-Wake-Ms``, in ``inhouse_model_wake_seconds`` and in ``/v1/status``."""

    def __init__(self, registry: ModelRegistry, model: Any) -> None:
        self._registry = registry
        self._model = model if isinstance(model, str) else None
        self._cold = self._model is not None and self._model not in registry.loaded()
        self._t0 = time.perf_counter()

    def done(self, metrics: Metrics, residency: ModelResidency) -> float | None:
        """Call once the model is ready (after the request was prepared): the wake-up seconds, or None."""
        if self._model is None or not self._cold or self._model not in self._registry.loaded():
            return None
        seconds = time.perf_counter() - self._t0
        metrics.model_wake.labels(self._model).observe(seconds)
        residency.record_wake(self._model, seconds)
        return seconds
