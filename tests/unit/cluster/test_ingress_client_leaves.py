"""A client that leaves a cluster ingress's stream is recorded ``aborted`` / 499, however Ray tells the ingress.

Serve's proxy cancels the replica's call, and with it the calls that request has in flight: the one ``receive()``
waits on raises ``TaskCancelledError`` (``RequestCancelledError``) instead of returning ``http.disconnect`` (and hangs
on every later call), and the model replica's stream raises it too. Which of these reaches the app first is a race
(the CI box lost it: ``error`` / 500). Here each is played on its own, in-process over the fake engine, without Ray
running: the app as the ingress builds it (``build_ingress_app``), driven the way Serve's replica drives it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ray.exceptions import TaskCancelledError
from ray.serve.exceptions import RequestCancelledError

from inhouse.cluster.ingress import build_ingress_app
from inhouse.cluster.remote import RemoteEngine
from inhouse.cluster.wire import ReplicaInfo
from inhouse.engine.params import Delta, GenerationRequest
from inhouse.governance.audit import STARTED
from inhouse.testing.services import FAKE_MODEL, build_fake_services

Message = dict[str, Any]
SLOW = {"delay_s": 0.02, "script": {"hi": "word " * 200}}  # ~3 s of answer; the client leaves after one event
CHAT = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 150, "stream": True}


def serve_like_call(app: Any, key: str, *, receive_fails: BaseException | None,
                    cancel_after_s: float | None) -> list[Message]:
    """POST a streaming chat as Serve's replica does once the client has left after the first SSE event:
    ``receive()`` raises ``receive_fails`` (then hangs, as Serve's does after an error), and/or the request's task is
    cancelled ``cancel_after_s`` after that event. What the app sent."""
    raw = json.dumps(CHAT).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5000), "server": ("test", 80),
             "headers": [(b"host", b"test"), (b"authorization", f"Bearer {key}".encode()),
                         (b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]}
    sent: list[Message] = []

    async def run() -> None:
        first_event = asyncio.Event()
        body_sent = failed = False

        async def receive() -> Message:
            nonlocal body_sent, failed
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await first_event.wait()
            if receive_fails is not None and not failed:
                failed = True
                raise receive_fails
            await asyncio.Event().wait()  # Serve's receive after an error, or a client that never says it left
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            sent.append(message)
            if message.get("body", b"").startswith(b"data: {"):
                first_event.set()

        task = asyncio.create_task(app(scope, receive, send))
        if cancel_after_s is not None:
            await asyncio.wait_for(first_event.wait(), 10)
            await asyncio.sleep(cancel_after_s)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # a cancelled request ends so, as Serve expects
            await asyncio.wait_for(task, 10)

    asyncio.run(run())
    return sent


def final_record(s: Any) -> Any:
    final = [r for r in s.audit.records(kind="request") if r.action == "chat:create" and r.outcome != STARTED]
    assert len(final) == 1, final
    return final[0]


@pytest.mark.parametrize(("receive_fails", "cancel_after_s"), [
    (RequestCancelledError("r1"), None),  # the proxy's cancel reached the receive call only
    (TaskCancelledError(), 0.2),  # the receive call first, the request's task a moment later (the CI race)
    (None, 0.2),  # the request's task only (this always was aborted)
], ids=["receive-cancelled", "receive-then-task-cancelled", "task-cancelled"])
def test_a_client_that_leaves_is_recorded_aborted_however_serve_says_it(
        tmp_path: Path, receive_fails: BaseException | None, cancel_after_s: float | None) -> None:
    from inhouse.testing.fakes import build_fake_engine

    s = build_fake_services(tmp_path, load_engine=lambda spec: build_fake_engine(spec.name, **SLOW))
    try:
        key = s.keys.ensure_admin_key()
        sent = serve_like_call(build_ingress_app(s), key, receive_fails=receive_fails, cancel_after_s=cancel_after_s)
        assert sent[0]["status"] == 200
        final = final_record(s)
        assert (final.outcome, final.details["status"]) == ("aborted", 499), (final.outcome, final.details)
        assert final.details["completion_tokens"] < 50  # the generation stopped too
        assert s.registry.get_engine(FAKE_MODEL).stats().running == 0
    finally:
        s.close()


def test_a_failing_receive_that_is_no_cancel_stays_a_server_error(tmp_path: Path) -> None:
    from inhouse.testing.fakes import build_fake_engine

    s = build_fake_services(tmp_path, load_engine=lambda spec: build_fake_engine(spec.name, **SLOW))
    try:
        key = s.keys.ensure_admin_key()
        serve_like_call(build_ingress_app(s), key, receive_fails=RuntimeError("the proxy broke"), cancel_after_s=None)
        final = final_record(s)
        assert (final.outcome, final.details["status"]) == ("error", 500)
    finally:
        s.close()


class _Cancelled:
    """A model deployment's handle whose stream Serve cancels after two deltas (the ingress request was cancelled:
    Serve cancels its calls to the model replicas)."""

    deployment_name = "model-fake-model"

    class _Call:
        def __init__(self, value: Any) -> None:
            self.value = value

        def result(self, timeout_s: float | None = None) -> Any:
            return self.value

    class _Method:
        def __init__(self, fn: Any) -> None:
            self.remote = fn

    class _Stream:
        def __init__(self, request_id: str) -> None:
            self.request_id = request_id

        def __aiter__(self) -> AsyncIterator[Delta]:
            return self._gen()

        async def _gen(self) -> AsyncIterator[Delta]:
            for _ in range(2):
                await asyncio.sleep(0.05)
                yield Delta(self.request_id, "word ", token_ids=[7])
            await asyncio.sleep(0.05)
            raise RequestCancelledError(self.request_id)

        def cancel(self) -> None:
            pass

    def __init__(self) -> None:
        info = ReplicaInfo(model=FAKE_MODEL, replica="r1", node_id="n1", pid=1, n_ctx=2048, max_running=2,
                           profile="none")
        self.describe = self._Method(lambda **kw: self._Call(info))
        self.tokenize = self._Method(lambda text, *a: self._Call(list(range(1, 1 + len(text) // 4))))
        self.generate = self._Method(self._generate)

    def options(self, **_: Any) -> _Cancelled:
        return self

    def _generate(self, request: GenerationRequest, affinity_key: str | None = None) -> _Stream:
        return self._Stream(request.request_id)


def test_a_model_stream_serve_cancelled_is_recorded_aborted_not_as_an_engine_failure(tmp_path: Path) -> None:
    handle = _Cancelled()
    s = build_fake_services(tmp_path, load_engine=lambda spec: RemoteEngine(
        spec.name, handle, app_name="inhouse", call_timeout_s=5))  # type: ignore[arg-type]
    try:
        key = s.keys.ensure_admin_key()
        sent = serve_like_call(build_ingress_app(s), key, receive_fails=None, cancel_after_s=None)
        assert not any(b'"error"' in m.get("body", b"") for m in sent)  # no engine failure event either
        final = final_record(s)
        assert (final.outcome, final.details["status"], final.reason) == ("aborted", 499, None)
    finally:
        s.close()
