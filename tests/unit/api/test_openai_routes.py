from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from inhouse.api.app import build_app

MODEL = "fake-model"
REPLY = "Hello from the fake backend."


def chat(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    body.update(kw)
    return body


def sse_events(text: str) -> list[Any]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        payload = block.removeprefix("data: ")
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_model_retrieve_and_unknown_model(client: TestClient) -> None:
    entry = client.get(f"/v1/models/{MODEL}").json()
    assert (entry["id"], entry["object"], entry["owned_by"]) == (MODEL, "model", "inhouse")
    r = client.get("/v1/models/no-such-model")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found" and MODEL in r.json()["error"]["message"]


def test_models_list(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    (entry,) = [m for m in body["data"] if m.get("type") != "embedding"]
    assert entry["id"] == MODEL and entry["object"] == "model"
    for key in ("size_bytes", "quantization", "context_length", "loaded", "present"):
        assert key in entry
    assert entry["loaded"] is True


def test_chat_non_streaming(client: TestClient) -> None:
    resp = client.post("/v1/chat/completions", json=chat())
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": REPLY, "refusal": None}
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] == len(REPLY) + 1  # + EOS
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_chat_max_tokens_gives_length(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=chat(max_tokens=5)).json()
    assert body["choices"][0]["message"]["content"] == REPLY[:5]
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5


def test_chat_stop_string(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=chat(stop=["fake"])).json()
    assert body["choices"][0]["message"]["content"] == "Hello from the "
    assert body["choices"][0]["finish_reason"] == "stop"


def test_chat_streaming(client: TestClient) -> None:
    with client.stream("POST", "/v1/chat/completions",
                       json=chat(stream=True, stream_options={"include_usage": True})) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        text = resp.read().decode()
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == REPLY
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [c["choices"][0]["finish_reason"] for c in finals] == ["stop"]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == len(REPLY) + 1


def test_completions(client: TestClient) -> None:
    body = client.post("/v1/completions", json={"model": MODEL, "prompt": "Say hi", "max_tokens": 8}).json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == REPLY[:8]
    assert body["usage"]["prompt_tokens"] == len("Say hi") + 1  # + BOS
    req = {"model": MODEL, "prompt": "Say hi", "stream": True}
    with client.stream("POST", "/v1/completions", json=req) as r:
        events = sse_events(r.read().decode())
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == REPLY


def test_response_format_json_schema(client: TestClient) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    body = client.post("/v1/chat/completions", json=chat(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})).json()
    assert json.loads(body["choices"][0]["message"]["content"]) == {"city": "fake"}
    body = client.post("/v1/chat/completions", json=chat(response_format={"type": "json_object"})).json()
    assert json.loads(body["choices"][0]["message"]["content"]) == {"reply": REPLY}


def test_ready_and_metrics(client: TestClient) -> None:
    assert client.get("/ready").json()["status"] == "ready"
    client.post("/v1/chat/completions", json=chat())
    with client.stream("POST", "/v1/chat/completions", json=chat(stream=True)) as r:
        r.read()
    text = client.get("/metrics").text
    for name in ("inhouse_time_to_first_token_seconds_bucket", "inhouse_inter_token_latency_seconds_bucket",
                 "inhouse_requests_total", "inhouse_generated_tokens_total", "inhouse_prompt_tokens_total",
                 "inhouse_queue_depth", "inhouse_running_sequences", "inhouse_engine_steps_total",
                 "inhouse_engine_multi_sequence_steps_total", "inhouse_prefix_cache_hits_total",
                 "inhouse_prefix_cache_queries_total", "inhouse_prefix_cache_hit_tokens_total",
                 "inhouse_engine_aborted_total", "inhouse_engine_preempted_total",
                 "inhouse_queue_rejected_total"):
        assert name in text, name
    assert 'inhouse_requests_total{route="/v1/chat/completions",status="200"} 2.0' in text
    assert f'inhouse_generated_tokens_total{{model="{MODEL}"}} {2 * (len(REPLY) + 1)}.0' in text


def test_ready_503_when_default_model_missing(make_services: Any) -> None:
    s = make_services()
    s.settings.models.default = "not-there"
    with TestClient(build_app(s)) as c:
        resp = c.get("/ready")
        assert resp.status_code == 503 and set(resp.json()) == {"error"}


def test_two_apps_have_separate_metrics(make_services: Any) -> None:
    a, b = make_services(), make_services()
    app_a, app_b = build_app(a), build_app(b)
    with TestClient(app_a, headers={"Authorization": f"Bearer {a.member_key}"}) as ca:
        ca.get("/v1/models")
    with TestClient(app_b, headers={"Authorization": f"Bearer {b.member_key}"}) as cb:
        assert 'route="/v1/models"' not in cb.get("/metrics").text


TOOL_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


def test_tool_calls(make_services: Any) -> None:
    s = make_services(fake={"script": {"get_weather": TOOL_CALL}})
    ask = chat(tools=TOOLS, messages=[{"role": "user", "content": "Weather in Oslo?"}])
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        body = c.post("/v1/chat/completions", json=ask).json()
        choice = body["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        (call,) = choice["message"]["tool_calls"]
        assert call["type"] == "function" and call["id"]
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
        assert choice["message"]["content"] is None

        with c.stream("POST", "/v1/chat/completions", json={**ask, "stream": True}) as r:
            events = sse_events(r.read().decode())
        assert events[-1] == "[DONE]"
        deltas = [e["choices"][0]["delta"] for e in events[:-1]]
        assert not any("<tool_call>" in (d.get("content") or "") for d in deltas)
        calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
        assert [tc["function"]["name"] for tc in calls] == ["get_weather"] and calls[0]["index"] == 0
        assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"

        # Without tools the same text is plain content.
        plain = chat(messages=[{"role": "user", "content": "get_weather"}])
        body = c.post("/v1/chat/completions", json=plain)
        assert body.json()["choices"][0]["message"]["content"] == TOOL_CALL


def test_engine_failure_mid_stream_is_an_error_event(make_services: Any) -> None:
    from inhouse.engine.backends.fake import failing_script

    s = make_services(fake={"script": failing_script(3, "llama.cpp said something private")})
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        with c.stream("POST", "/v1/chat/completions", json=chat(stream=True)) as r:
            assert r.status_code == 200
            events = sse_events(r.read().decode())
        assert "[DONE]" not in events
        err = events[-1]["error"]
        assert set(err) == {"message", "type", "code", "param"} and "private" not in err["message"]
        assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "aaa"

        resp = c.post("/v1/chat/completions", json=chat())
        assert resp.status_code == 500 and "private" not in resp.text
        assert set(resp.json()["error"]) == {"message", "type", "code", "param"}
