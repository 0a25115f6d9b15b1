"""The grounded-answer benchmark forces every answer to its full length (EOS ignored on the engine request)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from benchmarks.answer import generate

from inhouse.chat.output import PreparedGeneration
from inhouse.engine.params import GenerationRequest, SamplingParams


class Chat:
    def __init__(self) -> None:
        self.streamed: list[PreparedGeneration] = []

    def prepare_chat(self, body: dict[str, Any]) -> PreparedGeneration:
        req = GenerationRequest("r1", [1, 2, 3], SamplingParams(max_tokens=body["max_tokens"]))
        return PreparedGeneration("chat", body["model"], engine=None, requests=[req])  # type: ignore[arg-type]

    async def stream(self, prepared: PreparedGeneration) -> AsyncIterator[Any]:
        self.streamed.append(prepared)
        for i in range(3):
            yield SimpleNamespace(token_ids=[i], n_generated_tokens=i + 1, n_cached_tokens=2)


def test_the_answer_ignores_eos_and_counts_its_tokens() -> None:
    chat = Chat()
    out = asyncio.run(generate(chat, "m", [{"role": "user", "content": "q"}], 3))
    assert chat.streamed[0].request.params.ignore_eos is True and chat.streamed[0].request.params.max_tokens == 3
    assert out["tokens"] == 3 and out["cached"] == 2 and out["prompt"] == 3 and out["total_s"] >= out["ttft_s"] > 0
