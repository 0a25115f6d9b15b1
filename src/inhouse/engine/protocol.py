"""The seams of the engine: what the server calls (``EngineClient``) and what the step loop drives
(``Backend``). The scheduler speaks to the backend only through ``StepPlan``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from inhouse.engine.params import Delta, GenerationRequest, SamplingParams, TokenLogprob


@dataclass(frozen=True)
class KvOp:
    """A change to the KV cache, applied before the batch of the same step.

    ``rm``: remove positions ``[p0, end)`` of sequence ``slot`` (``p0 == 0`` clears it).
    ``cp``: make positions ``[0, p1)`` of ``src`` visible to ``slot`` too (a shared prefix; cheap in a
    unified KV cache because cells are shared, not copied).
    """

    kind: Literal["rm", "cp"]
    slot: int
    p0: int = 0
    p1: int = 0
    src: int = -1


@dataclass(frozen=True)
class BatchItem:
    """Tokens of one request fed in this step at positions ``pos0 .. pos0+len(tokens)-1``.

    When ``sample`` is true the logits of the last token are kept and the request's sampler draws the
    next token from them.
    """

    request_id: str
    slot: int
    tokens: tuple[int, ...]
    pos0: int
    sample: bool


@dataclass
class StepPlan:
    kv_ops: list[KvOp] = field(default_factory=list)
    items: list[BatchItem] = field(default_factory=list)
    # Requests whose sequences ended this step because of an abort; their KV is cleared by kv_ops.
    aborted: list[str] = field(default_factory=list)
    # Requests pushed back to the waiting queue to free KV cells (they are recomputed later).
    preempted: list[str] = field(default_factory=list)
    # Items that decode one token of a request's answer; every other token of the plan is a prompt token.
    n_decode_tokens: int = 0

    @property
    def n_tokens(self) -> int:
        return sum(len(i.tokens) for i in self.items)

    @property
    def n_prompt_tokens(self) -> int:
        """Tokens prefilled (a prompt, or a preempted request's recomputed tokens) rather than decoded."""
        return self.n_tokens - self.n_decode_tokens

    @property
    def empty(self) -> bool:
        return not self.items and not self.kv_ops


@dataclass
class StepLogprobs:
    """What one ``execute`` computed for a request that asked for log-probabilities."""

    # Prompt tokens decoded in this step, each as predicted by the position before it (``prompt_logprobs``).
    prompt: list[TokenLogprob] = field(default_factory=list)
    # The token sampled in this step (``logprobs``), or None.
    sampled: TokenLogprob | None = None


class Backend(Protocol):
    """One loaded model in llama.cpp (or a fake). Called from the engine's single step thread only."""

    @property
    def n_ctx(self) -> int: ...

    @property
    def n_slots(self) -> int: ...

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]: ...

    def token_piece(self, token: int) -> bytes:
        """The bytes of one token (may be part of a UTF-8 character)."""
        ...

    def is_eog(self, token: int) -> bool: ...

    def start_request(self, request_id: str, params: SamplingParams) -> None:
        """Build the request's sampler (seed, penalties, grammar). Raises InvalidRequest for a bad grammar."""
        ...

    def end_request(self, request_id: str) -> None:
        """Free the request's sampler. Idempotent."""
        ...

    def execute(self, plan: StepPlan) -> dict[str, int]:
        """Apply ``plan.kv_ops``, decode ``plan.items`` in one batch, and return the sampled token of every
        item with ``sample=True``, keyed by request id."""
        ...

    def logprobs(self) -> dict[str, StepLogprobs]:
        """The log-probabilities the last ``execute`` computed, for the requests whose ``SamplingParams`` asked
        (``logprobs`` / ``prompt_logprobs``); empty when none did. Nothing is computed for the others."""
        ...

    def close(self) -> None: ...


@dataclass
class EngineStats:
    model: str
    waiting: int = 0
    running: int = 0
    steps: int = 0
    multi_sequence_steps: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    prefix_cache_hit_tokens: int = 0
    aborted: int = 0
    preempted: int = 0
    rejected_queue_full: int = 0
    rejected_queue_timeout: int = 0  # not admitted within ``max_queue_wait_s``: 429 after waiting
    rejected_wait_estimate: int = 0  # estimated wait above ``max_queue_wait_s``: 429 at once
    queue_wait_estimate_s: float = 0.0  # a gauge: the wait a new request would have now (0 while unknown)
    # Deaths of the engine's child process, by signal name ("SIGSEGV") or "exit N" (engine/process.py).
    crashes: dict[str, int] = field(default_factory=dict)


class EngineClient(Protocol):
    """What the API layer needs from a loaded model."""

    @property
    def model_name(self) -> str: ...

    @property
    def n_ctx(self) -> int: ...

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Stream deltas; the last one carries ``finish_reason``. Raises Overloaded (queue full, or not admitted
        within ``max_queue_wait_s``) or ContextLengthExceeded before the first delta. Cancelling the iterator
        aborts the request."""
        ...

    def abort(self, request_id: str) -> None: ...

    def stats(self) -> EngineStats: ...

    def healthy(self) -> bool: ...
