"""Meta-test: every error response, whatever caused it, has exactly the one error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app

MODEL = "fake-model"


def chat(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    body.update(kw)
    return body


def assert_error_shape(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "code", "param"}
    assert isinstance(err["message"], str) and err["message"]
    assert len(err["message"]) < 1000
    assert isinstance(err["type"], str) and isinstance(err["code"], str)
    assert err["param"] is None or isinstance(err["param"], str)
    return err


# (description, method, path, kwargs for the request, expected status)
BAD_REQUESTS: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("unknown route", "GET", "/v1/nothing", {}, 404),
    ("wrong method", "GET", "/v1/chat/completions", {}, 405),
    ("malformed json", "POST", "/v1/chat/completions",
     {"content": b'{"model": "x", ', "headers": {"content-type": "application/json"}}, 400),
    ("not an object", "POST", "/v1/chat/completions", {"json": [1, 2, 3]}, 400),
    ("missing model", "POST", "/v1/chat/completions",
     {"json": {"messages": [{"role": "user", "content": "x"}]}}, 400),
    ("empty messages", "POST", "/v1/chat/completions", {"json": chat(messages=[])}, 400),
    ("bad role", "POST", "/v1/chat/completions",
     {"json": chat(messages=[{"role": "wizard", "content": "x"}])}, 400),
    ("image part", "POST", "/v1/chat/completions",
     {"json": chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])}, 400),
    ("negative temperature", "POST", "/v1/chat/completions", {"json": chat(temperature=-1)}, 400),
    ("NaN temperature", "POST", "/v1/chat/completions",
     {"content": json.dumps(chat(temperature=float("nan"))).encode(),
      "headers": {"content-type": "application/json"}}, 400),
    ("infinite top_p", "POST", "/v1/chat/completions",
     {"content": json.dumps(chat(top_p=float("inf"))).encode(),
      "headers": {"content-type": "application/json"}}, 400),
    ("max_tokens above cap", "POST", "/v1/chat/completions", {"json": chat(max_tokens=10**9)}, 400),
    ("max_tokens zero", "POST", "/v1/chat/completions", {"json": chat(max_tokens=0)}, 400),
    ("10000 stop strings", "POST", "/v1/chat/completions", {"json": chat(stop=["x"] * 10_000)}, 400),
    ("long stop string", "POST", "/v1/chat/completions", {"json": chat(stop="x" * 1000)}, 400),
    ("too many logit biases", "POST", "/v1/chat/completions",
     {"json": chat(logit_bias={str(i): 1 for i in range(400)})}, 400),
    ("logit bias not a token id", "POST", "/v1/chat/completions",
     {"json": chat(logit_bias={"abc": 1})}, 400),
    ("logit bias out of vocab", "POST", "/v1/chat/completions",
     {"json": chat(logit_bias={"999999": 1})}, 400),
    ("n above engine.max_choices", "POST", "/v1/chat/completions", {"json": chat(n=9)}, 400),
    ("top_logprobs without logprobs", "POST", "/v1/chat/completions", {"json": chat(top_logprobs=2)}, 400),
    ("top_logprobs above 20", "POST", "/v1/chat/completions", {"json": chat(logprobs=True, top_logprobs=21)}, 400),
    ("best_of", "POST", "/v1/completions", {"json": {"model": MODEL, "prompt": "x", "best_of": 3}}, 400),
    ("suffix on a model without FIM tokens", "POST", "/v1/completions",
     {"json": {"model": MODEL, "prompt": "def f(", "suffix": "return x"}}, 400),
    ("prompts × n above engine.max_choices", "POST", "/v1/completions",
     {"json": {"model": MODEL, "prompt": ["a", "b", "c"], "n": 3}}, 400),
    ("bad response_format", "POST", "/v1/chat/completions", {"json": chat(response_format={"type": "xml"})},
     400),
    ("bad tools", "POST", "/v1/chat/completions", {"json": chat(tools=[{"type": "function"}])}, 400),
    ("unknown model", "POST", "/v1/chat/completions", {"json": chat(model="nope")}, 404),
    ("prompt too long", "POST", "/v1/completions", {"json": {"model": MODEL, "prompt": "x" * 5000}}, 400),
    ("empty prompt", "POST", "/v1/completions", {"json": {"model": MODEL, "prompt": ""}}, 400),
    ("huge body", "POST", "/v1/chat/completions",
     {"content": b'{"model": "' + b"x" * 2_000_000 + b'"}', "headers": {"content-type": "application/json"}},
     413),
    ("too many messages", "POST", "/v1/chat/completions",
     {"json": chat(messages=[{"role": "user", "content": "x"}] * 600)}, 400),
]


@pytest.mark.parametrize(("what", "method", "path", "kwargs", "status"), BAD_REQUESTS,
                         ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_use_the_error_shape(client: TestClient, what: str, method: str, path: str,
                                          kwargs: dict[str, Any], status: int) -> None:
    resp = client.request(method, path, **kwargs)
    err = assert_error_shape(resp, status)
    if status == 400:
        assert err["type"] == "invalid_request_error"
    # The server still answers afterwards.
    assert client.get("/health").status_code == 200


def test_validation_message_names_field_and_does_not_echo_input(client: TestClient) -> None:
    resp = client.post("/v1/chat/completions", json=chat(stop=["x" * 300] * 2, temperature=5))
    err = assert_error_shape(resp, 400)
    assert "x" * 300 not in err["message"]
    assert err["param"] in ("stop", "temperature")
    resp = client.post("/v1/chat/completions", json=chat(temperature=5))
    err = assert_error_shape(resp, 400)
    assert "temperature" in err["message"] and err["param"] == "temperature"


def test_unknown_model_lists_available(client: TestClient) -> None:
    err = assert_error_shape(client.post("/v1/chat/completions", json=chat(model="nope")), 404)
    assert err["code"] == "model_not_found" and MODEL in err["message"] and err["param"] == "model"


def test_context_error_names_both_numbers(client: TestClient) -> None:
    err = assert_error_shape(client.post("/v1/completions", json={"model": MODEL, "prompt": "x" * 5000}), 400)
    assert err["code"] == "context_length_exceeded"
    assert "2048" in err["message"] and "5001" in err["message"]


def test_auth_errors(client: TestClient) -> None:
    all_headers: list[Any] = [
        {"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"},
        {"Authorization": ("Bearer " + "ä" * 10).encode()}, {"Authorization": "Bearer " + "a" * 100_000},
    ]
    for headers in all_headers:
        resp = client.get("/v1/models", headers=headers)
        err = assert_error_shape(resp, 401)
        assert err["type"] == "authentication_error"
        assert resp.headers["www-authenticate"].startswith("Bearer")


def test_chunked_body_over_limit(client: TestClient) -> None:
    def gen() -> Any:
        for _ in range(30):
            yield b"x" * 100_000

    resp = client.post("/v1/chat/completions", content=gen(), headers={"content-type": "application/json"})
    assert_error_shape(resp, 413)


def test_unexpected_exception_is_a_500_in_shape(make_services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def list_models() -> list[Any]:
        raise RuntimeError("secret internal detail")

    s = make_services()
    monkeypatch.setattr(s.registry, "list_models", list_models)  # the real registry, failing
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        err = assert_error_shape(c.get("/v1/models"), 500)
        assert "secret" not in err["message"]
        assert c.get("/health").status_code == 200


def test_overloaded_has_retry_after(make_services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from inhouse.errors import Overloaded

    def list_models() -> list[Any]:
        raise Overloaded("busy", retry_after_s=2.2)

    s = make_services()
    monkeypatch.setattr(s.registry, "list_models", list_models)
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        resp = c.get("/v1/models")
        assert_error_shape(resp, 429)
        assert resp.headers["retry-after"] == "3"


def test_union_members_are_not_named_as_fields() -> None:
    from inhouse.api.errors import _field_name

    assert _field_name(("body", "prompt", "constrained-str")) == "prompt"
    assert _field_name(("body", "stop", "list[constrained-str]", 3)) == "stop.3"
    assert _field_name(("body", "messages", 0, "content", "str")) == "messages.0.content"
