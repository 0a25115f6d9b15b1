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

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from inhouse.api.audit_trail import note, note_failure, note_route, write_started
from inhouse.api.openai.knowledge import ground_chat
from inhouse.api.openai.relay import Relayed, relay
from inhouse.api.streaming import run_until_disconnect
from inhouse.chat.affinity import cache_owner_of
from inhouse.chat.output import OutputAccumulator, Usage, total_usage
from inhouse.errors import EngineFailure, InhouseError, InvalidRequest, Overloaded, Unavailable
from inhouse.governance.answer_labels import answer_label
from inhouse.governance.labels import Label

if TYPE_CHECKING:
    from starlette.requests import Request

    from inhouse.api.metrics import GenerationTimer, Metrics
    from inhouse.chat.output import CompletionResult, Kind, PreparedGeneration
    from inhouse.engine.params import Delta, TokenLogprob
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
    """A piece of choice ``index``'s answer, as generated (held back instead while tool calls may be coming), with
    its tokens' log-probabilities when asked (then a token that completes no character still comes, text "")."""

    text: str
    index: int = 0
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob] | None = None  # on a choice's first piece, when ``echo`` scored the prompt


@dataclass(frozen=True)
class Finished:
    """The end of one choice: the whole text, parsed tool calls, the finish reason and its token usage."""

    result: CompletionResult
    held: bool  # the text was held back (tools were offered): it has not been sent as ``Text`` events


@dataclass(frozen=True)
class Completed:
    """Every choice has finished: their results in choice order and the request's usage (each prompt once)."""

    results: list[CompletionResult]
    usage: Usage


@dataclass(frozen=True)
class Failed:
    """The engine failed after the first token. Without ``code`` the details are logged, never sent; with one
    (``engine_crashed``, ``model_unloaded``: the caller may retry) ``error`` is a message for the client."""

    error: str | None
    code: str | None = None


Event = Text | Finished | Completed | Failed


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
        remember: Callable[[list[str]], None] | None = None
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
                note(request, documents=grounding.document_ids)  # who was given which documents' passages
            # 3. Egress policy: None = a local model, always allowed.
            labels = grounding.labels if grounding is not None else ()
            routed = await run_in_threadpool(lambda: services.egress.route(body, call.actor, extra_labels=labels))
            self._metrics.requests_by_destination.labels(routed.decision.destination if routed else "local").inc()
            note_route(request, routed)
            if routed is not None:
                if routed.goes_out:
                    return await relay(services.external, routed, request, stream=call.stream, grounding=grounding,
                                       on_usage=self._relay_hook(call, request))
                body = routed.body  # kept local: the request for the local model
            # Off the event loop, whatever the roles: the earlier answers' labels are looked up in every message
            # (an answer may be pasted anywhere), by a digest per window of 16 tokens and a database read per 500.
            remember = await run_in_threadpool(self._remembering, body, grounding, routed)
        # 4. Wake and prepare (rendering, tokenizing and maybe loading the model block: off the event loop).
        wake = WakeWatch(services.registry, body.get("model"))
        prepare = services.chat.prepare_chat if call.kind == "chat" else services.chat.prepare_completion
        # The prefix cache is shared only among the actor's own requests (chat/affinity.py: cached tokens and time to
        # first token would reveal another user's prompt).
        prepared = await run_in_threadpool(prepare, body, cache_owner=cache_owner_of(call.actor))
        wake_s = wake.done(self._metrics, services.residency)
        # 5. Write-ahead audit record.
        await write_started(request, prepared)
        # 6. The first token.
        timer = self._metrics.track(prepared.model, call.received_s)
        deltas = [services.chat.stream(prepared, i) for i in range(len(prepared.requests))]
        generation = LocalGeneration(prepared, deltas, request, timer=timer,
                                     hooks=self._finish_hooks(call, timer, request), routed=routed,
                                     grounding=grounding, wake_s=wake_s, remember=remember)
        await generation.first_token()
        return generation

    def _remembering(self, body: Mapping[str, Any], grounding: Grounding | None,
                     routed: RoutedRequest | None) -> Callable[[list[str]], None] | None:
        """How a local chat answer is remembered with its label (``governance/answer_labels.py``): that of the
        egress decision when there was one, else the conversation's declared label, the attached documents', the
        passages' and the earlier answers' in its history; None when the answer would be public."""
        answers = self._services.answers
        if routed is not None and routed.decision.label is not None:
            label = routed.decision.label
        else:
            try:
                history = answers.of_history(body.get("messages"))
            except InhouseError as exc:  # the store is away: a local answer is still served (nothing leaves)
                log.warning("the labels of the earlier answers are unknown: %s", exc.message)
                history = None
            label = answer_label(body, grounding.labels if grounding is not None else (), history)
        if label <= Label.PUBLIC:
            return None
        return lambda texts: answers.remember(texts, label)

    def _relay_hook(self, call: GenerationCall, request: Request) -> Callable[[Usage], None]:
        """An external answer's tokens: its audit record's counts and the key's daily quota, as a local one's."""
        quotas = self._services.quotas

        def settle(usage: Usage) -> None:  # runs in finally blocks: a failure is logged, as a finish hook's
            note(request, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
            try:
                quotas.record_usage(call.actor.key_id, usage.total_tokens)
            except InhouseError as exc:
                log.error("the tokens of an external answer were not charged: %s", exc.message)

        return settle

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
    """A request running on a local model: steps 6-8, for each of its choices (one engine sequence each)."""

    def __init__(self, prepared: PreparedGeneration, deltas: list[AsyncIterator[Delta]], request: Request, *,
                 timer: GenerationTimer, hooks: Sequence[Callable[[Usage, bool], None]],
                 routed: RoutedRequest | None, grounding: Grounding | None, wake_s: float | None,
                 remember: Callable[[list[str]], None] | None = None) -> None:
        self.prepared = prepared
        self.routed = routed  # the egress decision of a request kept local (its headers go out), else None
        self.grounding = grounding
        self.wake_s = wake_s  # seconds this request waited for its model to load; None: it was loaded
        self._deltas = deltas  # the engine's, one per choice: closing one aborts that sequence in the engine
        self._request = request
        self._timer = timer
        self._hooks = hooks
        self._firsts: list[Delta | None] = []
        self._finished = False
        self._remember = remember  # the answer's texts, remembered with its label (Serving._remembering)

    async def first_token(self) -> None:
        """Step 6: every choice is admitted and has its first delta. Errors raised before that (queue full,
        context) propagate as real HTTP errors, and the other choices are aborted."""
        try:
            self._firsts = await run_until_disconnect(self._request, _firsts_of(self._deltas))
        except Overloaded:
            # Refused by the engine's queue (full, or not admitted in time): nothing was served, so nothing is
            # charged to the key's token quota, and the client did not abandon it (no "aborted" count).
            self._finish(Usage(0, 0), aborted=False)
            raise
        except BaseException:
            self._finish(Usage(self.prepared.n_prompt_tokens, 0), aborted=True)
            raise

    async def events(self) -> AsyncIterator[Event]:
        """Step 7: the answer as events; step 8 runs when this generator ends or is closed."""
        p = self.prepared
        accs = [OutputAccumulator(p, i) for i in range(len(p.requests))]
        # With tools offered the text may turn out to be a tool call: it is held back and sent, parsed, at the end.
        hold = p.parse_tools
        results: dict[int, CompletionResult] = {}
        source = _merged(self._firsts, self._deltas)
        try:
            async for i, delta in source:
                self._timer.on_delta(delta)
                accs[i].add(delta)
                # Text first: a delta may carry the last tokens and the end together (engine/delivery.py merges
                # what arrived while the stream was busy), also when the end is an engine failure.
                if not hold and (delta.text or delta.logprobs or delta.prompt_logprobs):
                    yield Text(delta.text, i, delta.logprobs, delta.prompt_logprobs)
                if delta.finish_reason == "error":
                    log.error("request %s failed mid-stream: %s", p.request_id, delta.error)
                    note_failure(self._request, delta.error_code or EngineFailure.code)  # a 200 already sent
                    yield Failed(delta.error, delta.error_code)
                    return
                if delta.finish_reason is not None and i not in results:
                    results[i] = accs[i].result()
                    yield Finished(results[i], held=hold)
            if len(results) == len(accs):
                yield Completed([results[i] for i in range(len(accs))], self._usage(accs))
        finally:
            await source.aclose()  # type: ignore[attr-defined]
            for deltas in self._deltas:
                await deltas.aclose()  # type: ignore[attr-defined]
            if self._remember is not None:  # also a part the client read before leaving
                try:
                    self._remember([a.text for a in accs])
                except Exception as exc:  # the answer is out; a later cloud request could then miss its label
                    log.error("the label of answer %s was not remembered: %s", p.request_id, exc)
            self._finish(self._usage(accs), aborted=len(results) < len(accs))

    async def result(self) -> Completed:
        """Steps 7-8 for an answer sent whole: collect the events (cancelled if the client goes away)."""

        async def collect() -> Completed:
            events = self.events()
            try:
                async for event in events:
                    if isinstance(event, Completed):
                        return event
                    if isinstance(event, Failed):
                        if event.code:  # the engine crashed or was unloaded: 503, retry
                            raise Unavailable(event.error or "The model is unavailable; retry.", code=event.code)
                        raise EngineFailure(event.error or "The inference backend failed.")
            finally:
                await events.aclose()  # type: ignore[attr-defined]
            raise EngineFailure("The generation ended without a result.")  # events() always ends with one

        return await run_until_disconnect(self._request, collect())

    def _usage(self, accs: list[OutputAccumulator]) -> Usage:
        return total_usage(self.prepared, [a.usage() for a in accs])

    def _finish(self, usage: Usage, *, aborted: bool) -> None:
        """Step 8, once. A failing hook is logged and does not stop the others (this runs in finally blocks)."""
        if self._finished:
            return
        self._finished = True
        for hook in self._hooks:
            try:
                hook(usage, aborted)
            except InhouseError as exc:  # e.g. the database away: the quota is not charged, and says why
                log.error("a finish hook of request %s failed: %s", self.prepared.request_id, exc.message)
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


async def _firsts_of(streams: list[AsyncIterator[Delta]]) -> list[Delta | None]:
    """The first delta of every stream; if one fails, the others are cancelled (closing them aborts them)."""
    if len(streams) == 1:
        return [await _first_of(streams[0])]
    tasks = [asyncio.ensure_future(_first_of(s)) for s in streams]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in streams:
            await s.aclose()  # type: ignore[attr-defined]
        raise


async def _with_first(first: Delta | None, rest: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    if first is not None:
        yield first
        if first.finish_reason is not None:
            return
    async for d in rest:
        yield d


async def _merged(firsts: list[Delta | None], streams: list[AsyncIterator[Delta]]) -> AsyncIterator[tuple[int, Delta]]:
    """``(choice, delta)`` from every stream as they come (one stream: no tasks, no queue)."""
    if len(streams) == 1:
        async for d in _with_first(firsts[0], streams[0]):
            yield 0, d
        return
    queue: asyncio.Queue[tuple[int, Delta | BaseException | None]] = asyncio.Queue()

    async def pump(i: int) -> None:
        try:
            async for d in _with_first(firsts[i], streams[i]):
                await queue.put((i, d))
        except Exception as exc:
            await queue.put((i, exc))
        finally:
            queue.put_nowait((i, None))

    tasks = [asyncio.ensure_future(pump(i)) for i in range(len(streams))]
    try:
        running = len(tasks)
        while running:
            i, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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


