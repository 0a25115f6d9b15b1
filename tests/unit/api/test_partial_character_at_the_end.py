"""A generation that ends inside a multi-byte character (max_tokens, or EOS after a partial token) ends before it:
the incomplete bytes are dropped, not sent as U+FFFD, whole or streamed; usage still counts their tokens."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.engine.backends.fake import reply_script
from inhouse.testing.services import FAKE_MODEL as MODEL


def test_max_tokens_inside_a_character_drops_its_bytes(make_services: Any) -> None:
    s = make_services(fake={"script": reply_script("🌊🐚")})  # the fake model writes a token per byte
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        for max_tokens, expected in ((3, ""), (4, "🌊"), (5, "🌊"), (7, "🌊"), (8, "🌊🐚")):
            body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
            r = c.post("/v1/chat/completions", json=body).json()
            assert r["choices"][0]["message"]["content"] == expected, max_tokens
            assert r["usage"]["completion_tokens"] == max_tokens
            events = [json.loads(b.removeprefix("data: ")) for b in c.post("/v1/chat/completions", json={
                **body, "stream": True, "stream_options": {"include_usage": True}}).text.strip().split("\n\n")
                if b != "data: [DONE]"]
            streamed = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
            assert streamed == expected and events[-1]["usage"]["completion_tokens"] == max_tokens, max_tokens
            r = c.post("/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": max_tokens}).json()
            assert r["choices"][0]["text"] == expected and r["usage"]["completion_tokens"] == max_tokens
