"""``n`` choices, log-probabilities, completions with several prompts and ``echo``, through the real app over the
FakeBackend (whose logits are known: the chosen token scores 10, the other 258 tokens 0; a prompt position is
uniform)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_openai_routes import sse_events as sse

from inhouse.api.app import build_app
from inhouse.engine.backends.fake import N_VOCAB
from inhouse.testing.services import FAKE_MODEL as MODEL

REPLY = "Hello from the fake backend."
CHOSEN = 10 - math.log(math.exp(10) + N_VOCAB - 1)  # log-softmax of the chosen token's logit
OTHER = -math.log(math.exp(10) + N_VOCAB - 1)
UNIFORM = -math.log(N_VOCAB)


def chat(**kw: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 64, **kw}


def test_n_choices_share_the_prompt_and_count_it_once(client: TestClient, services: Any) -> None:
    engine = services.registry.get_engine(MODEL)
    before = engine.stats().prefix_cache_hit_tokens
    body = client.post("/v1/chat/completions", json=chat(n=3)).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert all(c["message"]["content"] == REPLY and c["finish_reason"] == "stop" for c in body["choices"])
    usage = body["usage"]
    single = client.post("/v1/chat/completions", json=chat(seed=1)).json()["usage"]
    assert usage["prompt_tokens"] == single["prompt_tokens"], "the prompt is counted once"
    assert usage["completion_tokens"] == 3 * single["completion_tokens"]
    # Choices 1 and 2 copied the prompt's KV from choice 0 (all but its last token) instead of computing it.
    assert engine.stats().prefix_cache_hit_tokens - before >= 2 * (usage["prompt_tokens"] - 1)


def test_n_choices_stream_each_with_its_index_and_end(client: TestClient) -> None:
    events = sse(client.post("/v1/chat/completions", json=chat(n=2, stream=True)).text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for i in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == i]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert "".join(c["delta"].get("content") or "" for c in mine) == REPLY
        assert [c["finish_reason"] for c in mine if c["finish_reason"]] == ["stop"]


def test_chat_logprobs_with_alternatives(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=chat(logprobs=True, top_logprobs=2)).json()
    choice = body["choices"][0]
    content = choice["logprobs"]["content"]
    assert "".join(t["token"] for t in content) == REPLY
    assert len(content) == body["usage"]["completion_tokens"] - 1, "every token but the end-of-generation one"
    for t in content:
        assert t["logprob"] == pytest.approx(CHOSEN, abs=1e-5)
        assert bytes(t["bytes"]).decode() == t["token"]
        first, second = t["top_logprobs"]
        assert first["token"] == t["token"] and first["logprob"] == pytest.approx(CHOSEN, abs=1e-5)
        assert second["logprob"] == pytest.approx(OTHER, abs=1e-5)
    plain = client.post("/v1/chat/completions", json=chat(logprobs=True)).json()["choices"][0]["logprobs"]
    assert all(t["top_logprobs"] == [] for t in plain["content"])
    assert client.post("/v1/chat/completions", json=chat()).json()["choices"][0]["logprobs"] is None


def test_streamed_chat_logprobs_come_with_their_tokens(client: TestClient) -> None:
    events = sse(client.post("/v1/chat/completions", json=chat(logprobs=True, stream=True)).text)
    pieces = [c["choices"][0] for c in events[:-1] if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert pieces and all(p["logprobs"]["content"] for p in pieces)
    tokens = [t["token"] for p in pieces for t in p["logprobs"]["content"]]
    assert "".join(tokens) == REPLY == "".join(p["delta"]["content"] for p in pieces)


def test_completions_with_several_prompts_number_choices_prompt_by_prompt(make_services: Any) -> None:
    s = make_services(fake={"script": {"ping": "pong", "marco": "polo"}})
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        body = c.post("/v1/completions", json={"model": MODEL, "prompt": ["say ping", "say marco"], "n": 2,
                                               "max_tokens": 8}).json()
        assert [(ch["index"], ch["text"]) for ch in body["choices"]] == [(0, "pong"), (1, "pong"), (2, "polo"),
                                                                          (3, "polo")]
        one = c.post("/v1/completions", json={"model": MODEL, "prompt": "say ping", "max_tokens": 8}).json()
        two = c.post("/v1/completions", json={"model": MODEL, "prompt": "say marco", "max_tokens": 8}).json()
        assert body["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"] + two["usage"]["prompt_tokens"]
        streamed = sse(c.post("/v1/completions", json={"model": MODEL, "prompt": [[1, 118, 108], [1, 109]],
                                                        "stream": True, "max_tokens": 8}).text)
        assert {ch["choices"][0]["index"] for ch in streamed[:-1]} == {0, 1}


def test_echo_repeats_the_prompt_and_scores_it(client: TestClient) -> None:
    prompt = "Once upon"
    body = client.post("/v1/completions", json={"model": MODEL, "prompt": prompt, "echo": True,
                                                 "max_tokens": 3}).json()
    assert body["choices"][0]["text"] == prompt + REPLY[:3] and body["choices"][0]["logprobs"] is None
    scored = client.post("/v1/completions", json={"model": MODEL, "prompt": prompt, "echo": True, "logprobs": 1,
                                                   "max_tokens": 3}).json()["choices"][0]
    lp = scored["logprobs"]
    n_prompt = len(prompt.encode()) + 1  # the fake tokenizer: BOS, then one token per byte
    assert "".join(lp["tokens"]) == prompt + REPLY[:3] == scored["text"]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None, "nothing predicts the first token"
    assert lp["token_logprobs"][1:n_prompt] == pytest.approx([UNIFORM] * (n_prompt - 1), abs=1e-5)
    assert lp["token_logprobs"][n_prompt:] == pytest.approx([CHOSEN] * 3, abs=1e-5)
    assert all(len(t) == 1 for t in lp["top_logprobs"][1:])
    assert lp["text_offset"] == [len("".join(lp["tokens"][:i])) for i in range(len(lp["tokens"]))]


def test_echo_of_token_ids_spells_the_prompt(client: TestClient) -> None:
    tokens = [1, *(3 + b for b in b"abc")]
    body = client.post("/v1/completions", json={"model": MODEL, "prompt": tokens, "echo": True, "max_tokens": 2})
    assert body.json()["choices"][0]["text"] == "abc" + REPLY[:2]
    events = sse(client.post("/v1/completions", json={"model": MODEL, "prompt": tokens, "echo": True,
                                                       "max_tokens": 2, "stream": True}).text)
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == "abc" + REPLY[:2]


def test_completion_logprobs_stream_with_running_offsets(client: TestClient) -> None:
    events = sse(client.post("/v1/completions", json={"model": MODEL, "prompt": "x", "logprobs": 0,
                                                       "max_tokens": 5, "stream": True}).text)
    logprobs = [e["choices"][0]["logprobs"] for e in events[:-1]]
    offsets = [o for lp in logprobs if lp for o in lp["text_offset"]]
    assert offsets == [0, 1, 2, 3, 4]


def test_suffix_fills_in_the_middle_on_a_model_with_fim_tokens() -> None:
    from inhouse.chat.completion import FIM_MARKERS, completion_prompts

    class Vocab:  # a tokenizer with the three markers as single tokens
        def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
            if parse_special and text in FIM_MARKERS:
                return [900 + FIM_MARKERS.index(text)]
            return ([1] if add_special else []) + [ord(ch) for ch in text]

    (p,) = completion_prompts({"prompt": "ab", "suffix": "<|fim_middle|>"}, Vocab(), "coder")  # type: ignore[arg-type]
    assert p.tokens == [1, 900, ord("a"), ord("b"), 901, *(ord(ch) for ch in "<|fim_middle|>"), 902]
