from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from inhouse.chat.service import ChatService, build_sampling_params
from inhouse.config import EngineSettings
from inhouse.engine.backends.fake import BOS_ID, EOS_ID, ScriptInput, decode_tokens, encode_text
from inhouse.engine.engine import Engine
from inhouse.errors import ContextLengthExceeded, InvalidRequest, ModelNotFound, Overloaded
from inhouse.models.spec import ModelSpec
from inhouse.testing.fakes import build_fake_engine

MODEL = "fake-model"
REPLY = "Hello from the fake backend."


def make_spec(name: str, chat_template: str | None = None) -> ModelSpec:
    return ModelSpec(name=name, path=None, sha256=None, size_bytes=0, quantization=None, context_length=None,
                     architecture=None, source="test", present=True, chat_template=chat_template)


class Registry:
    """A stand-in with the part of ModelRegistry that ChatService uses."""

    def __init__(self, engines: dict[str, Engine], templates: dict[str, str] | None = None) -> None:
        self.engines = engines
        self.specs = {n: make_spec(n, chat_template=(templates or {}).get(n)) for n in engines}

    def resolve(self, name: str) -> ModelSpec:
        if name not in self.specs:
            raise ModelNotFound(name, list(self.specs))
        return self.specs[name]

    def get_engine(self, name: str) -> Engine:
        return self.engines[self.resolve(name).name]


@pytest.fixture
def engine() -> Iterator[Engine]:
    e = build_fake_engine(MODEL, n_ctx=512)
    yield e
    e.close()


@pytest.fixture
def service(engine: Engine) -> ChatService:
    return ChatService(Registry({MODEL: engine}), EngineSettings())


def body(**kw: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    b.update(kw)
    return b


def test_prepare_renders_chatml_and_tokenizes(service: ChatService) -> None:
    parts = [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]
    p = service.prepare_chat(body(messages=[{"role": "developer", "content": "Be brief."},
                                            {"role": "user", "content": parts}]))
    text = decode_tokens(p.request.prompt_tokens)
    assert "<|im_start|>system\nBe brief.<|im_end|>" in text
    assert "<|im_start|>user\nHi there<|im_end|>" in text
    assert text.rstrip().endswith("<|im_start|>assistant")
    assert p.request.request_id.startswith("req_")
    assert p.kind == "chat" and p.model == MODEL and not p.parse_tools


def test_bos_not_doubled_when_template_emits_it(engine: Engine) -> None:
    tmpl = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
    service = ChatService(Registry({MODEL: engine}, {MODEL: tmpl}), EngineSettings(),
                          special_tokens=lambda spec: ("<s>", "</s>"))
    toks = service.prepare_chat(body()).request.prompt_tokens
    assert toks[0] == BOS_ID and toks.count(BOS_ID) == 1  # "<s>" parsed as the special token, once
    assert decode_tokens(toks) == "[user] Hi\n"

    plain = "{% for m in messages %}{{ m.content }}{% endfor %}"
    no_bos = ChatService(Registry({MODEL: engine}, {MODEL: plain}),
                         EngineSettings(), special_tokens=lambda spec: ("<s>", "</s>"))
    toks = no_bos.prepare_chat(body()).request.prompt_tokens
    assert toks[0] == BOS_ID and toks[1:] == encode_text("Hi")  # the tokenizer added it


def test_template_is_cached(service: ChatService) -> None:
    service.prepare_chat(body())
    service.prepare_chat(body())
    assert len(service._templates) == 1


def test_unknown_model(service: ChatService) -> None:
    with pytest.raises(ModelNotFound, match=MODEL):
        service.prepare_chat(body(model="other"))


def test_context_length_exceeded(service: ChatService) -> None:
    with pytest.raises(ContextLengthExceeded) as info:
        service.prepare_chat(body(messages=[{"role": "user", "content": "x" * 600}]))
    assert "512" in info.value.message and str(info.value.n_prompt) in info.value.message


def test_default_max_tokens_fits_the_context(service: ChatService) -> None:
    p = service.prepare_chat(body(messages=[{"role": "user", "content": "x" * 400}]))
    assert p.request.params.max_tokens == 512 - len(p.request.prompt_tokens)
    p = service.prepare_chat(body())
    assert p.request.params.max_tokens == min(EngineSettings().default_max_tokens,
                                              512 - len(p.request.prompt_tokens))


def test_sampling_translation() -> None:
    s = EngineSettings(max_tokens_cap=100)
    p = build_sampling_params({"temperature": 0.1, "stop": "END", "logit_bias": {"5": -100}, "seed": 7,
                               "max_completion_tokens": 9, "max_tokens": None,
                               "response_format": {"type": "json_object"}}, n_prompt=1, n_ctx=512, settings=s)
    assert (p.temperature, p.stop, p.logit_bias, p.seed, p.max_tokens, p.json_object) == (
        0.1, ("END",), ((5, -100.0),), 7, 9, True)
    schema = {"type": "object"}
    p = build_sampling_params({"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}},
                              n_prompt=1, n_ctx=512, settings=s)
    assert json.loads(p.json_schema or "") == schema
    for bad in ({"max_tokens": 101}, {"temperature": -1}, {"temperature": float("nan")},
                {"stop": ["x"] * 17}, {"logit_bias": {"a": 1}}, {"response_format": {"type": "yaml"}},
                {"response_format": {"type": "json_schema"}}):
        with pytest.raises(InvalidRequest):
            build_sampling_params(bad, n_prompt=1, n_ctx=512, settings=s)


@pytest.mark.parametrize("bad", [
    {"messages": []}, {"messages": "hi"}, {"messages": [{"role": "robot", "content": "x"}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, {"n": 9},
    {"top_logprobs": 3}, {"logprobs": True, "top_logprobs": 21},
    {"tools": [{"type": "function", "function": {}}]}, {"model": ""},
])
def test_invalid_chat_requests(service: ChatService, bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        service.prepare_chat(body(**bad))


def test_complete_collects_text_and_usage(service: ChatService) -> None:
    async def run() -> Any:
        return await service.complete(service.prepare_chat(body()))

    result = asyncio.run(run())
    assert result.text == REPLY and result.finish_reason == "stop"
    assert result.usage.completion_tokens == len(REPLY) + 1
    assert result.usage.prompt_tokens > 0 and not result.tool_calls


def test_completion_raw_prompt(service: ChatService) -> None:
    p = service.prepare_completion({"model": MODEL, "prompt": "<s>raw", "max_tokens": 3})
    # Caller text is never parsed for special tokens.
    assert p.request.prompt_tokens == [BOS_ID, *encode_text("<s>raw")]
    p = service.prepare_completion({"model": MODEL, "prompt": [BOS_ID, 70, 71]})
    assert p.request.prompt_tokens == [BOS_ID, 70, 71]
    result = asyncio.run(service.complete(p))
    assert result.finish_reason == "stop" and result.text == REPLY
    for bad in ([], [[]], [-1], [""], [["a"]]):
        with pytest.raises(InvalidRequest):
            service.prepare_completion({"model": MODEL, "prompt": bad})


def test_tool_calls_parsed(engine: Engine) -> None:
    from inhouse.chat.tool_calls import parse_tool_calls

    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    content, calls = parse_tool_calls(call)
    assert calls, "the test's tool-call markup must be the one parse_tool_calls understands"
    tooled = build_fake_engine(MODEL, n_ctx=1024, script={"get_weather": call})
    try:
        service = ChatService(Registry({MODEL: tooled}), EngineSettings())
        tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                   "parameters": {"type": "object"}}}]
        ask = [{"role": "user", "content": "weather in Oslo?"}]
        p = service.prepare_chat(body(tools=tools, messages=ask))
        assert p.parse_tools
        assert "get_weather" in decode_tokens(p.request.prompt_tokens)  # tools reached the template
        result = asyncio.run(service.complete(p))
        assert result.finish_reason == "tool_calls"
        assert [c.name for c in result.tool_calls] == ["get_weather"]
        assert result.text.strip() == content.strip()

        p = service.prepare_chat(body(tools=tools, tool_choice="none",
                                      messages=[{"role": "user", "content": "x"}]))
        assert not p.parse_tools and "get_weather" not in decode_tokens(p.request.prompt_tokens)
    finally:
        tooled.close()


def test_tool_choice_required_or_named_constrains_the_answer_to_a_call() -> None:
    """"required" and a named function behaved as "auto": every tool offered, nothing forced, plain text allowed."""
    tooled = build_fake_engine(MODEL, n_ctx=1024)
    try:
        _check_tool_choice(ChatService(Registry({MODEL: tooled}), EngineSettings()))
    finally:
        tooled.close()


def _check_tool_choice(service: ChatService) -> None:
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    clock = {"type": "function", "function": {"name": "get_time"}}
    named = service.prepare_chat(body(tools=[weather, clock], tool_choice={"type": "function",
                                                                           "function": {"name": "get_weather"}}))
    prompt = decode_tokens(named.request.prompt_tokens)
    assert "get_weather" in prompt and "get_time" not in prompt and named.parse_tools  # only the named one
    schema = json.loads(named.request.params.json_schema or "null")
    assert schema["properties"]["name"] == {"const": "get_weather"}
    assert schema["properties"]["arguments"]["required"] == ["city"]
    result = asyncio.run(service.complete(named))
    assert result.finish_reason == "tool_calls" and [c.name for c in result.tool_calls] == ["get_weather"]
    required = service.prepare_chat(body(tools=[weather, clock], tool_choice="required"))
    branches = json.loads(required.request.params.json_schema or "null")["anyOf"]
    assert [b["properties"]["name"]["const"] for b in branches] == ["get_weather", "get_time"]
    auto = service.prepare_chat(body(tools=[weather], tool_choice="auto"))
    assert auto.request.params.json_schema is None
    # A cut forced call is dropped whole (OutputAccumulator): the flag says all the text is the call.
    assert named.forced_call and required.forced_call and not auto.forced_call
    for bad in ({"tools": [weather], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
                {"tool_choice": "required"}, {"tools": [weather], "tool_choice": "sometimes"},
                {"tools": [weather], "tool_choice": "required", "response_format": {"type": "json_object"}}):
        with pytest.raises(InvalidRequest) as e:
            service.prepare_chat(body(**bad))
        assert e.value.param == "tool_choice"


def test_assistant_tool_call_history_is_accepted(service: ChatService) -> None:
    msgs = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "w", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    p = service.prepare_chat(body(messages=msgs))
    assert "sunny" in decode_tokens(p.request.prompt_tokens)


def test_closing_the_stream_aborts(engine: Engine) -> None:
    slow = build_fake_engine(MODEL, n_ctx=512, delay_s=0.02)
    try:
        service = ChatService(Registry({MODEL: slow}), EngineSettings())

        async def run() -> None:
            stream = service.stream(service.prepare_chat(body()))
            async for _ in stream:
                break
            await stream.aclose()  # type: ignore[attr-defined]

        asyncio.run(run())
        assert slow.stats().aborted == 1
    finally:
        slow.close()


def test_overloaded_before_first_delta() -> None:
    def endless(inp: ScriptInput) -> int:
        return encode_text("a")[0] if len(inp.generated) < 10_000 else EOS_ID

    busy = build_fake_engine(MODEL, n_ctx=4096, script=endless, delay_s=0.01, max_running=1, n_cache_slots=0,
                             max_waiting=0)
    try:
        service = ChatService(Registry({MODEL: busy}), EngineSettings())

        async def run() -> None:
            first = service.stream(service.prepare_chat(body(max_tokens=1000)))
            await first.__anext__()  # type: ignore[attr-defined]
            second = service.stream(service.prepare_chat(body()))
            with pytest.raises(Overloaded):
                await second.__anext__()  # type: ignore[attr-defined]
            await first.aclose()  # type: ignore[attr-defined]

        asyncio.run(run())
        assert busy.stats().rejected_queue_full == 1
    finally:
        busy.close()


def test_any_64_bit_seed_is_folded_into_the_samplers_32_bits(service: ChatService) -> None:
    """OpenAI takes any 64-bit seed; clients send -1 or large ones, which were a 400."""
    for seed, folded in ((-1, 2**32 - 1), (2**40 + 7, 7), (2**63 - 1, 2**32 - 1), (5, 5)):
        assert service.prepare_chat(body(seed=seed)).request.params.seed == folded
