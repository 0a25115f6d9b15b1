"""A large JSON body (the apps take up to ``apps.max_upload_mb``, 100 MB) is decoded, checked for lone surrogates and
validated in a worker thread, and an outline is serialised in one: on the event loop a 99 MB body held every other
request for 2 s (5 s with one escaped emoji). Small bodies stay inline."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, field_validator
from starlette.requests import Request

from inhouse.api import deps
from inhouse.api.app import build_app
from inhouse.apps.outline import Outline
from inhouse.errors import InvalidRequest


def on_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


class Spied(BaseModel):
    text: str

    @field_validator("text")
    @classmethod
    def _where(cls, value: str) -> str:
        validated_on_loop.append(on_a_loop())
        return value


validated_on_loop: list[bool] = []


def request_of(body: bytes, content_type: str = "application/json") -> Request:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": [
        (b"content-type", content_type.encode())]}, receive)


@pytest.mark.parametrize(("size", "in_thread"), [(100, False), (64 * 1024 + 1, True), (5_000_000, True)])
def test_read_json_decodes_a_large_body_off_the_event_loop(size: int, in_thread: bool) -> None:
    body = json.dumps({"text": "x" * size}).encode()
    validated_on_loop.clear()
    got = asyncio.run(deps.read_json(request_of(body), Spied))
    assert got.text == "x" * size
    assert validated_on_loop == [not in_thread]


@pytest.mark.parametrize("size", [10, 200_000])
def test_read_json_still_refuses_bad_bodies(size: int) -> None:
    pad = "x" * size
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        asyncio.run(deps.read_json(request_of(b'{"text": "' + pad.encode() + b'"'), Spied))
    with pytest.raises(InvalidRequest, match="lone UTF-16 surrogate"):
        asyncio.run(deps.read_json(request_of(b'{"text": "' + pad.encode() + b'\\ud800"}'), Spied))
    with pytest.raises(InvalidRequest, match="lone UTF-16 surrogate"):  # the body was decoded as JSON all the same
        asyncio.run(deps.read_json(request_of(b'{"text": "' + pad.encode() + b'\\ud800"}', "text/plain"), Spied))
    with pytest.raises(InvalidRequest) as bad:
        asyncio.run(deps.read_json(request_of(json.dumps({"text": [pad]}).encode()), Spied))
    assert bad.value.param == "text"
    pair = asyncio.run(deps.read_json(request_of(b'{"text": "' + pad.encode() + b'\\ud83d\\ude00"}'), Spied))
    assert pair.text == pad + "\U0001f600"


def test_a_large_bodys_surrogate_check_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    where: list[bool] = []
    real = deps._check_surrogates

    def spy(body: bytes) -> None:
        where.append(on_a_loop())
        real(body)

    monkeypatch.setattr(deps, "_check_surrogates", spy)
    small = b'{"text": "\\ud83d\\ude00"}'
    large = b'{"text": "' + b"x" * 200_000 + b'\\ud83d\\ude00", "bad": "\\udc00"}'
    asyncio.run(deps.refuse_lone_surrogates(request_of(small)))
    with pytest.raises(InvalidRequest, match="lone UTF-16 surrogate"):
        asyncio.run(deps.refuse_lone_surrogates(request_of(large)))
    assert where == [True, False]


@pytest.mark.parametrize("fmt", ["json", "md"])
def test_the_outline_is_serialised_off_the_event_loop(make_services: Any, monkeypatch: pytest.MonkeyPatch,
                                                       fmt: str) -> None:
    import inhouse.api.outline_routes as routes

    where: list[bool] = []
    real_dict, real_md = Outline.to_dict, routes.to_markdown

    def to_dict(self: Outline) -> dict[str, Any]:
        where.append(on_a_loop())
        return real_dict(self)

    def to_markdown(outline: Outline) -> str:
        where.append(on_a_loop())
        return real_md(outline)

    monkeypatch.setattr(Outline, "to_dict", to_dict)
    monkeypatch.setattr(routes, "to_markdown", to_markdown)
    s = make_services()
    with TestClient(build_app(s), headers={"Authorization": f"Bearer {s.member_key}"}) as c:
        resp = c.post(f"/v1/apps/outline?format={fmt}", json={"text": "# A\n\none\n\n## B\n\ntwo\n",
                                                              "key_points": False})
    assert resp.status_code == 200, resp.text
    assert "B" in resp.text and where == [False]


def test_a_body_of_too_many_values_is_refused_before_it_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """json.loads holds the GIL for the whole call, a worker thread's too: a body of millions of small values is
    refused without being decoded; long text, whatever its commas, quotes and backslashes, is decoded."""
    decoded: list[int] = []
    real = json.loads

    def loads(body: bytes) -> Any:
        decoded.append(len(body))
        return real(body)

    monkeypatch.setattr(deps.json, "loads", loads)
    for pad in (b"0," * 300_000 + b"0", b'"",' * 300_000 + b'""', b"[]," * 300_000 + b"[]"):
        with pytest.raises(InvalidRequest, match="more than 100,000 JSON values"):
            asyncio.run(deps.read_json(request_of(b'{"text": "a", "pad": [' + pad + b"]}"), Spied))
    assert decoded == []
    text = 'a "quoted", comma, text: [x], {y} \\ \\" \\\\' * 50_000  # 2 million commas, quotes and backslashes
    got = asyncio.run(deps.read_json(request_of(json.dumps({"text": text}).encode()), Spied))
    assert got.text == text and len(decoded) == 1


@pytest.mark.parametrize("value", [
    {"text": 'a "quoted", comma\\' * 10, "n": list(range(30))},
    {"a": [[], {}, "x,y:[{", {"b": ["\\\\\"", 1, None]}], "c": "\\\\"},
    ["a", "b", 1, 2.5, True],
])
def test_the_value_count_bounds_the_decoded_values(value: Any) -> None:
    def count(v: Any) -> int:
        if isinstance(v, dict):
            return 1 + sum(1 + count(x) for x in v.values())  # a key and its value
        if isinstance(v, list):
            return 1 + sum(count(x) for x in v)
        return 1

    body = json.dumps(value).encode()
    n = count(value)
    # Within a factor of two either way (a string and the comma before it both count), whatever the text holds:
    assert not deps._values_over(body, 2 * n + 1)  # text is not taken for values
    assert deps._values_over(body, n // 2 - 1)  # and values are not missed
