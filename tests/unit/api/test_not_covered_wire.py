"""The knowledge extension's "not covered" answer on the wire (``wire.not_covered_response``): shaped like a generated
chat answer, so a client reads it with no special case: ``n`` choices, ``logprobs``, the usage chunk when asked."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from inhouse.api.openai.serving import NotCovered
from inhouse.api.openai.wire import not_covered_response
from inhouse.api.streaming import SSEResponse

ANSWER = NotCovered(model="fake-model", question="What is the leave policy?")


def chunks(response: Any) -> list[Any]:
    assert isinstance(response, SSEResponse)

    async def read() -> list[bytes]:
        return [b async for b in response.events]

    out: list[Any] = []
    for event in asyncio.run(read()):
        data = event.decode().removeprefix("data: ").strip()
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


@pytest.mark.parametrize("n", [1, 3])
def test_a_streamed_not_covered_answer_has_n_choices_and_the_usage_chunk_when_asked(n: int) -> None:
    events = chunks(not_covered_response(ANSWER, stream=True, include_usage=True, n=n))
    assert events[-1] == "[DONE]"
    assert events[-2]["choices"] == [] and events[-2]["usage"] == {
        "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    answer = events[:-2]
    assert all(e["usage"] is None for e in answer)  # as every chunk of a generated stream asked for usage
    choices = [c for e in answer for c in e["choices"]]
    assert all(c["logprobs"] is None for c in choices)
    assert sorted({c["index"] for c in choices}) == list(range(n))
    assert [c["index"] for c in choices if c["finish_reason"] == "stop"] == list(range(n))
    assert [e["citations"] for e in answer if "citations" in e] == [[]]


def test_without_include_usage_there_is_no_usage_anywhere() -> None:
    events = chunks(not_covered_response(ANSWER, stream=True))
    assert events[-1] == "[DONE]"
    assert not any("usage" in e for e in events[:-1])
    assert [c["index"] for e in events[:-1] for c in e["choices"]] == [0, 0]


def test_a_whole_not_covered_answer_has_n_choices() -> None:
    body = json.loads(bytes(not_covered_response(ANSWER, stream=False, n=2).body))
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert {c["message"]["content"] for c in body["choices"]} == {body["choices"][0]["message"]["content"]}
    assert all(c["logprobs"] is None and c["finish_reason"] == "stop" for c in body["choices"])
