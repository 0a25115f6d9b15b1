"""Legacy completions ``logprobs.text_offset`` when tokens hold parts of UTF-8 characters: every offset is where
the token's character starts in the choice's text, never past it."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.api.openai.logprobs import CompletionLogprobs
from inhouse.engine.backends.fake import reply_script
from inhouse.engine.params import TokenLogprob

REPLY = "é日x"  # the fake model writes one token per UTF-8 byte: 2 + 3 + 1 tokens
EXPECTED = [0, 0, 1, 1, 1, 2]


def _entries(text: str) -> list[TokenLogprob]:
    return [TokenLogprob(b, bytes([b]), -0.5) for b in text.encode()]


def test_offsets_count_completed_characters_across_chunks() -> None:
    entries = _entries(REPLY)
    assert CompletionLogprobs().build(entries)["text_offset"] == EXPECTED
    chunked = CompletionLogprobs(offset=2)  # after an echoed "ab"; a character split across two chunks
    assert chunked.build(entries[:1])["text_offset"] == [2]
    assert chunked.build(entries[1:])["text_offset"] == [e + 2 for e in EXPECTED[1:]]


def test_completions_offsets_whole_streamed_and_echoed(make_services: Any) -> None:
    s = make_services(fake={"script": reply_script(REPLY)})
    ask = {"model": "fake-model", "prompt": "ab", "logprobs": 0, "max_tokens": 10}
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        choice = c.post("/v1/completions", json=ask).json()["choices"][0]
        assert choice["text"] == REPLY and choice["logprobs"]["text_offset"] == EXPECTED

        events = [json.loads(b.removeprefix("data: ")) for b in c.post("/v1/completions", json={
            **ask, "stream": True}).text.strip().split("\n\n") if b != "data: [DONE]"]
        offsets = [o for e in events if e["choices"] and e["choices"][0]["logprobs"]
                   for o in e["choices"][0]["logprobs"]["text_offset"]]
        assert offsets == EXPECTED

        echoed = c.post("/v1/completions", json={**ask, "echo": True}).json()["choices"][0]
        lp = echoed["logprobs"]
        assert echoed["text"] == "ab" + REPLY
        assert lp["text_offset"][-len(EXPECTED):] == [e + 2 for e in EXPECTED]
        assert lp["text_offset"][lp["tokens"].index("x")] == echoed["text"].index("x")
