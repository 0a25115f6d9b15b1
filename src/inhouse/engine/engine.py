"""The step loop: schedule → execute → update, on one thread per loaded model.

Callers (the API's event loop) talk to the engine through ``generate``/``abort``; the step thread owns the
backend. ``submit`` is the layer under ``generate``: it admits a request whose deltas go to a plain callable,
which is how the engine's child process (engine/worker.py) forwards them without an event loop. A lock
guards the scheduler and the table of live requests, never the forward pass itself, so a request that
arrives while llama.cpp decodes is admitted at the next step (continuous batching).

Stop strings, EOS and ``max_tokens`` are decided here, on text, because the scheduler only knows tokens.

The queue is bounded in length (``max_waiting``: 429 at once) and in time (``max_queue_wait_s``): a request that
is not admitted within the bound is taken out of the queue and answered with a refusal delta (``Delta.refusal``,
raised by ``generate`` as ``Overloaded``: HTTP 429 before any byte of the response), and a request whose wait,
estimated from the recent throughput (engine/drain.py), already exceeds the bound is refused at once.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from inhouse.config import EngineSettings
from inhouse.engine.delivery import Inbox, Mailboxes, batches
from inhouse.engine.drain import DrainRate
from inhouse.engine.params import Delta, FinishReason, GenerationRequest, TokenLogprob
from inhouse.engine.protocol import Backend, EngineStats, StepLogprobs, StepPlan
from inhouse.engine.scheduler import Scheduler, SchedulerConfig
from inhouse.errors import EngineFailure, InhouseError, Overloaded, Unavailable

log = logging.getLogger(__name__)

# Receives the deltas of one request, on the step thread with the engine's lock held: it must not block and
# must not call back into the engine.
DeltaSink = Callable[[Delta], None]


@dataclass
class _Live:
    """Per-request state on the engine side: where to deliver deltas and how to turn tokens into text."""

    request: GenerationRequest
    deliver: DeltaSink
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    pending: str = ""  # decoded text held back because it may be the start of a stop string
    n_generated: int = 0
    done: bool = False
    # Prompt log-probabilities (asked with ``prompt_logprobs``), collected until the first delta carries them.
    prompt_logprobs: list[TokenLogprob] | None = None

    @property
    def holdback(self) -> int:
        stops = self.request.params.stop
        return max((len(s) for s in stops), default=1) - 1


class Engine:
    """Continuous-batching engine over one ``Backend``. Implements ``EngineClient``."""

    def __init__(self, model_name: str, backend: Backend, settings: EngineSettings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._model_name = model_name
        self._clock = clock  # queue waits and the drain rate (tests inject one)
        self._drain = DrainRate(max_booked=settings.max_waiting)
        self._rejected_wait_estimate = 0
        self._backend = backend
        self._settings = settings
        self._scheduler = Scheduler(
            SchedulerConfig(
                n_slots=backend.n_slots,
                n_ctx=backend.n_ctx,
                max_running=min(settings.max_running, backend.n_slots),
                max_waiting=settings.max_waiting,
                step_token_budget=settings.step_token_budget,
                prefill_chunk=settings.prefill_chunk,
                retry_after_s=settings.retry_after_s,
                prefill_step_s=settings.prefill_step_s,
            )
        )
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._live: dict[str, _Live] = {}
        # Samplers are freed on the step thread only, after the step that may still use them.
        self._to_end: set[str] = set()
        self._closed = False
        # Users of the backend besides callers: the step thread until it has ended, and submit() calls building a
        # sampler. The backend is freed by the last of them to leave after close() (_release_backend).
        self._step_thread_done = False
        self._starting = 0
        self._backend_freed = False
        self._healthy = True
        self._steps = 0
        self._multi_steps = 0
        self._prompt_tokens = 0
        self._generated_tokens = 0
        self._aborted = 0
        self.last_step_s = 0.0
        # Called on the step thread after every step (outside the lock): the child process flushes the
        # deltas of the step to its parent here, in one frame.
        self.on_step_end: Callable[[], None] | None = None
        self._mailboxes = Mailboxes()
        self._thread = threading.Thread(target=self._run, name=f"engine-{model_name}", daemon=True)
        self._thread.start()

    # -- EngineClient -------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def n_ctx(self) -> int:
        return self._backend.n_ctx

    @property
    def backend(self) -> Backend:
        return self._backend

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return self._backend.tokenize(text, add_special=add_special, parse_special=parse_special)

    def healthy(self) -> bool:
        return self._healthy and not self._closed and self._thread.is_alive()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        # The deltas of one step ride on one wake-up of the loop; what arrived since the generator last looked
        # is handed out as one delta (engine/delivery.py). A closed loop drops them: the request is aborted below.
        mailbox = self._mailboxes.of(asyncio.get_running_loop())
        inbox = Inbox()

        def deliver(delta: Delta) -> None:
            mailbox.post(((inbox, delta),))

        self.submit(request, deliver)
        finished = False
        try:
            while True:
                for delta in batches(await inbox.take()):
                    assert isinstance(delta, Delta), "the step thread delivers deltas only"
                    refusal = delta.refusal()
                    if refusal is not None:  # never admitted: a 429, not a stream
                        finished = True
                        raise refusal
                    yield delta
                    if delta.finish_reason is not None:
                        finished = True
                        return
        finally:
            if not finished:
                self.abort(request.request_id)

    def submit(self, request: GenerationRequest, deliver: DeltaSink) -> None:
        """Admit ``request``; its deltas go to ``deliver`` (the last one carries ``finish_reason``). Raises
        before admitting: Unavailable (closing), InvalidRequest (bad grammar), Overloaded, ContextLengthExceeded."""
        with self._lock:
            self._refuse_if_closed()
            self._starting += 1
        try:
            self._backend.start_request(request.request_id, request.params)  # a bad grammar raises InvalidRequest
            self._admit(request, deliver)
        finally:
            with self._lock:
                self._starting -= 1
            self._release_backend()  # close() may have run meanwhile and left the backend to us

    def _admit(self, request: GenerationRequest, deliver: DeltaSink) -> None:
        rid = request.request_id
        with self._lock:
            try:
                # Checked again: close() may have run while the sampler was built, and no step would ever answer.
                self._refuse_if_closed()
                now = self._clock()
                if not self._scheduler.has_work():
                    self._drain.busy(now)
                self._refuse_on_estimate(now)
                # Prompt log-probabilities need the logits of every prompt position: no prefix from the cache. A
                # prefix is reused only from requests of the same cache owner (scheduler.py).
                try:
                    self._scheduler.add(rid, request.prompt_tokens, request.params.max_tokens,
                                        reuse_prefix=request.params.prompt_logprobs is None, now=now,
                                        cache_owner=request.cache_owner)
                except Overloaded as full:  # the queue is full: retry when it has drained
                    full.retry_after_s = self._retry_after_s(now)
                    raise
            except InhouseError:
                self._to_end.add(rid)
                self._wake.notify()
                raise
            self._live[rid] = _Live(request=request, deliver=deliver)
            self._prompt_tokens += len(request.prompt_tokens)
            self._wake.notify()

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise Unavailable(f"The model '{self._model_name}' is unloading; retry.")

    def abort(self, request_id: str) -> None:
        with self._lock:
            live = self._live.pop(request_id, None)
            if live is None:
                return
            live.done = True
            self._aborted += 1
            self._scheduler.abort(request_id)
            self._to_end.add(request_id)
            self._wake.notify()

    def stats(self) -> EngineStats:
        with self._lock:
            s = self._scheduler.stats()
            return EngineStats(
                model=self._model_name,
                waiting=self._scheduler.n_waiting,
                running=self._scheduler.n_running,
                steps=self._steps,
                multi_sequence_steps=self._multi_steps,
                prompt_tokens=self._prompt_tokens,
                generated_tokens=self._generated_tokens,
                prefix_cache_queries=s.prefix_cache_queries,
                prefix_cache_hits=s.prefix_cache_hits,
                prefix_cache_hit_tokens=s.prefix_cache_hit_tokens,
                aborted=self._aborted,
                preempted=s.preempted,
                rejected_queue_full=s.rejected_queue_full,
                rejected_queue_timeout=s.rejected_queue_timeout,
                rejected_wait_estimate=self._rejected_wait_estimate,
                queue_wait_estimate_s=self._estimated_wait_s(self._clock()) or 0.0,
            )

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the step thread, fail what is still live, free the backend. Idempotent.

        A step still running after ``timeout_s`` is not interrupted: the step thread frees the backend when that
        step ends (freeing it under a running decode would be a use-after-free)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("the step of %s still runs after %g s; its thread frees the backend when it ends",
                        self._model_name, timeout_s)
        with self._lock:
            for rid, live in list(self._live.items()):
                self._deliver(live, Delta(rid, finish_reason="error", error="The model was unloaded; retry.",
                                          error_code="model_unloaded"))
            self._live.clear()
        self._release_backend()

    def _release_backend(self) -> None:
        """Free the backend once it is closed and unused: each user calls this on its way out, the last one frees."""
        with self._lock:
            if not self._closed or self._backend_freed or not self._step_thread_done or self._starting:
                return
            self._backend_freed = True
        self._backend.close()

    # -- step thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        finally:  # also when the loop died: close() must then still be able to free the backend
            try:
                self._end_finished_samplers()
            finally:
                with self._lock:
                    self._step_thread_done = True
                self._release_backend()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._closed and not self._scheduler.has_work() and not self._to_end:
                    self._wake.wait()
                if self._closed:
                    return
                plan = self._scheduler.schedule()
                expired = self._expire_waiting()
            if plan.items or plan.kv_ops:
                self._step(plan)
            if (plan.items or plan.kv_ops or expired) and self.on_step_end is not None:
                self.on_step_end()
            self._end_finished_samplers()

    # -- the queue-wait bound (called with the lock held) ----------------------------------------------

    def _estimated_wait_s(self, now: float) -> float | None:
        """The queue wait a new request would have: 0 when a running seat is free, None while unknown."""
        ahead = self._scheduler.queue_ahead
        return 0.0 if ahead < 0 else self._drain.wait_s(ahead, now)

    def _retry_after_s(self, now: float) -> float:
        """The Retry-After of one refusal (booked: call once per refused request)."""
        return self._drain.book_retry_after_s(max(0, self._scheduler.queue_ahead), now,
                                              max_wait_s=self._settings.max_queue_wait_s,
                                              fallback_s=self._settings.retry_after_s)

    def _refuse_on_estimate(self, now: float) -> None:
        bound = self._settings.max_queue_wait_s
        wait = self._estimated_wait_s(now)
        if bound > 0 and wait is not None and wait > bound:
            self._rejected_wait_estimate += 1
            raise Overloaded(f"The server is busy: the estimated wait ({wait:.0f} s) exceeds the queue limit "
                             f"({bound:g} s). Retry later.", retry_after_s=self._retry_after_s(now),
                             code="queue_wait_estimate")

    def _expire_waiting(self) -> list[str]:
        """Refuse the requests that were not admitted within ``max_queue_wait_s`` (a delta ``generate`` raises)."""
        now = self._clock()
        expired = self._scheduler.expire_waiting(now, self._settings.max_queue_wait_s)
        if not expired:
            return expired
        message = (f"The server is busy: the request was not admitted within {self._settings.max_queue_wait_s:g} s. "
                   "Retry later.")
        for rid in expired:
            self._to_end.add(rid)
            live = self._live.pop(rid, None)
            if live is not None:
                live.done = True
                self._deliver(live, Delta(rid, finish_reason="error", error=message, error_code="queue_timeout",
                                          n_prompt_tokens=len(live.request.prompt_tokens),
                                          retry_after_s=self._retry_after_s(now)))
        return expired

    def _end_finished_samplers(self) -> None:
        with self._lock:
            ended, self._to_end = self._to_end, set()
        for rid in ended:
            self._backend.end_request(rid)

    def _step(self, plan: StepPlan) -> None:
        t0 = time.perf_counter()
        try:
            sampled = self._backend.execute(plan)
            logprobs = self._backend.logprobs()  # empty unless a request asked
        except Exception as exc:  # the backend failed: fail the requests of this step, keep serving others
            log.exception("engine step failed")
            message = exc.message if isinstance(exc, EngineFailure) else "The inference backend failed."
            with self._lock:
                for item in plan.items:
                    self._fail(item.request_id, message)
            return
        self.last_step_s = time.perf_counter() - t0
        with self._lock:
            self._steps += 1
            self._scheduler.observe_step(self.last_step_s, plan.n_prompt_tokens, plan.n_decode_tokens)
            if len({i.request_id for i in plan.items}) > 1:
                self._multi_steps += 1
            self._scheduler.update(sampled)
            for rid, step_lp in logprobs.items():
                live = self._live.get(rid)
                if live is not None and step_lp.prompt:
                    live.prompt_logprobs = (live.prompt_logprobs or []) + step_lp.prompt
            for rid, token in sampled.items():
                live = self._live.get(rid)
                if live is None or live.done:
                    continue
                self._on_token(live, token, logprobs.get(rid))

    def _on_token(self, live: _Live, token: int, step_lp: StepLogprobs | None = None) -> None:
        """Called with the lock held."""
        rid = live.request.request_id
        params = live.request.params
        live.n_generated += 1
        self._generated_tokens += 1
        if self._backend.is_eog(token) and not params.ignore_eos:
            self._finish(live, "stop", [token])  # the end-of-generation token is not part of the text: no logprob
            return
        lps = [step_lp.sampled] if step_lp is not None and step_lp.sampled is not None else None
        text = live.pending + live.decoder.decode(self._backend.token_piece(token))
        cut = _find_stop(text, params.stop)
        if cut is not None:
            live.pending = ""
            live.decoder.reset()  # bytes of a partial character after the stop: _finish must not flush them
            self._emit(live, text[:cut], [token], lps)
            self._finish(live, "stop", [])
            return
        keep = live.holdback
        if keep and len(text) > keep:
            out, live.pending = text[:-keep], text[-keep:]
        elif keep:
            out, live.pending = "", text
        else:
            out, live.pending = text, ""
        limit = live.n_generated >= params.max_tokens or self._scheduler.at_context_limit(rid)
        if limit:
            self._emit(live, out, [token], lps)
            self._finish(live, "length", [])
        else:
            # One delta per token even when it completes no character: the edge counts tokens and latency.
            self._emit(live, out, [token], lps)

    def _emit(self, live: _Live, text: str, tokens: list[int], logprobs: list[TokenLogprob] | None = None) -> None:
        if not text and not tokens:
            return
        prompt_lps, live.prompt_logprobs = live.prompt_logprobs, None
        self._deliver(live, Delta(live.request.request_id, text=text, token_ids=tokens,
                                  n_generated_tokens=live.n_generated, logprobs=logprobs,
                                  prompt_logprobs=prompt_lps))

    def _finish(self, live: _Live, reason: FinishReason, tokens: list[int]) -> None:
        rid = live.request.request_id
        # Bytes of a character the generation ended inside (max_tokens, EOS) are dropped, not flushed as U+FFFD;
        # their tokens still count in the usage.
        tail = live.pending
        live.decoder.reset()
        if reason == "stop" and live.request.params.stop:
            cut = _find_stop(tail, live.request.params.stop)
            if cut is not None:
                tail = tail[:cut]
        live.pending = ""
        live.done = True
        self._live.pop(rid, None)
        self._drain.record(self._clock())
        cached = self._scheduler.cached_tokens(rid)
        self._scheduler.finish(rid)
        self._to_end.add(rid)
        prompt_lps, live.prompt_logprobs = live.prompt_logprobs, None
        self._deliver(live, Delta(
            rid, text=tail, token_ids=tokens, finish_reason=reason,
            n_prompt_tokens=len(live.request.prompt_tokens), n_generated_tokens=live.n_generated,
            n_cached_tokens=cached, prompt_logprobs=prompt_lps,
        ))

    def _fail(self, rid: str, message: str) -> None:
        live = self._live.pop(rid, None)
        self._drain.record(self._clock())
        self._scheduler.abort(rid)
        self._to_end.add(rid)
        if live is not None:
            live.done = True
            self._deliver(live, Delta(rid, finish_reason="error", error=message,
                                      n_prompt_tokens=len(live.request.prompt_tokens),
                                      n_generated_tokens=live.n_generated))

    @staticmethod
    def _deliver(live: _Live, delta: Delta) -> None:
        live.deliver(delta)


def _find_stop(text: str, stops: tuple[str, ...]) -> int | None:
    best: int | None = None
    for s in stops:
        i = text.find(s)
        if i != -1 and (best is None or i < best):
            best = i
    return best

