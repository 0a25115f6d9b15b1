"""The benchmark's streaming client: which chunks it times (a token without text counts only when asked for)."""

from __future__ import annotations

import asyncio
import json

import httpx
from benchmarks.client import ChatTarget, stream_chat


def sse(*chunks: dict[str, object]) -> bytes:
    return b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"


def delta(content: str, tokens: int) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": content},
                         "logprobs": {"content": [{"token": "x", "logprob": 0.0}] * tokens}}]}


def run(every_token: bool) -> tuple[list[float], dict[str, object]]:
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(json.loads(request.content))
        body = sse(delta("Hel", 1), delta("", 1), delta("lo", 1))  # the middle token decodes to no text
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    async def go() -> list[float]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            res = await stream_chat(client, ChatTarget("http://test", "m"), [{"role": "user", "content": "hi"}], 3,
                                    every_token=every_token)
            assert res.text == "Hello" and res.error is None
            return res.chunk_times_s

    return asyncio.run(go()), seen


def test_tokens_without_text_are_timed_only_when_asked_for() -> None:
    times, body = run(every_token=False)
    assert len(times) == 2 and "logprobs" not in body  # text chunks only: two steps look like one gap
    times, body = run(every_token=True)
    assert len(times) == 3 and body["logprobs"] is True and body["top_logprobs"] == 0
