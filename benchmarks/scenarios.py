"""The four scenarios, each an async function of one running server. They return plain dicts (JSON-ready);
targets and ratios between servers are computed in ``report.py``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks.client import (
    ChatTarget,
    Message,
    StreamResult,
    fetch_text,
    median,
    parse_prometheus,
    percentile,
    stream_chat,
)
from benchmarks.prompts import DECODE_MESSAGES, RAG_QUESTIONS, concurrency_messages

Progress = Callable[[str], None]

PREFIX_METRIC = "inhouse_prefix_cache"


@dataclass
class BenchConfig:
    decode_tokens: int = 256
    decode_repeats: int = 3
    decode_rounds: int = 2  # in-process and server runs alternate this many times (drift cancels out)
    clients: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    concurrency_tokens: int = 128
    prefill_prompt_tokens: int = 1500
    prefill_a_tokens: int = 512
    prefix_prompt_tokens: int = 1500
    prefix_warm_requests: int = 4
    bandwidth_repeats: int = 5
    logit_bias: dict[int, float] | None = None  # EOS suppression, set when --ignore-eos
    # The stall's stream A times every token, not only those with text (random weights emit tokens that decode to
    # no text, which made one gap of two steps look like one long stall): asks for logprobs, one entry per token.
    stall_every_token: bool = False

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(
            decode_tokens=128,
            decode_repeats=2,
            decode_rounds=1,
            clients=[1, 2, 8],
            concurrency_tokens=64,
            prefill_a_tokens=256,
            prefix_warm_requests=2,
            bandwidth_repeats=3,
        )


async def warm_up(client: httpx.AsyncClient, target: ChatTarget) -> dict[str, Any]:
    """A short unrelated request: pages the mmapped weights in so the first measured request is not a
    page-fault benchmark. Deliberately shares no long prefix with any scenario."""
    res = await stream_chat(client, target, [{"role": "user", "content": "Say hello."}], 4)
    if res.error:
        raise RuntimeError(f"warm-up request failed: {res.error}")
    return res.summary()


# --- 1. single-stream decode ----------------------------------------------------------------------


async def decode_runs(
    client: httpx.AsyncClient, target: ChatTarget, cfg: BenchConfig, messages: list[Message] = DECODE_MESSAGES
) -> list[dict[str, Any]]:
    runs = []
    for _ in range(cfg.decode_repeats):
        res = await stream_chat(client, target, messages, cfg.decode_tokens, logit_bias=cfg.logit_bias)
        if res.error:
            raise RuntimeError(f"decode request failed: {res.error}")
        runs.append({**res.summary(), "text_head": res.text[:200]})
    return runs


# --- 2. concurrency -----------------------------------------------------------------------------


def summarize_load(results: list[StreamResult]) -> dict[str, Any]:
    ok = [r for r in results if not r.error]
    ttfts = [t for r in ok if (t := r.ttft_s) is not None]
    gaps = [g for r in ok for g in r.gaps_s]
    tokens = sum(r.n_tokens for r in ok)
    span = (max(r.end_s for r in results) - min(r.sent_s for r in results)) if results else 0.0
    return {
        "clients": len(results),
        "errors": [r.error for r in results if r.error],
        "total_tokens": tokens,
        "wall_s": span,
        "aggregate_tok_s": tokens / span if span > 0 else None,
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p95_s": percentile(ttfts, 95),
        "itl_p50_s": percentile(gaps, 50),
        "itl_p95_s": percentile(gaps, 95),
        "itl_max_s": max(gaps) if gaps else None,
        "finish_reasons": sorted({str(r.finish_reason) for r in ok}),
        "tokens_source": sorted({r.tokens_source for r in ok}),
    }


async def one_load(client: httpx.AsyncClient, target: ChatTarget, cfg: BenchConfig, n: int) -> dict[str, Any]:
    """``n`` clients start together, each with a distinct short prompt and one streaming request."""
    results = await asyncio.gather(
        *(
            stream_chat(client, target, concurrency_messages(i), cfg.concurrency_tokens, logit_bias=cfg.logit_bias)
            for i in range(n)
        )
    )
    return summarize_load(list(results))


# --- 3. chunked prefill ------------------------------------------------------------------------


async def prefill_interference(
    client: httpx.AsyncClient,
    target: ChatTarget,
    cfg: BenchConfig,
    long_prompt: str,
    lead_tokens: int = 8,
    tail_tokens: int = 3,
) -> dict[str, Any]:
    """Stream A decodes; after ``lead_tokens`` of A a request B with a long prompt arrives. Measures A's
    longest inter-token gap while B prefills (B sent → B's first token) and B's TTFT. A is cancelled once
    B has its first token and A has produced ``tail_tokens`` more, to keep the run short."""
    b_started = asyncio.Event()
    b_first: list[float] = []
    cancel_a = asyncio.Event()
    b_task: list[asyncio.Task[StreamResult]] = []
    a_after_b: list[int] = [0]

    def on_b_chunk(res: StreamResult) -> None:
        if not b_first:
            b_first.append(res.chunk_times_s[0])

    def on_a_chunk(res: StreamResult) -> None:
        if res.n_chunks == lead_tokens and not b_started.is_set():
            b_started.set()
            b_task.append(
                asyncio.create_task(
                    stream_chat(
                        client,
                        target,
                        [
                            {"role": "system", "content": long_prompt},
                            {"role": "user", "content": "Summarize the first clause."},
                        ],
                        4,
                        on_chunk=on_b_chunk,
                    )
                )
            )
        if b_first:
            a_after_b[0] += 1
            if a_after_b[0] >= tail_tokens:
                cancel_a.set()

    a = await stream_chat(
        client,
        target,
        DECODE_MESSAGES,
        cfg.prefill_a_tokens,
        logit_bias=cfg.logit_bias,
        cancel=cancel_a,
        on_chunk=on_a_chunk,
        every_token=cfg.stall_every_token,
    )
    if not b_task:
        raise RuntimeError(f"stream A ended after {a.n_chunks} tokens, before B was sent ({a.error})")
    b = await b_task[0]
    if a.error:
        raise RuntimeError(f"stream A failed: {a.error}")
    if b.error:
        raise RuntimeError(f"request B failed: {b.error}")
    b_sent = b.sent_s
    b_first_s = b.chunk_times_s[0] if b.chunk_times_s else b.end_s
    times = a.chunk_times_s
    # Gaps of A overlapping B's prefill window [b_sent, b_first]; the gap that contains b_first counts too.
    window_gaps = [t1 - t0 for t0, t1 in itertools.pairwise(times) if t1 > b_sent and t0 < b_first_s]
    before = [t1 - t0 for t0, t1 in itertools.pairwise(times) if t1 <= b_sent]
    overlap = bool(times) and times[-1] >= b_first_s
    return {
        "b_prompt_tokens": b.usage_prompt_tokens,
        "b_ttft_s": b.ttft_s,
        "a_tokens": a.n_chunks,
        "a_cancelled": a.cancelled,
        "a_gap_before_b_median_s": median(before),
        "a_max_gap_during_b_prefill_s": max(window_gaps) if window_gaps else None,
        "a_gaps_during_b_prefill": len(window_gaps),
        "a_overlapped_b_prefill": overlap,
        # For the chart: A's token times and B's markers relative to A's start.
        "a_token_times_s": [t - a.sent_s for t in times],
        "b_sent_rel_s": b_sent - a.sent_s,
        "b_first_rel_s": b_first_s - a.sent_s,
    }


# --- 4. prefix cache ---------------------------------------------------------------------------


async def read_prefix_metrics(client: httpx.AsyncClient, target: ChatTarget) -> dict[str, float] | None:
    status, text = await fetch_text(client, target, "/metrics")
    if status != 200:
        return None
    values = parse_prometheus(text, PREFIX_METRIC)
    return values or None


async def prefix_cache(
    client: httpx.AsyncClient, target: ChatTarget, cfg: BenchConfig, system_prompt: str
) -> dict[str, Any]:
    """Cold: the first request with a ~1,500-token RAG prefix on a fresh server. Warm: same prefix,
    different question. Must run before anything else has sent that prefix to this server."""
    before = await read_prefix_metrics(client, target)

    async def ask(question: str) -> StreamResult:
        res = await stream_chat(
            client,
            target,
            [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}],
            8,
        )
        if res.error or res.ttft_s is None:
            raise RuntimeError(f"prefix request failed: {res.error or 'no token'}")
        return res

    cold = await ask(RAG_QUESTIONS[0])
    warm = [await ask(q) for q in RAG_QUESTIONS[1 : 1 + cfg.prefix_warm_requests]]
    after = await read_prefix_metrics(client, target)
    warm_ttfts = [r.ttft_s for r in warm if r.ttft_s is not None]
    warm_med = median(warm_ttfts)
    out: dict[str, Any] = {
        "prompt_tokens": cold.usage_prompt_tokens,
        "cold_ttft_s": cold.ttft_s,
        "warm_ttft_s": warm_ttfts,
        "warm_ttft_median_s": warm_med,
        "cold_over_warm": (cold.ttft_s / warm_med) if cold.ttft_s and warm_med else None,
        "warm_cached_tokens": [r.cached_tokens for r in warm],
        "metrics_before": before,
        "metrics_after": after,
        "hit_rate": None,
    }
    if before is not None and after is not None:
        hits_name = f"{PREFIX_METRIC}_hits_total"
        hits = after.get(hits_name, 0.0) - before.get(hits_name, 0.0)
        queries_name = f"{PREFIX_METRIC}_queries_total"
        misses_name = f"{PREFIX_METRIC}_misses_total"
        tokens_name = f"{PREFIX_METRIC}_hit_tokens_total"
        out["hits"] = hits
        if tokens_name in after:
            out["hit_tokens"] = after[tokens_name] - before.get(tokens_name, 0.0)
        if queries_name in after:
            queries = after[queries_name] - before.get(queries_name, 0.0)
            out["hit_rate"] = hits / queries if queries else None
            out["hit_rate_basis"] = f"hits / look-ups over the cold and {len(warm)} warm requests"
        elif misses_name in after:
            misses = after[misses_name] - before.get(misses_name, 0.0)
            out["hit_rate"] = hits / (hits + misses) if hits + misses else None
            out["hit_rate_basis"] = f"hits / (hits + misses) over the cold and {len(warm)} warm requests"
        else:
            out["hit_rate"] = hits / len(warm) if warm else None
            out["hit_rate_basis"] = "hits / warm requests"
    return out
