"""Log-probabilities for the requests that ask for them, shared by every ``Backend``.

A backend registers each request's wish (``SamplingParams.logprobs`` / ``prompt_logprobs``) and, after a decode,
hands over the logits rows of that request's batch item; everything else (log-softmax, top-k, which prompt
positions are new, the row kept across prefill chunks) happens here, in numpy, and only for those requests.
A request that does not ask is never registered: its decode step does not touch this module.

Prompt positions: the row of position ``q`` predicts the token at ``q + 1``. Within one batch item the first
``n - 1`` rows predict the item's own tokens; its last row predicts either the sampled token (the last prompt
chunk) or the first token of the next chunk, so its log-softmax is kept until then. A preempted request is
recomputed from position 0: positions already reported are skipped. The first prompt token has nothing before it:
its entry carries its piece and a log-probability of 0.0 (shown as null on the wire).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from inhouse.engine.params import SamplingParams, TokenLogprob
from inhouse.engine.protocol import BatchItem, StepLogprobs


def log_softmax(row: np.ndarray) -> np.ndarray:
    """``row - logsumexp(row)`` in float32 (a new array: the input may be llama.cpp's reused buffer)."""
    x = np.asarray(row, dtype=np.float32)
    m = float(x.max())
    return x - np.float32(m + np.log(np.exp(x - m, dtype=np.float32).sum(dtype=np.float64)))


def token_logprob(lp: np.ndarray, token: int, k: int, piece: Callable[[int], bytes]) -> TokenLogprob:
    """``token``'s entry from a log-softmax row, with the ``k`` most likely tokens (most likely first; ties by id)."""
    top: tuple[tuple[int, bytes, float], ...] = ()
    if k > 0:
        k = min(k, lp.shape[0])
        idx = np.argpartition(-lp, k - 1)[:k]
        idx = idx[np.lexsort((idx, -lp[idx]))]
        top = tuple((int(t), piece(int(t)), float(lp[t])) for t in idx)
    return TokenLogprob(int(token), piece(int(token)), float(lp[token]), top)


@dataclass
class _Wish:
    sampled_k: int | None
    prompt_k: int | None
    next_pos: int = 0  # the next prompt position to report
    pending: np.ndarray | None = None  # log-softmax of the last row of the previous prompt chunk
    prompt_done: bool = False  # the first token was sampled: the rest are generated tokens
    out: StepLogprobs = field(default_factory=StepLogprobs)


class LogprobRecorder:
    """One per backend; called from the backend's (single) step thread only."""

    def __init__(self, piece: Callable[[int], bytes]) -> None:
        self._piece = piece
        self._wishes: dict[str, _Wish] = {}
        self._touched: set[str] = set()

    def start(self, request_id: str, params: SamplingParams) -> None:
        self._wishes.pop(request_id, None)
        if params.logprobs is not None or params.prompt_logprobs is not None:
            self._wishes[request_id] = _Wish(params.logprobs, params.prompt_logprobs)

    def end(self, request_id: str) -> None:
        self._wishes.pop(request_id, None)

    @property
    def active(self) -> bool:
        """Whether any live request asked (else a backend skips this module entirely)."""
        return bool(self._wishes)

    def wanted(self, request_id: str) -> bool:
        """Whether this request asked for anything (its rows must be handed to ``record``)."""
        return request_id in self._wishes

    def all_rows(self, request_id: str) -> bool:
        """Whether every token of this request's item needs its logits (prompt positions still to report)."""
        w = self._wishes.get(request_id)
        return w is not None and w.prompt_k is not None and not w.prompt_done

    def record(self, item: BatchItem, row: Callable[[int], np.ndarray], sampled: int | None) -> None:
        """``row(j)`` is the logits of the item's ``j``-th token; only the last one exists unless ``all_rows``."""
        w = self._wishes.get(item.request_id)
        if w is None:
            return
        self._touched.add(item.request_id)
        n = len(item.tokens)
        last: np.ndarray | None = None
        if w.prompt_k is not None and not w.prompt_done:
            k = w.prompt_k
            if item.pos0 == 0 and w.next_pos == 0:  # nothing predicts the first token: its piece, logprob 0.0
                first = item.tokens[0]
                w.out.prompt.append(TokenLogprob(first, self._piece(first), 0.0))
                w.next_pos = 1
            if w.pending is not None and item.pos0 == w.next_pos:
                w.out.prompt.append(token_logprob(w.pending, item.tokens[0], k, self._piece))
                w.next_pos += 1
            w.pending = None
            for j in range(n - 1):
                if item.pos0 + j + 1 == w.next_pos:
                    w.out.prompt.append(token_logprob(log_softmax(row(j)), item.tokens[j + 1], k, self._piece))
                    w.next_pos += 1
            last = log_softmax(row(n - 1))
            if item.sample:
                w.prompt_done = True
            elif item.pos0 + n == w.next_pos:
                w.pending = last
        if sampled is not None:
            w.prompt_done = True
            if w.sampled_k is not None:
                lp = last if last is not None else log_softmax(row(n - 1))
                w.out.sampled = token_logprob(lp, sampled, w.sampled_k, self._piece)

    def take(self) -> dict[str, StepLogprobs]:
        """What the last step recorded (``Backend.logprobs``)."""
        if not self._touched:
            return {}
        out: dict[str, StepLogprobs] = {}
        for rid in self._touched:
            w = self._wishes.get(rid)
            if w is not None and (w.out.prompt or w.out.sampled is not None):
                out[rid], w.out = w.out, StepLogprobs()
        self._touched.clear()
        return out
