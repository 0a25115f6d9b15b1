"""The fuzzer's own checks fail where they should: a 5xx, a 422, a traceback in a body or in the log, an error
outside the one shape; and a broken route in the real wiring is found by a run."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from inhouse.api.app import build_app
from inhouse.api.openapi import build_openapi
from inhouse.testing.fuzz import (
    ERROR_SHAPE,
    SERVER_ERROR,
    TRACEBACK,
    UNPROCESSABLE,
    _our_checks,
    _violates_on_the_wire,
    create_callers,
    run_fuzz,
)
from inhouse.testing.services import build_fake_services

SHAPED = {"error": {"message": "bad", "type": "invalid_request_error", "code": "invalid", "param": None}}


def reply(status: int, body: Any, content_type: str = "application/json") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return SimpleNamespace(status_code=status, content=raw, headers={"content-type": [content_type]})


def checks_of(response: Any, logged: list[logging.LogRecord] | None = None) -> set[str]:
    case = SimpleNamespace(method="GET", formatted_path="/v1/x")
    return {f.check for f in _our_checks("GET /v1/x", case, response, logged or [])}


def test_a_shaped_error_and_a_success_pass() -> None:
    assert checks_of(reply(400, SHAPED)) == set()
    assert checks_of(reply(200, {"detail": "anything goes in a success"})) == set()


@pytest.mark.parametrize(("response", "expected"), [
    (reply(500, SHAPED), {SERVER_ERROR}),
    (reply(422, {"detail": [{"loc": ["body"], "msg": "field required"}]}), {UNPROCESSABLE, ERROR_SHAPE}),
    (reply(400, {"detail": "bad"}), {ERROR_SHAPE}),
    (reply(400, {**SHAPED, "extra": 1}), {ERROR_SHAPE}),
    (reply(404, b"Not Found", "text/plain"), {ERROR_SHAPE}),
    (reply(400, {"error": {**SHAPED["error"], "message": 'Traceback (most recent call last):\n  File "/x.py"'}}),
     {TRACEBACK}),
])
def test_each_kind_of_bad_answer_is_found(response: Any, expected: set[str]) -> None:
    assert checks_of(response) == expected


def test_a_traceback_mark_the_request_sent_is_an_echo() -> None:
    """A stored conversation answers with the caller's own messages: text the fuzzer sent that looks like a
    traceback is not a leak; the same text in an answer to a request without it is."""
    echoed = reply(201, {"messages": [{"role": "user", "content": "see site-packages/x"}]})
    case = SimpleNamespace(method="POST", formatted_path="/v1/conversations",
                           body={"messages": [{"role": "user", "content": "see site-packages/x"}]})
    assert {f.check for f in _our_checks("POST /v1/conversations", case, echoed, [])} == set()
    assert checks_of(echoed) == {TRACEBACK}


def mutated(media_type: str, *mutations: tuple[str, str, tuple[str, ...]]) -> Any:
    """A schema-violating case as schemathesis records it: (location, parameter, violated keywords)."""
    ms = [SimpleNamespace(parameter_location=SimpleNamespace(value=where), parameter=name, keywords=kw)
          for where, name, kw in mutations]
    return SimpleNamespace(media_type=media_type, meta=SimpleNamespace(phase=SimpleNamespace(
        data=SimpleNamespace(mutations=ms))))


@pytest.mark.parametrize(("case", "violates"), [
    (mutated("application/json", ("body", "top_k", ("type",))), True),
    (mutated("application/json", ("query", "limit", ("maximum",))), True),
    (mutated("application/json", ("header", "Authorization", ("type",))), False),  # the fuzzer sends its key
    (mutated("multipart/form-data", ("body", "key_points", ("type",))), False),  # "1" and 1 are one form text
    (mutated("application/json", ("query", None, ("additionalProperties",))), False),  # undeclared: ignored
    (mutated("multipart/form-data", ("query", None, ("additionalProperties",)), ("body", "file", ("type",))), False),
    (mutated("multipart/form-data", ("body", "file", ("format",)), ("body", "key_points", ("type",))), False),
    (mutated("application/json", ("body", "start", ("format",))), True),  # a JSON date-time is checked
    (mutated("application/json", ("query", None, ("additionalProperties",)), ("body", "text", ("type",))), True),
])
def test_which_schema_violations_are_still_violations_as_sent(case: Any, violates: bool) -> None:
    assert _violates_on_the_wire(case) is violates


def test_a_traceback_in_the_log_is_found() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        record = logging.LogRecord("inhouse.api", logging.ERROR, __file__, 1, "unhandled", None,
                                   (type(exc), exc, exc.__traceback__))
    assert checks_of(reply(200, {}), [record]) == {TRACEBACK}


def test_a_run_finds_a_route_that_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = build_fake_services(tmp_path / "data")
    try:
        app = build_app(services)
        keys = create_callers(services)

        def broken(key_id: str) -> Any:
            raise RuntimeError("a bug in the quota store")

        monkeypatch.setattr(services.quotas, "status", broken)
        report = run_fuzz(build_openapi(app), keys, role="member", examples=2, only=["GET /v1/me"], app=app)
    finally:
        services.close()
    assert report.operations == ["GET /v1/me"] and report.statuses[500] >= 1
    assert {f.check for f in report.findings.values()} >= {SERVER_ERROR, TRACEBACK}
    assert not report.ok
