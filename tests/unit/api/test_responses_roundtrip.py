"""Responses API, stateless: a response's output sent back as input is the same conversation as
``previous_response_id`` (one assistant turn holding its text and its calls)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.api.openai.responses import input_messages
from inhouse.engine.backends.fake import ScriptInput, decode_tokens, reply_script
from inhouse.testing.services import FAKE_MODEL as MODEL

CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'}
TOOLS = [{"type": "function", "name": "get_weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def test_a_call_joins_the_assistant_text_before_it() -> None:
    said = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check."}]}
    second = {**CALL, "call_id": "call_2"}
    messages = input_messages([{"role": "user", "content": "weather?"}, said, CALL, second,
                               {"type": "function_call_output", "call_id": "call_1", "output": "20C"}])
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["content"] == "Let me check."
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_1", "call_2"]
    # A call after a user message still starts its own assistant message.
    assert input_messages([{"role": "user", "content": "hi"}, CALL])[1]["content"] == ""


def test_stateless_round_trip_prompts_as_previous_response_id(make_services: Any) -> None:
    prompts: list[str] = []
    answer = reply_script({"tool_response": "Sunny.", "weather": 'Let me check.\n<tool_call>\n'
                           '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'})

    def script(inp: ScriptInput) -> int:
        if not inp.generated:
            prompts.append(decode_tokens(inp.prompt))
        return answer(inp)

    s = make_services(fake={"script": script})
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        r = c.post("/v1/responses", json={"model": MODEL, "input": "weather?", "tools": TOOLS}).json()
        assert [o["type"] for o in r["output"]] == ["message", "function_call"]
        out = {"type": "function_call_output", "call_id": r["output"][1]["call_id"], "output": "20C"}
        c.post("/v1/responses", json={"model": MODEL, "previous_response_id": r["id"], "tools": TOOLS,
                                      "input": [out]})
        c.post("/v1/responses", json={"model": MODEL, "tools": TOOLS, "store": False,
                                      "input": [{"role": "user", "content": "weather?"}, *r["output"], out]})
    stored, stateless = prompts[-2:]
    assert stateless == stored and stored.count("<|im_start|>assistant") == 2  # the turn, then the answer's
