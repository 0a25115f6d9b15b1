"""The real thing: `inhouse serve` as a subprocess on the packaged SmolLM2 (and Qwen 0.5B for tools),
driven over HTTP with the official ``openai`` client as a user would."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from served import BIN, serve

from inhouse.testing.gguf_writer import tiny_model_kv, tiny_model_tensors, write_gguf

pytestmark = pytest.mark.integration

SMOL = "smollm2-135m"
QWEN = "qwen2.5-coder-0.5b"

def cli(data_dir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INHOUSE_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=env, timeout=timeout)


@dataclass
class LiveServer:
    url: str
    key: str
    data_dir: Path

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0, timeout=120)

    def metrics(self) -> dict[str, float]:
        text = httpx.get(self.url + "/metrics", headers={"Authorization": f"Bearer {self.key}"}).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = re.match(r"^([a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$", line)
            if m:
                out[m.group(1) + (m.group(2) or "")] = out.get(m.group(1) + (m.group(2) or ""), 0) + float(m.group(3))
        return out

    def metric(self, name: str) -> float:
        return sum(v for k, v in self.metrics().items() if k == name or k.startswith(name + "{"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("inhouse-data")
    made = cli(data_dir, "keys", "create", "--name", "tests", "--role", "admin")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1].strip()
    assert key.startswith("ih_")
    env = {**os.environ, "INHOUSE_DATA_DIR": str(data_dir), "INHOUSE_ENGINE__MAX_WAITING": "4",
           "INHOUSE_ENGINE__MAX_TOKENS_CAP": "2048"}
    with serve(env, SMOL) as url:
        yield LiveServer(url, key, data_dir)


def test_non_streaming_chat(server: LiveServer) -> None:
    reply = server.openai().chat.completions.create(
        model=SMOL, messages=[{"role": "user", "content": "What is the capital of France? One word."}],
        max_tokens=16, temperature=0,
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert "paris" in (choice.message.content or "").lower()
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.prompt_tokens > 5 and 0 < reply.usage.completion_tokens <= 16


def test_repeated_prefix_is_reported_as_cached_tokens(server: LiveServer) -> None:
    client = server.openai()
    system = {"role": "system", "content": "You are a terse assistant for the inhouse test suite. " * 8}
    usages = [client.chat.completions.create(model=SMOL, messages=[system, {"role": "user", "content": q}],  # type: ignore[list-item]
                                             max_tokens=4, temperature=0).usage for q in ("Say one.", "Say two.")]
    first, second = usages
    assert first is not None and second is not None
    details = second.prompt_tokens_details
    # The second request shares the whole system message with the first: its KV comes from the prefix cache.
    assert details is not None and 60 < (details.cached_tokens or 0) < second.prompt_tokens


def test_streaming_chat_matches_non_streaming(server: LiveServer) -> None:
    client = server.openai()
    messages = [{"role": "user", "content": "Count from one to five in words."}]
    full = client.chat.completions.create(model=SMOL, messages=messages, max_tokens=24, temperature=0)  # type: ignore[arg-type]
    pieces = []
    finish = None
    for chunk in client.chat.completions.create(model=SMOL, messages=messages, max_tokens=24,  # type: ignore[arg-type]
                                                temperature=0, stream=True):
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    assert len([p for p in pieces if p]) > 3, "the answer must arrive in pieces"
    assert "".join(pieces) == full.choices[0].message.content
    assert finish == full.choices[0].finish_reason


def test_json_schema_output_validates(server: LiveServer) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    reply = server.openai().chat.completions.create(
        model=SMOL, messages=[{"role": "user", "content": "Alice is 30 years old. Give her name and age as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
        max_tokens=64, temperature=0,
    )
    data = json.loads(reply.choices[0].message.content or "")
    assert set(data) == {"name", "age"}
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


def test_tool_call_from_qwen(server: LiveServer, seed_pulled_model: Callable[[str, Path], None]) -> None:
    seed_pulled_model(QWEN, server.data_dir)
    pulled = cli(server.data_dir, "models", "pull", QWEN)
    assert pulled.returncode == 0, pulled.stderr + pulled.stdout
    tools = [{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }]
    reply = server.openai().chat.completions.create(
        model=QWEN, messages=[{"role": "user", "content": "What is the weather in Paris right now?"}],
        tools=tools, max_tokens=64, temperature=0,  # type: ignore[arg-type]
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message.content
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert "paris" in json.loads(call.function.arguments)["city"].lower()  # type: ignore[union-attr]


def test_sixteen_concurrent_streams_share_batches(server: LiveServer) -> None:
    before = server.metric("inhouse_engine_multi_sequence_steps_total")

    async def one(client: openai.AsyncOpenAI, i: int) -> tuple[str, str | None]:
        text, finish = [], None
        stream = await client.chat.completions.create(
            model=SMOL, messages=[{"role": "user", "content": f"Tell me fact number {i} about cats."}],
            max_tokens=32, temperature=0.7, seed=i, stream=True,
        )
        async for chunk in stream:
            if chunk.choices:
                text.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
        return "".join(text), finish

    async def main() -> list[tuple[str, str | None]]:
        # max_waiting is 4 in this server: 16 concurrent requests fit because 16 may run at once.
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=120)
        return await asyncio.gather(*(one(client, i) for i in range(16)))

    results = asyncio.run(main())
    assert all(finish in ("stop", "length") for _, finish in results)
    assert all(text for text, _ in results)
    assert server.metric("inhouse_engine_multi_sequence_steps_total") > before


def test_disconnect_mid_stream_aborts_the_sequence(server: LiveServer) -> None:
    before = server.metric("inhouse_engine_aborted_total")
    body = {"model": SMOL, "messages": [{"role": "user", "content": "Write a very long story."}],
            "max_tokens": 1500, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {server.key}"}) as resp:
        assert resp.status_code == 200
        for n, _ in enumerate(resp.iter_lines()):
            if n > 5:
                break  # hang up mid-stream
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.metric("inhouse_engine_aborted_total") <= before:
        time.sleep(0.1)
    assert server.metric("inhouse_engine_aborted_total") > before
    assert server.metric("inhouse_running_sequences") == 0


def test_queue_overflow_is_429_and_server_keeps_serving(server: LiveServer) -> None:
    async def main() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120,
                                     headers={"Authorization": f"Bearer {server.key}"}) as client:
            body = {"model": SMOL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
            responses = await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(40)))
            for r in responses:
                if r.status_code == 429:
                    assert float(r.headers["retry-after"]) >= 1
                    assert r.json()["error"]["type"] == "rate_limit_error"
            return [r.status_code for r in responses]

    codes = asyncio.run(main())
    assert set(codes) <= {200, 429}
    assert 429 in codes and 200 in codes
    assert httpx.get(server.url + "/health").status_code == 200


def test_prompt_longer_than_context_is_400_naming_both_numbers(server: LiveServer) -> None:
    long = "word " * 20000
    r = httpx.post(server.url + "/v1/chat/completions", timeout=60,
                   headers={"Authorization": f"Bearer {server.key}"},
                   json={"model": SMOL, "messages": [{"role": "user", "content": long}]})
    assert r.status_code == 400
    msg = r.json()["error"]["message"]
    assert len(re.findall(r"\d{4,}", msg)) >= 2, msg


def test_bad_gguf_files_are_refused_with_a_clear_message(server: LiveServer, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a model at all" * 100)
    real = write_gguf(tmp_path / "ok.gguf", tiny_model_kv(), tiny_model_tensors())
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    for path in (garbage, truncated):
        res = cli(server.data_dir, "models", "add", str(path), "--name", path.stem)
        assert res.returncode != 0
        assert "Traceback" not in res.stderr + res.stdout
        assert "gguf" in (res.stderr + res.stdout).lower()


def test_template_injection_is_refused(server: LiveServer, tmp_path: Path) -> None:
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m.content }}{% endfor %}"
    path = write_gguf(tmp_path / "evil.gguf", tiny_model_kv(chat_template=evil), tiny_model_tensors())
    added = cli(server.data_dir, "models", "add", str(path), "--name", "evil")
    assert added.returncode == 0, added.stderr
    r = httpx.post(server.url + "/v1/chat/completions", timeout=60,
                   headers={"Authorization": f"Bearer {server.key}"},
                   json={"model": "evil", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    assert "template" in r.json()["error"]["message"].lower()
    assert httpx.get(server.url + "/health").status_code == 200
