"""How many prompt tokens a step may prefill while other requests decode, by time as well as by count.

A decoding stream gets one token per step, so a step's duration is that stream's inter-token gap. A fixed
``prefill_chunk`` of prompt tokens per step is right for a small model and far too much for a large one: on
2 cores 64 prompt tokens take ~0.1 s on SmolLM2-135M but 1.8 s on a 7B Q4_0 and 4.5 s on a 13B, and a stream
stalls that long at every step of another prompt's prefill. ``PrefillPacer`` keeps the step near a time
budget (``engine.prefill_step_s``) by learning, from the steps the engine has executed, what a token costs.

The cost model, deliberately simple: **every token of a step that carries prompt tokens costs the same**, ``c``
seconds. In such a step llama.cpp multiplies a matrix of all the step's tokens by every weight, which is
compute-bound from a few tokens on, and a decoding request's one token is one more row of that matrix, like
a prompt token (the 7B shape measured 29 ms per prompt token and 39 ms per token of 8 batched decodes). So a
step of ``p`` prompt and ``d`` decode tokens takes ``c × (p + d)``, and the room for prompt tokens within the
budget is ``budget / c − d``.

``c`` is a ratio of exponentially smoothed sums (seconds over tokens) of the steps that carried prompt
tokens: a big step weighs more than a small one, whose fixed cost (reading every weight once, the whole of a
decode step) would overstate the per-token cost. Steps without prompt tokens are not observed: they are
bound by memory bandwidth, not arithmetic, and say nothing about what a prompt token costs. The over-estimate
small steps still cause is on the safe side (a shorter chunk), and the next larger step corrects it.

What the model leaves out: a mixed step also has a fixed cost (on the 7B Q4_0 shape, ~0.2 s of a 10-token
step's 0.48 s). The estimate still converges on the step time, because the steps it learns from are the ones it
sized; but a short budget spends much of each step on that fixed cost, so the prompt's time to first token
grows: against the 64-token chunk alone (46.8 s for the 7B's 1.5k-token prompt), 1.0 s per step cost +16 %
(54.5 s) and 0.5 s +82 % (85.3 s), for a decoding stream's typical gap of 1.0 s and 0.48 s instead of 1.9 s;
hence the default of 1.0 s (docs/performance.md).

Pure: no clock. The engine measures each step and passes the observation in (``Scheduler.observe_step``).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_PREFILL_TOKENS = 8  # the time cap never allows fewer: a prompt always progresses
SMOOTHING = 0.3  # weight of the newest step in the smoothed sums


@dataclass
class PrefillPacer:
    """The smoothed per-token cost of one engine's steps and the prompt-token cap it implies."""

    step_budget_s: float  # 0: off (the count cap ``prefill_chunk`` alone)
    _seconds: float = 0.0  # smoothed step seconds
    _tokens: float = 0.0  # smoothed step tokens (prompt + decode)

    def observe(self, step_s: float, prompt_tokens: int, decode_tokens: int) -> None:
        """One executed step: its duration and how many prompt and decode tokens it computed."""
        if prompt_tokens <= 0 or step_s <= 0:
            return
        n = prompt_tokens + max(0, decode_tokens)
        if self._tokens == 0.0:
            self._seconds, self._tokens = step_s, float(n)
            return
        self._seconds += SMOOTHING * (step_s - self._seconds)
        self._tokens += SMOOTHING * (n - self._tokens)

    @property
    def seconds_per_token(self) -> float | None:
        """The smoothed cost of one token of a step with prompt tokens; None before any such step."""
        return self._seconds / self._tokens if self._tokens > 0 else None

    def prompt_cap(self, prefill_chunk: int, decode_tokens: int) -> int:
        """Most prompt tokens for a step that also decodes ``decode_tokens`` tokens: ``prefill_chunk``, lowered
        to what fits the time budget, but never below ``MIN_PREFILL_TOKENS`` (nor above ``prefill_chunk``)."""
        cost = self.seconds_per_token
        if self.step_budget_s <= 0 or cost is None:
            return prefill_chunk
        fit = int(self.step_budget_s / cost) - decode_tokens
        return min(prefill_chunk, max(MIN_PREFILL_TOKENS, fit))
