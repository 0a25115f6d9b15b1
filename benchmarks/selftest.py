"""Checks of the benchmark harness itself, for the project's tests to call.

``check_harness(tmp_dir)`` needs no model: it serves a scripted fake OpenAI server (known per-token delay,
known prefill cost, a prefix cache and a ``/metrics`` counter) on a loopback port, runs every scenario
against it, checks that the measurements recover what was scripted, and renders the table, JSON and PNG.
It takes a few seconds and raises ``AssertionError`` on any mismatch.

``run_quick(model, out_dir)`` runs the real ``--quick`` suite (needs llama.cpp and the model; a few
minutes on SmolLM2) and returns the results dict, for an integration or smoke test.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import scenarios
from benchmarks.client import ChatTarget, build_client
from benchmarks.servers import free_port

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class FakeServerScript:
    token_delay_s: float = 0.004  # between two tokens of one stream
    prefill_s_per_char: float = 0.00002  # uncached prompt characters cost this much before the 1st token
    cached_prefill_s: float = 0.002  # the 1st token of a request whose system prompt was seen before
    seen_prefixes: set[str] = field(default_factory=set)
    hits: int = 0
    misses: int = 0


def build_fake_app(script: FakeServerScript) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A raw ASGI app speaking just enough of the OpenAI chat API (SSE, usage, /metrics)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        if path == "/v1/models":
            await _respond(send, 200, b'{"object": "list", "data": [{"id": "fake"}]}', b"application/json")
            return
        if path == "/metrics":
            text = (
                "# TYPE inhouse_prefix_cache_hits_total counter\n"
                f"inhouse_prefix_cache_hits_total {script.hits}\n"
                f"inhouse_prefix_cache_misses_total {script.misses}\n"
            )
            await _respond(send, 200, text.encode(), b"text/plain")
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await _stream_completion(json.loads(body), script, send)

    return app


async def _respond(send: Send, status: int, body: bytes, ctype: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]})
    await send({"type": "http.response.body", "body": body})


async def _stream_completion(req: dict[str, Any], script: FakeServerScript, send: Send) -> None:
    messages = req["messages"]
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user_chars = sum(len(m["content"]) for m in messages if m["role"] != "system")
    if system and system in script.seen_prefixes:
        script.hits += 1
        first = script.cached_prefill_s + user_chars * script.prefill_s_per_char
    else:
        if system:
            script.misses += 1
            script.seen_prefixes.add(system)
        first = (len(system) + user_chars) * script.prefill_s_per_char
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await asyncio.sleep(first)
    n = int(req["max_tokens"])
    for i in range(n):
        if i:
            await asyncio.sleep(script.token_delay_s)
        chunk = {"choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}]}
        await send(
            {
                "type": "http.response.body",
                "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                "more_body": True,
            }
        )
    tail = [
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": n + 10}},
    ]
    payload = "".join(f"data: {json.dumps(c)}\n\n" for c in tail) + "data: [DONE]\n\n"
    await send({"type": "http.response.body", "body": payload.encode()})


class FakeServer:
    """The fake app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, script: FakeServerScript) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(
            build_fake_app(script), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise AssertionError("fake server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _between(value: float | None, lo: float, hi: float, what: str) -> None:
    assert value is not None, f"{what}: no value"
    assert lo <= value <= hi, f"{what}: {value:.4f}, expected between {lo:.4f} and {hi:.4f}"


def check_harness(tmp_dir: Path) -> dict[str, Any]:
    """Run every scenario against the fake server and check the measurements; returns the results dict."""
    from benchmarks.prompts import filler_document, rag_system_prompt
    from benchmarks.report import compute_targets, render_table, write_chart, write_json

    script = FakeServerScript()
    cfg = scenarios.BenchConfig(
        decode_tokens=40,
        decode_repeats=2,
        clients=[1, 4],
        concurrency_tokens=20,
        prefill_a_tokens=400,
        prefix_warm_requests=2,
    )
    long_prompt = filler_document(800, seed=1)  # ~6,000 chars ≈ 0.12 s of scripted prefill
    rag = rag_system_prompt(filler_document(800, seed=2))

    async def scenarios_run(target: ChatTarget) -> dict[str, Any]:
        async with build_client() as client:
            await scenarios.warm_up(client, target)
            prefix = await scenarios.prefix_cache(client, target, cfg, rag)
            decode = await scenarios.decode_runs(client, target, cfg)
            loads = [await scenarios.one_load(client, target, cfg, n) for n in cfg.clients]
            prefill = await scenarios.prefill_interference(client, target, cfg, long_prompt)
        return {"prefix": prefix, "decode": decode, "loads": loads, "prefill": prefill}

    with FakeServer(script) as server:
        raw = asyncio.run(scenarios_run(ChatTarget(server.base_url, "fake")))

    # Decode: tokens cannot come faster than the scripted delay; a loaded CI machine may make them slower.
    rate = 1 / script.token_delay_s
    for run in raw["decode"]:
        assert run["n_tokens"] == cfg.decode_tokens and run["tokens_source"] == "usage", run
        _between(run["decode_tok_s"], 0.25 * rate, 1.05 * rate, "decode tok/s")
    one, four = raw["loads"]
    assert one["total_tokens"] == cfg.concurrency_tokens and four["total_tokens"] == 4 * cfg.concurrency_tokens
    assert not one["errors"] and not four["errors"], (one["errors"], four["errors"])
    # The fake decodes streams in parallel, so 4 clients must produce clearly more than 1.
    assert four["aggregate_tok_s"] > 2 * one["aggregate_tok_s"], (one, four)
    _between(four["itl_p50_s"], 0.95 * script.token_delay_s, 4 * script.token_delay_s, "ITL p50")
    pfx = raw["prefix"]
    assert pfx["cold_ttft_s"] > 5 * pfx["warm_ttft_median_s"], pfx
    assert pfx["hit_rate"] == 2 / 3, pfx  # cold request missed, both warm ones hit
    pre = raw["prefill"]
    assert pre["a_overlapped_b_prefill"] and pre["a_cancelled"], pre
    assert pre["b_ttft_s"] >= len(long_prompt) * script.prefill_s_per_char * 0.9, pre
    # The fake prefills without blocking other streams: A's gaps stay near the scripted delay.
    assert pre["a_max_gap_during_b_prefill_s"] < 0.5 * pre["b_ttft_s"] + 0.05, pre

    res: dict[str, Any] = {
        "meta": {
            "model": "fake",
            "model_path": "-",
            "model_bytes": 100_000_000,
            "started": "selftest",
            "quick": True,
            "cpu": "fake",
            "cores": 2,
            "duration_s": 0.0,
        },
        "bandwidth": [
            {
                "when": "before",
                "array_bytes": 1,
                "single_thread_gb_s": 20.0,
                "multi_thread_gb_s": 40.0,
                "threads": 2,
                "best_gb_s": 40.0,
                "foreign_cores": 0.0,
            }
        ],
        "decode": {"inproc_runs": raw["decode"], "ours_runs": raw["decode"], "theirs_runs": raw["decode"]},
        "concurrency": {"ours": raw["loads"], "theirs": raw["loads"]},
        "prefill": {"ours": pre, "theirs": pre},
        "prefix": {"ours": pfx, "theirs": pfx},
        "contention": [{"step": "decode ours 1", "waited_s": 0, "foreign_cores": 0.5, "wall_s": 1.0}],
        "errors": [],
    }
    res["targets"] = compute_targets(res)
    names = {t["name"].split(":")[0] for t in res["targets"]}
    assert names == {"decode", "concurrency", "chunked prefill", "prefix cache"}, names
    decode_targets = [t for t in res["targets"] if t["name"].startswith("decode")]
    assert all(t.get("contended") for t in decode_targets), decode_targets
    table = render_table(res)
    assert "targets" in table and "CONTENDED" in table
    tmp_dir.mkdir(parents=True, exist_ok=True)
    write_json(res, tmp_dir / "selftest.json")
    write_chart(res, tmp_dir / "selftest.png")
    assert json.loads((tmp_dir / "selftest.json").read_text())["targets"]
    assert (tmp_dir / "selftest.png").stat().st_size > 10_000
    return res


def run_quick(model: str = "smollm2-135m", out_dir: Path | None = None, *extra: str) -> dict[str, Any]:
    """The real ``--quick`` suite (needs llama.cpp and the model). Returns the results dict."""
    from benchmarks.run import main

    argv = ["--model", model, "--quick", *extra]
    if out_dir is not None:
        argv += ["--out-dir", str(out_dir)]
    return main(argv)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = check_harness(Path(d))
        from benchmarks.report import render_table

        print(render_table(out))
        print("harness self-check passed")
