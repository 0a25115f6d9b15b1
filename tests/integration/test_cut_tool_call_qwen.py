"""A tool call that max_tokens cuts, on the real model: Qwen2.5-Coder 0.5B writes a forced call (a grammar) and an
``auto`` one as bare JSON; cut, half a call must come back as neither content nor a call, whole or streamed."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from served import BIN, serve

pytestmark = pytest.mark.integration

QWEN = "qwen2.5-coder-0.5b"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           seed_pulled_model: Callable[[str, Path], None]) -> Iterator[tuple[str, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("cut-call")
    env = {**os.environ, "INHOUSE_DATA_DIR": str(data_dir)}
    seed_pulled_model(QWEN, data_dir)
    for args in (["models", "pull", QWEN], ["keys", "create", "--name", "tests", "--role", "admin"]):
        done = subprocess.run([str(BIN), *args], capture_output=True, text=True, env=env, timeout=900)
        assert done.returncode == 0, done.stderr + done.stdout
    key = done.stdout.strip().splitlines()[-1].strip()
    with serve(env, QWEN) as url:
        yield url, {"Authorization": f"Bearer {key}"}


def _streamed_content(url: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[str, str | None]:
    content, finish = "", None
    with httpx.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True}, headers=headers,
                      timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    content += choice["delta"].get("content") or ""
                    finish = choice["finish_reason"] or finish
    return content, finish


def test_a_call_cut_by_max_tokens_is_neither_content_nor_a_call(server: tuple[str, dict[str, str]]) -> None:
    url, headers = server
    ask = {"model": QWEN, "temperature": 0, "tools": TOOLS,
           "messages": [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]}
    whole = httpx.post(url + "/v1/chat/completions", json={**ask, "max_tokens": 64}, headers=headers,
                       timeout=120).json()["choices"][0]
    assert whole["finish_reason"] == "tool_calls", whole  # the uncut answer is a call, so the cut one is half of one
    for choice in ("auto", "required", {"type": "function", "function": {"name": "get_weather"}}):
        body = {**ask, "tool_choice": choice, "max_tokens": 6}
        r = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=120).json()
        message = r["choices"][0]["message"]
        assert (r["choices"][0]["finish_reason"], message["content"], message.get("tool_calls")) == ("length", "", None)
        assert r["usage"]["completion_tokens"] == 6
        assert _streamed_content(url, headers, body) == ("", "length"), choice
    r = httpx.post(url + "/v1/responses", headers=headers, timeout=120, json={
        "model": QWEN, "input": "What is the weather in Paris?", "tool_choice": "required", "max_output_tokens": 6,
        "tools": [{"type": "function", **TOOLS[0]["function"]}], "temperature": 0}).json()
    texts = [p["text"] for o in r["output"] if o["type"] == "message" for p in o["content"]]
    assert r["status"] == "incomplete" and texts == [""] and len(r["output"]) == 1, r["output"]
