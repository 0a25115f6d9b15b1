"""A client that goes away mid-generation: the generation stops (the engine aborts it) and the request's final
audit record says ``aborted`` / 499, as the edge metrics count it, whatever the route and whether it streamed. So
does a request whose task is cancelled (how Ray Serve's proxy tells a cluster ingress that the client left); the
cancellation still propagates."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import Message

from inhouse.api.app import build_app

MODEL = "fake-model"
# 20 ms per step, a 200-word answer: 150 tokens take ~3 s, the client leaves after 0.2 s.
SLOW = {"delay_s": 0.02, "script": {"hi": "word " * 200}}
LEAVE_AFTER_S = 0.2
CANCEL_AFTER_S = 0.3


@pytest.fixture
def slow(make_services: Any) -> Iterator[tuple[Any, Any]]:
    s = make_services(fake=SLOW)
    app = build_app(s)
    with TestClient(app):  # the lifespan: the app's background services run
        yield s, app


def call_and_leave(app: Any, key: str, path: str, body: dict[str, Any], *,
                   cancel: bool = False, fail: BaseException | None = None) -> tuple[float, list[Message]]:
    """POST ``body`` with a client that disconnects after ``LEAVE_AFTER_S``; how long the app took, what it sent.
    ``cancel``: the client never disconnects; the request's task is cancelled after ``CANCEL_AFTER_S`` instead.
    ``fail``: ``receive()`` raises it then instead of returning the disconnect."""
    raw = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"test"), (b"authorization", f"Bearer {key}".encode()),
                         (b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
             "client": ("127.0.0.1", 5000), "server": ("test", 80)}
    sent: list[Message] = []
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.sleep(3600 if cancel else LEAVE_AFTER_S)  # cancelled: the proxy, not the client, ends it
        if fail is not None:
            raise fail
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def cancelled() -> None:
        task = asyncio.create_task(app(scope, receive, send))
        await asyncio.sleep(CANCEL_AFTER_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    t0 = time.perf_counter()
    asyncio.run(cancelled() if cancel else app(scope, receive, send))
    return time.perf_counter() - t0, sent


def final_record(s: Any, action: str) -> Any:
    return [r for r in s.audit.records(kind="request") if r.action == action and r.outcome != "started"][-1]


def test_a_non_streaming_response_stops_generating_when_the_client_leaves(slow: tuple[Any, Any]) -> None:
    s, app = slow
    took, sent = call_and_leave(app, s.member_key, "/v1/responses",
                                {"model": MODEL, "input": "hi", "max_output_tokens": 150})
    assert took < 1.5  # not the ~3 s of the whole answer
    assert not sent  # nobody to answer
    final = final_record(s, "responses:create")
    assert final.outcome == "aborted" and final.details["status"] == 499
    assert final.details["completion_tokens"] < 50


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 150}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 150, "stream": True}),
    ("/v1/responses", {"input": "hi", "max_output_tokens": 150, "stream": True}),
], ids=["chat", "chat-stream", "responses-stream"])
def test_a_client_that_leaves_is_audited_as_aborted_not_as_a_server_error(
        slow: tuple[Any, Any], path: str, body: dict[str, Any]) -> None:
    s, app = slow
    took, _ = call_and_leave(app, s.member_key, path, {"model": MODEL, **body})
    assert took < 1.5
    action = "chat:create" if path == "/v1/chat/completions" else "responses:create"
    final = final_record(s, action)
    # A stream's status line said 200, but its answer was cut short: aborted, like the generation itself.
    assert final.outcome == "aborted" and final.details["status"] == 499
    assert final.details["completion_tokens"] < 50
    metrics = TestClient(app, headers={"Authorization": f"Bearer {s.admin_key}"}).get("/metrics").text
    assert f'inhouse_requests_aborted_total{{model="{MODEL}"}} 1.0' in metrics


@pytest.mark.parametrize(("fail", "outcome"), [
    (ConnectionResetError(104, "Connection reset by peer"), ("aborted", 499)),
    (RuntimeError("a bug of the server's"), ("error", 500)),
], ids=["connection-reset", "server-bug"])
def test_a_read_that_fails_under_a_stream_is_aborted_only_when_the_connection_broke(
        slow: tuple[Any, Any], fail: BaseException, outcome: tuple[str, int]) -> None:
    # SSEResponse's disconnect watcher reads in a task group, which hands its error on in an ExceptionGroup.
    s, app = slow
    took, _ = call_and_leave(app, s.member_key, "/v1/chat/completions",
                             {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 150,
                              "stream": True}, fail=fail)
    assert took < 1.5  # the stream stopped either way
    final = final_record(s, "chat:create")
    assert (final.outcome, final.details["status"]) == outcome


def test_the_minutes_assistant_stops_when_its_client_leaves(make_services: Any) -> None:
    s = make_services(fake=SLOW, settings={"apps": {"model": MODEL}})
    app = build_app(s)
    transcript = "\n".join(f"Alice: item {i}, I will send the report by Friday." for i in range(40))
    with TestClient(app):
        took, sent = call_and_leave(app, s.member_key, "/v1/apps/minutes",
                                    {"text": transcript, "meeting_date": "2026-10-14"})
        # The transcript's windows were all generated for nobody (minutes of engine time on a CPU)
        assert took < 1.5, took
        assert not sent
        assert final_record(s, "apps:use").outcome == "aborted"
        assert s.registry.get_engine(MODEL).stats().running == 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole-answer", "stream"])
def test_a_cancelled_request_is_audited_as_aborted(slow: tuple[Any, Any], stream: bool) -> None:
    s, app = slow
    call_and_leave(app, s.member_key, "/v1/chat/completions",
                   {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 150,
                    "stream": stream}, cancel=True)
    final = [r for r in s.audit.records(kind="request") if r.action == "chat:create" and r.outcome != "started"]
    assert len(final) == 1
    assert final[0].outcome == "aborted" and final[0].details["status"] == 499
    assert final[0].details["completion_tokens"] < 50
