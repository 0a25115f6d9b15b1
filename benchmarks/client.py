"""An async streaming OpenAI chat client that timestamps every token.

One ``StreamResult`` per request: when it was sent, when each content chunk arrived (TTFT and every
inter-token gap follow from these), and the token count. Tokens are counted from SSE chunks (servers send
one token per chunk, except where a token completes no UTF-8 character); when the server reports ``usage``
that count is preferred and ``tokens_source`` says so.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

Message = dict[str, str]


@dataclass
class StreamResult:
    sent_s: float  # perf_counter when the request was sent
    chunk_times_s: list[float] = field(default_factory=list)  # perf_counter of each content chunk
    text: str = ""
    end_s: float = 0.0
    usage_completion_tokens: int | None = None
    usage_prompt_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    cancelled: bool = False

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_times_s)

    @property
    def n_tokens(self) -> int:
        if self.usage_completion_tokens is not None and not self.cancelled:
            return self.usage_completion_tokens
        return self.n_chunks

    @property
    def tokens_source(self) -> str:
        return "usage" if self.usage_completion_tokens is not None and not self.cancelled else "chunks"

    @property
    def ttft_s(self) -> float | None:
        return self.chunk_times_s[0] - self.sent_s if self.chunk_times_s else None

    @property
    def gaps_s(self) -> list[float]:
        t = self.chunk_times_s
        return [b - a for a, b in itertools.pairwise(t)]

    @property
    def decode_tok_s(self) -> float | None:
        """Tokens per second after the first token (prefill excluded)."""
        t = self.chunk_times_s
        if len(t) < 2 or t[-1] <= t[0]:
            return None
        # The span runs from the first chunk (the first token alone: every server here sends it at once) to the
        # last; the tokens after the first are usage's count minus one when the server reports usage (a chunk may
        # carry several tokens: inhouse merges what arrived together), the chunks after the first otherwise.
        n = self.n_tokens if self.tokens_source == "usage" else len(t)
        return (n - 1) / (t[-1] - t[0])

    def summary(self) -> dict[str, Any]:
        return {
            "n_tokens": self.n_tokens,
            "n_chunks": self.n_chunks,
            "tokens_source": self.tokens_source,
            "prompt_tokens": self.usage_prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "ttft_s": self.ttft_s,
            "decode_tok_s": self.decode_tok_s,
            "duration_s": self.end_s - self.sent_s,
            "finish_reason": self.finish_reason,
            "error": self.error,
            "cancelled": self.cancelled,
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile, ``q`` in [0, 100]; None for no data."""
    if not values:
        return None
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class ChatTarget:
    """Where and how to send chat requests."""

    base_url: str  # e.g. http://127.0.0.1:8123
    model: str
    api_key: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def build_client(max_connections: int = 64, timeout_s: float = 900.0) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout_s, connect=30.0))


def chat_body(
    model: str, messages: list[Message], max_tokens: int, logit_bias: dict[int, float] | None = None
) -> dict[str, Any]:
    """A greedy streaming request; identical for every server so they decode the same tokens."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "top_p": 1.0,
        "repeat_penalty": 1.0,  # llama_cpp.server would otherwise default to 1.1
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if logit_bias:
        body["logit_bias"] = {str(k): v for k, v in logit_bias.items()}
    return body


async def stream_chat(
    client: httpx.AsyncClient,
    target: ChatTarget,
    messages: list[Message],
    max_tokens: int,
    *,
    logit_bias: dict[int, float] | None = None,
    cancel: asyncio.Event | None = None,
    on_chunk: Any = None,
    every_token: bool = False,
) -> StreamResult:
    """Send one streaming chat request and record every chunk's arrival time.

    ``cancel``: when set, the stream is closed at the next chunk (the server should then abort the
    request). ``on_chunk(result)`` is called after each content chunk (used to trigger scenario steps).
    ``every_token``: ask for logprobs and count a chunk that carries a token without text as well.
    """
    body = chat_body(target.model, messages, max_tokens, logit_bias)
    if every_token:
        body.update(logprobs=True, top_logprobs=0)
    res = StreamResult(sent_s=time.perf_counter())
    pieces: list[str] = []
    try:
        async with client.stream(
            "POST", f"{target.base_url}/v1/chat/completions", json=body, headers=target.headers()
        ) as resp:
            if resp.status_code != 200:
                detail = (await resp.aread()).decode("utf-8", "replace")[:500]
                res.error = f"HTTP {resp.status_code}: {detail}"
                return res
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, ": ping" comments
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                now = time.perf_counter()
                chunk = json.loads(data)
                if "error" in chunk:
                    res.error = json.dumps(chunk["error"])[:500]
                    break
                usage = chunk.get("usage")
                if usage:
                    res.usage_completion_tokens = usage.get("completion_tokens")
                    res.usage_prompt_tokens = usage.get("prompt_tokens")
                    details = usage.get("prompt_tokens_details") or {}
                    if isinstance(details, dict) and details.get("cached_tokens") is not None:
                        res.cached_tokens = details["cached_tokens"]
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    content = delta.get("content")
                    tokens = (choice.get("logprobs") or {}).get("content") if every_token else None
                    if content or tokens:
                        res.chunk_times_s.append(now)
                        pieces.append(content or "")
                        if on_chunk is not None:
                            on_chunk(res)
                    if choice.get("finish_reason"):
                        res.finish_reason = choice["finish_reason"]
                if cancel is not None and cancel.is_set():
                    res.cancelled = True
                    break
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        res.end_s = time.perf_counter()
        res.text = "".join(pieces)
    return res


async def fetch_text(client: httpx.AsyncClient, target: ChatTarget, path: str) -> tuple[int, str]:
    try:
        resp = await client.get(f"{target.base_url}{path}", headers=target.headers())
    except httpx.HTTPError as exc:
        return 0, str(exc)
    return resp.status_code, resp.text


def parse_prometheus(text: str, prefix: str) -> dict[str, float]:
    """Sum every sample whose metric name starts with ``prefix`` over its labels."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0].strip()
        if not name.startswith(prefix):
            continue
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out
