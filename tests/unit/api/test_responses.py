"""``/v1/responses`` over the real app and the FakeBackend: the same serving path as chat completions."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.testing.services import FAKE_MODEL as MODEL

REPLY = "Hello from the fake backend."


def typed_events(text: str) -> list[dict[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        kind, data = block.split("\n", 1)
        payload = json.loads(data.removeprefix("data: "))
        assert kind == f"event: {payload['type']}"
        out.append(payload)
    return out


def test_text_input_gives_a_response_object(client: TestClient) -> None:
    r = client.post("/v1/responses", json={"model": MODEL, "input": "Hi", "instructions": "Be brief."})
    body = r.json()
    assert r.status_code == 200, body
    assert body["object"] == "response" and body["id"].startswith("resp_") and body["status"] == "completed"
    (item,) = body["output"]
    assert item["type"] == "message" and item["role"] == "assistant"
    assert item["content"][0] == {"type": "output_text", "text": REPLY, "annotations": [], "logprobs": []}
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    assert body["instructions"] == "Be brief." and body["store"] is True


def test_streaming_sends_the_typed_events_in_order(client: TestClient) -> None:
    events = typed_events(client.post("/v1/responses", json={"model": MODEL, "input": "Hi", "stream": True}).text)
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == REPLY
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == REPLY


def test_previous_response_id_continues_the_stored_conversation(make_services: Any) -> None:
    seen: list[str] = []

    def script(inp: Any) -> int:
        from inhouse.engine.backends.fake import decode_tokens, reply_script

        seen.append(decode_tokens(inp.prompt))
        return reply_script("ok")(inp)

    s = make_services(fake={"script": script})
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        first = c.post("/v1/responses", json={"model": MODEL, "input": "My name is Ada.",
                                                 "instructions": "first rules"}).json()
        second = c.post("/v1/responses", json={"model": MODEL, "input": "What is my name?",
                                                  "previous_response_id": first["id"]}).json()
        assert second["previous_response_id"] == first["id"]
        prompt = seen[-1]
        assert "My name is Ada." in prompt and "What is my name?" in prompt and "ok" in prompt
        assert "first rules" not in prompt, "instructions are not carried over"
        assert c.get(f"/v1/responses/{first['id']}").json()["id"] == first["id"]
        unstored = c.post("/v1/responses", json={"model": MODEL, "input": "x", "store": False}).json()
        assert c.get(f"/v1/responses/{unstored['id']}").status_code == 404
        assert c.delete(f"/v1/responses/{first['id']}").json()["deleted"] is True
        r = c.post("/v1/responses", json={"model": MODEL, "input": "x", "previous_response_id": first["id"]})
        assert r.status_code == 404 and r.json()["error"]["param"] == "previous_response_id"
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.admin_key}"}) as other:
        assert other.get(f"/v1/responses/{second['id']}").status_code == 404, "another owner's id is not found"


def test_function_tools_and_their_outputs(make_services: Any) -> None:
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    s = make_services(fake={"script": {"Weather result": "It is sunny in Oslo.", "get_weather": call}})
    tools = [{"type": "function", "name": "get_weather", "description": "Weather of a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        body = c.post("/v1/responses", json={"model": MODEL, "input": "Weather in Oslo?", "tools": tools}).json()
        (fc,) = body["output"]
        assert fc["type"] == "function_call" and fc["name"] == "get_weather"
        assert json.loads(fc["arguments"]) == {"city": "Oslo"}
        follow = [{"type": "function_call", "call_id": fc["call_id"], "name": fc["name"], "arguments": fc["arguments"]},
                  {"type": "function_call_output", "call_id": fc["call_id"], "output": "Weather result: sunny"}]
        answer = c.post("/v1/responses", json={"model": MODEL, "input": follow, "tools": tools,
                                                  "previous_response_id": body["id"]}).json()
        assert answer["output"][0]["content"][0]["text"] == "It is sunny in Oslo."
        events = typed_events(c.post("/v1/responses", json={"model": MODEL, "input": "Weather in Oslo?",
                                                             "tools": tools, "stream": True}).text)
        done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
        assert len(done) == 1 and json.loads(done[0]["arguments"]) == {"city": "Oslo"}


def test_text_format_json_schema_uses_the_grammar_path(client: TestClient) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    body = client.post("/v1/responses", json={"model": MODEL, "input": "Name?", "text": {
        "format": {"type": "json_schema", "name": "person", "schema": schema}}}).json()
    assert json.loads(body["output"][0]["content"][0]["text"]) == {"name": "fake"}
    assert body["text"]["format"]["type"] == "json_schema"


def test_logprobs_and_limits(client: TestClient) -> None:
    body = client.post("/v1/responses", json={"model": MODEL, "input": "Hi", "top_logprobs": 2,
                                               "max_output_tokens": 3}).json()
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    part = body["output"][0]["content"][0]
    assert part["text"] == REPLY[:3] and len(part["logprobs"]) == 3
    assert all(len(lp["top_logprobs"]) == 2 for lp in part["logprobs"])


def test_unsupported_input_is_refused_in_the_one_shape(client: TestClient) -> None:
    for bad in ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
                {"input": "x", "tools": [{"type": "web_search"}]},
                {"input": [{"type": "item_reference", "id": "x"}]}, {"input": "x", "background": True}):
        r = client.post("/v1/responses", json={"model": MODEL, **bad})
        assert r.status_code == 400, bad
        assert set(r.json()["error"]) == {"message", "type", "code", "param"}
    assert client.post("/v1/responses", json={"model": "nope", "input": "x"}).status_code == 404


def test_engine_failure_mid_stream_is_response_failed(make_services: Any) -> None:
    from inhouse.engine.backends.fake import failing_script
    from inhouse.testing.openapi import OpenAISpec

    s = make_services(fake={"script": failing_script(3, "llama.cpp said something private")})
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        events = typed_events(c.post("/v1/responses", json={"model": MODEL, "input": "Hi", "stream": True}).text)
        assert events[-1]["type"] == "response.failed" and "private" not in json.dumps(events)
        failed = events[-1]["response"]
        assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
        assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "aaa"
        OpenAISpec.load().check_stream("POST", "/responses", events)
        whole = c.post("/v1/responses", json={"model": MODEL, "input": "Hi"})
        assert whole.status_code == 500 and "private" not in whole.text
        assert c.get(f"/v1/responses/{failed['id']}").status_code == 404, "a failed response is not stored"
