"""What a caller asks the engine for, and what comes back, independent of HTTP and of llama.cpp."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from inhouse.errors import InvalidRequest, Overloaded

FinishReason = Literal["stop", "length", "tool_calls", "abort", "error"]

MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256
MAX_LOGIT_BIAS = 300
LOGIT_BIAS_RANGE = 100.0
MAX_LOGPROBS = 20  # most alternatives per token (OpenAI's top_logprobs limit)


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling. ``validate`` enforces the bounds; the backend trusts a validated object."""

    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logit_bias: tuple[tuple[int, float], ...] = ()
    # A GBNF grammar the output must follow (json_object / json_schema are converted before this point
    # by the backend, which owns the llama.cpp grammar tooling).
    grammar: str | None = None
    json_schema: str | None = None  # JSON text of a schema, converted to a grammar by the backend
    json_object: bool = False
    ignore_eos: bool = False
    # Log-probabilities (of the model's raw distribution, before sampling settings): None = not computed (no cost);
    # k >= 0 = the chosen token's and the k most likely alternatives. ``prompt_logprobs`` does the same for every
    # prompt token after the first (completions ``echo``); it turns the prefix cache off for the request, since
    # cached positions have no logits.
    logprobs: int | None = None
    prompt_logprobs: int | None = None

    def validate(self, *, max_tokens_cap: int) -> SamplingParams:
        def finite(name: str, value: float, lo: float, hi: float) -> None:
            if not isinstance(value, (int, float)) or math.isnan(value) or not (lo <= value <= hi):
                raise InvalidRequest(f"'{name}' must be a number between {lo} and {hi}, got {value!r}.",
                                     param=name)

        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise InvalidRequest("'max_tokens' must be a positive integer.", param="max_tokens")
        if self.max_tokens > max_tokens_cap:
            raise InvalidRequest(
                f"'max_tokens' is {self.max_tokens}, above this server's limit of {max_tokens_cap}.",
                param="max_tokens",
            )
        finite("temperature", self.temperature, 0.0, 2.0)
        finite("top_p", self.top_p, 0.0, 1.0)
        finite("min_p", self.min_p, 0.0, 1.0)
        finite("repeat_penalty", self.repeat_penalty, 0.0, 10.0)
        finite("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        finite("presence_penalty", self.presence_penalty, -2.0, 2.0)
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidRequest("'top_k' must be a non-negative integer.", param="top_k")
        if not isinstance(self.penalty_last_n, int) or not (0 <= self.penalty_last_n <= 4096):
            raise InvalidRequest("'penalty_last_n' must be between 0 and 4096.", param="penalty_last_n")
        if self.seed is not None and (not isinstance(self.seed, int) or not (0 <= self.seed < 2**32)):
            raise InvalidRequest("'seed' must be an integer between 0 and 2**32-1.", param="seed")
        if len(self.stop) > MAX_STOP_STRINGS:
            raise InvalidRequest(f"At most {MAX_STOP_STRINGS} stop strings are allowed, got {len(self.stop)}.",
                                 param="stop")
        for s in self.stop:
            if not isinstance(s, str) or not s or len(s) > MAX_STOP_CHARS:
                raise InvalidRequest(f"Each stop string must have 1 to {MAX_STOP_CHARS} characters.",
                                     param="stop")
        if len(self.logit_bias) > MAX_LOGIT_BIAS:
            raise InvalidRequest(f"At most {MAX_LOGIT_BIAS} logit_bias entries are allowed.", param="logit_bias")
        for tok, bias in self.logit_bias:
            if not isinstance(tok, int) or tok < 0:
                raise InvalidRequest("logit_bias keys must be token ids (non-negative integers).",
                                     param="logit_bias")
            finite("logit_bias", bias, -LOGIT_BIAS_RANGE, LOGIT_BIAS_RANGE)
        for name in ("logprobs", "prompt_logprobs"):
            k = getattr(self, name)
            if k is not None and (not isinstance(k, int) or not 0 <= k <= MAX_LOGPROBS):
                raise InvalidRequest(f"'{name}' must be an integer between 0 and {MAX_LOGPROBS}.", param=name)
        if sum(x is not None and x is not False for x in (self.grammar, self.json_schema)) + int(self.json_object) > 1:
            raise InvalidRequest("Use only one of grammar, json_schema and json_object.", param="response_format")
        return self


@dataclass
class GenerationRequest:
    """One generation: a prompt already rendered and tokenized, plus sampling."""

    request_id: str
    prompt_tokens: list[int]
    params: SamplingParams
    arrival_s: float = 0.0
    # Which conversation this continues (a digest of model | system prompt | first user turn, chat/affinity.py):
    # a cluster routes equal keys to the same replica so its prefix cache is reused. A local engine ignores it.
    affinity_key: str | None = None
    # Whose prompts this request's KV may be reused with (``chat.affinity.cache_owner_of``: the authenticated user, else
    # the API key): a sequence's KV is a prefix only for requests of the same owner, since cached tokens and time to
    # first token would reveal another user's prompt. None (library use) shares only with other owner-less requests.
    cache_owner: str | None = None


class TokenLogprob(NamedTuple):
    """One token's log-probability and, when asked, its most likely alternatives ``(token, piece, logprob)``
    (most likely first). A plain tuple so that it pickles cheaply across the engine process boundary."""

    token: int
    piece: bytes  # the token's bytes (may be part of a UTF-8 character; empty for control tokens)
    logprob: float
    top: tuple[tuple[int, bytes, float], ...] = ()


@dataclass
class Delta:
    """A piece of output. ``text`` may be empty (e.g. a token that completes no UTF-8 character)."""

    request_id: str
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    n_prompt_tokens: int = 0
    n_generated_tokens: int = 0
    n_cached_tokens: int = 0
    error: str | None = None
    # When the request asked (``SamplingParams.logprobs``): one entry per id in ``token_ids`` that is part of the
    # text (none for the end-of-generation token).
    logprobs: list[TokenLogprob] | None = None
    # When the request asked (``SamplingParams.prompt_logprobs``), on its first delta: one entry per prompt token
    # (the first has nothing before it to be predicted from: logprob 0.0, no alternatives).
    prompt_logprobs: list[TokenLogprob] | None = None
    # With ``finish_reason="error"``: an ``InhouseError`` code when ``error`` is meant for the client (the
    # engine crashed or was unloaded: retry, HTTP 503); None for an internal failure whose details stay in
    # the log (HTTP 500 with a generic message).
    error_code: str | None = None
    # Set on the only delta of a request the engine refused after queueing it (it was never admitted within
    # ``engine.max_queue_wait_s``): when to retry. ``generate`` raises it as ``Overloaded`` (see ``refusal``).
    retry_after_s: float | None = None

    def refusal(self) -> Overloaded | None:
        """The ``Overloaded`` this delta stands for: a queued request refused before its first token (HTTP 429
        with Retry-After, never a stream), or None for any other delta."""
        if self.retry_after_s is None or self.finish_reason != "error":
            return None
        return Overloaded(self.error or "The server is busy. Retry later.", retry_after_s=self.retry_after_s,
                          code=self.error_code)
