"""Tool-call edges on the wire: chat completions (whole and streamed) and Responses read answers alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.engine.backends.fake import reply_script
from inhouse.testing.services import FAKE_MODEL as MODEL

TOOLS = [{"type": "function", "function": {"name": "write_file", "parameters": {
    "type": "object", "properties": {"text": {"type": "string"}}}}}]
RESPONSES_TOOLS = [{"type": "function", **TOOLS[0]["function"]}]
ASK = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS}


@contextmanager
def answering(make_services: Any, reply: str) -> Iterator[TestClient]:
    s = make_services(fake={"script": reply_script(reply)})
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        yield c


def streamed(c: TestClient, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str | None]:
    """The content, tool calls and finish reason of a streamed chat completion."""
    events = [json.loads(b.removeprefix("data: ")) for b in c.post("/v1/chat/completions", json={
        **body, "stream": True}).text.strip().split("\n\n") if b != "data: [DONE]"]
    deltas = [e["choices"][0] for e in events if e["choices"]]
    content = "".join(d["delta"].get("content") or "" for d in deltas)
    calls = [tc["function"] for d in deltas for tc in d["delta"].get("tool_calls", [])]
    return content, calls, next((d["finish_reason"] for d in deltas if d["finish_reason"]), None)


def test_closing_tag_inside_an_argument_is_one_call(make_services: Any) -> None:
    reply = '<tool_call>\n{"name": "write_file", "arguments": {"text": "close with </tool_call>"}}\n</tool_call>'
    with answering(make_services, reply) as c:
        choice = c.post("/v1/chat/completions", json=ASK).json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
        (call,) = choice["message"]["tool_calls"]
        assert json.loads(call["function"]["arguments"]) == {"text": "close with </tool_call>"}
        content, calls, finish = streamed(c, ASK)
        assert content == "" and [f["name"] for f in calls] == ["write_file"] and finish == "tool_calls"
        r = c.post("/v1/responses", json={"model": MODEL, "input": "hi", "tools": RESPONSES_TOOLS}).json()
        assert [(o["type"], o.get("name")) for o in r["output"]] == [("function_call", "write_file")]


def test_a_json_answer_with_a_name_is_content(make_services: Any) -> None:
    reply = '{"name": "Alice", "role": "admin"}'
    with answering(make_services, reply) as c:
        choice = c.post("/v1/chat/completions", json=ASK).json()["choices"][0]
        assert choice["finish_reason"] == "stop" and choice["message"]["content"] == reply
        assert not choice["message"].get("tool_calls")
        assert streamed(c, ASK) == (reply, [], "stop")
        r = c.post("/v1/responses", json={"model": MODEL, "input": "hi", "tools": RESPONSES_TOOLS}).json()
        assert [o["type"] for o in r["output"]] == ["message"]
        assert r["output"][0]["content"][0]["text"] == reply


def test_a_json_schema_answer_with_a_name_is_content(make_services: Any) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    with answering(make_services, "ignored") as c:
        choice = c.post("/v1/chat/completions", json={**ASK, "response_format": fmt}).json()["choices"][0]
        assert choice["finish_reason"] == "stop" and not choice["message"].get("tool_calls")
        assert set(json.loads(choice["message"]["content"])) == {"name", "age"}


def test_max_tokens_after_a_call_is_length(make_services: Any) -> None:
    first = '<tool_call>\n{"name": "write_file", "arguments": {"text": "a"}}\n</tool_call>'
    reply = first + '\n<tool_call>\n{"name": "write_file", "arguments": {"text": "a long second one"}}\n</tool_call>'
    body = {**ASK, "max_tokens": len(first) + 30}  # the fake model writes a token per character
    with answering(make_services, reply) as c:
        choice = c.post("/v1/chat/completions", json=body).json()["choices"][0]
        assert choice["finish_reason"] == "length" and choice["message"]["content"] is None
        assert [t["function"]["name"] for t in choice["message"]["tool_calls"]] == ["write_file"]
        content, calls, finish = streamed(c, body)
        assert content == "" and len(calls) == 1 and finish == "length"
        r = c.post("/v1/responses", json={"model": MODEL, "input": "hi", "tools": RESPONSES_TOOLS,
                                          "max_output_tokens": len(first) + 30}).json()
        assert r["status"] == "incomplete" and [o["type"] for o in r["output"]] == ["function_call"]


def test_bare_json_naming_an_unoffered_function_is_content(make_services: Any) -> None:
    reply = '{"name": "Alice", "arguments": {"role": "admin"}}'
    with answering(make_services, reply) as c:
        choice = c.post("/v1/chat/completions", json=ASK).json()["choices"][0]
        assert choice["finish_reason"] == "stop" and choice["message"]["content"] == reply
        assert streamed(c, ASK) == (reply, [], "stop")


def test_a_call_cut_by_max_tokens_is_not_the_answer(make_services: Any) -> None:
    # Qwen writes bare JSON calls with tool_choice auto, and a forced call is bare JSON by grammar: cut by max_tokens,
    # half a call is neither content nor a call, whole or streamed (the fake model writes a token per character).
    reply = '{"name": "write_file", "arguments": {"text": "a long text"}}'
    choices = [("auto", "auto"), ("required", "required"),
               ({"type": "function", "function": {"name": "write_file"}}, {"type": "function", "name": "write_file"})]
    with answering(make_services, reply) as c:
        for chat_choice, responses_choice in choices:
            body = {**ASK, "tool_choice": chat_choice, "max_tokens": 20}
            r = c.post("/v1/chat/completions", json=body).json()
            choice = r["choices"][0]
            assert choice["finish_reason"] == "length" and choice["message"]["content"] == "", chat_choice
            assert not choice["message"].get("tool_calls") and r["usage"]["completion_tokens"] == 20
            assert streamed(c, body) == ("", [], "length"), chat_choice
            r = c.post("/v1/responses", json={"model": MODEL, "input": "hi", "tools": RESPONSES_TOOLS,
                                              "tool_choice": responses_choice, "max_output_tokens": 20}).json()
            texts = [p["text"] for o in r["output"] if o["type"] == "message" for p in o["content"]]
            assert r["status"] == "incomplete" and texts == [""] and len(r["output"]) == 1, r["output"]
