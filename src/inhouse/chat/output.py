"""A prepared request and what comes out of it, independent of HTTP.

A request runs as one engine sequence per *choice*: ``n`` choices of one prompt (they share the prompt's KV through
the scheduler's prefix copy), times the prompts of a completions request with a list of prompts. Choice ``i`` is
``requests[i]``; the prompt it answers is ``prompt_index(i) = i // n``, as in OpenAI's numbering.

``OutputAccumulator`` collects one choice's deltas into a ``CompletionResult`` (text, tool calls, finish reason,
token log-probabilities); ``total_usage`` adds the choices up (each prompt counted once).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from inhouse.chat.tool_calls import ToolCall, drop_cut_call, parse_tool_calls
from inhouse.errors import EngineFailure, Unavailable

if TYPE_CHECKING:
    from inhouse.engine.params import Delta, FinishReason, GenerationRequest, TokenLogprob
    from inhouse.engine.protocol import EngineClient

Kind = Literal["chat", "completion"]


@dataclass
class PreparedGeneration:
    """Everything needed to run one request; built by ``ChatService.prepare_chat`` / ``prepare_completion``."""

    kind: Kind
    model: str
    engine: EngineClient
    requests: list[GenerationRequest]  # one per choice, in choice order
    parse_tools: bool = False
    tool_names: frozenset[str] | None = None  # the functions offered: a bare JSON answer must name one (None: any)
    forced_call: bool = False  # tool_choice forces a call: a grammar admits only the call's JSON, nothing else
    created: int = field(default_factory=lambda: int(time.time()))
    n: int = 1  # choices per prompt
    # Per prompt, the text a completions request with ``echo`` puts before the generated text (None: no echo; the
    # text of a token-id prompt comes from its prompt log-probabilities' pieces, see ``echo_text``).
    echo: list[str | None] | None = None
    logprobs: int | None = None  # the alternatives asked per token (None: no log-probabilities in the answer)

    @property
    def request(self) -> GenerationRequest:
        """The first choice's engine request (its id is the response's id)."""
        return self.requests[0]

    @property
    def request_id(self) -> str:
        return self.requests[0].request_id

    @property
    def n_prompts(self) -> int:
        return len(self.requests) // self.n

    def prompt_index(self, choice: int) -> int:
        return choice // self.n

    @property
    def n_prompt_tokens(self) -> int:
        """Prompt tokens of the request: each prompt once, however many choices it has."""
        return sum(len(self.requests[p * self.n].prompt_tokens) for p in range(self.n_prompts))


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return out


@dataclass
class CompletionResult:
    request_id: str
    model: str
    text: str  # the content (tool-call markup removed when tools were parsed)
    finish_reason: FinishReason
    usage: Usage  # this choice's
    tool_calls: list[ToolCall] = field(default_factory=list)
    index: int = 0  # the choice
    logprobs: list[TokenLogprob] | None = None  # the generated tokens', when asked
    prompt_logprobs: list[TokenLogprob] | None = None  # the prompt tokens', when asked (``echo``)


class OutputAccumulator:
    """Collects the deltas of one choice. Shared by ``ChatService.complete`` and the serving layer."""

    def __init__(self, prepared: PreparedGeneration, index: int = 0) -> None:
        self.prepared = prepared
        self.index = index
        self._parts: list[str] = []
        self.n_generated = 0
        self.n_cached = 0
        self.finish_reason: FinishReason | None = None
        self.error: str | None = None
        self.error_code: str | None = None
        self.logprobs: list[TokenLogprob] | None = [] if prepared.logprobs is not None else None
        self.prompt_logprobs: list[TokenLogprob] | None = None

    def add(self, delta: Delta) -> None:
        if delta.text:
            self._parts.append(delta.text)
        if delta.logprobs and self.logprobs is not None:
            self.logprobs.extend(delta.logprobs)
        if delta.prompt_logprobs:
            self.prompt_logprobs = (self.prompt_logprobs or []) + delta.prompt_logprobs
        self.n_generated = max(self.n_generated + len(delta.token_ids), delta.n_generated_tokens)
        self.n_cached = max(self.n_cached, delta.n_cached_tokens)
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
            self.error = delta.error
            self.error_code = delta.error_code
            if delta.n_generated_tokens:
                self.n_generated = delta.n_generated_tokens

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def usage(self) -> Usage:
        prompt = len(self.prepared.requests[self.index].prompt_tokens)
        return Usage(prompt, self.n_generated, self.n_cached)

    def result(self) -> CompletionResult:
        """The final result. Raises when the engine ended the request with an error: Unavailable (503) when
        it says the caller may retry (the engine crashed or was unloaded), EngineFailure otherwise."""
        if self.finish_reason == "error":
            if self.error_code is not None:
                raise Unavailable(self.error or "The model is unavailable; retry.", code=self.error_code)
            raise EngineFailure(self.error or "The inference backend failed.")
        reason: FinishReason = self.finish_reason or "abort"
        text, calls = self.text, list[ToolCall]()
        if self.prepared.parse_tools:
            text, calls = parse_tool_calls(text, tool_names=self.prepared.tool_names)
            if reason == "length":  # kept: the answer was cut (Responses: "incomplete"), maybe mid-call
                # Half a call is neither a call nor an answer; under a forcing grammar all the text is the call.
                text = "" if self.prepared.forced_call else drop_cut_call(text, tool_names=self.prepared.tool_names)
            elif calls and reason == "stop":
                reason = "tool_calls"
        p = self.prepared
        return CompletionResult(p.request_id, p.model, text, reason, self.usage(), calls, index=self.index,
                                logprobs=self.logprobs, prompt_logprobs=self.prompt_logprobs)


def total_usage(prepared: PreparedGeneration, usages: Sequence[Usage]) -> Usage:
    """The request's usage: every choice's generated tokens, each prompt once (its first choice's cache hit)."""
    firsts = [u for i, u in enumerate(usages) if i % prepared.n == 0]
    return Usage(prepared.n_prompt_tokens, sum(u.completion_tokens for u in usages),
                 sum(u.cached_tokens for u in firsts))


def echo_text(prepared: PreparedGeneration, index: int, prompt_logprobs: Sequence[TokenLogprob] | None) -> str:
    """What ``echo`` puts before choice ``index``'s text: the prompt as given, or the pieces of a token-id prompt
    (from its prompt log-probabilities)."""
    if prepared.echo is None:
        return ""
    given = prepared.echo[prepared.prompt_index(index)]
    if given is not None:
        return given
    pieces = b"".join(e.piece for e in prompt_logprobs or ())
    return pieces.decode("utf-8", errors="replace")
