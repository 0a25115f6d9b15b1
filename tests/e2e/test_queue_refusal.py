"""A request that waits in the engine's queue longer than ``engine.max_queue_wait_s`` is answered 429 through the
real HTTP server, streamed or not: the HTTP status itself (no response head was sent before), ``Retry-After``, the
one error shape, the connection closed; the refusals are counted in /metrics, and the server serves after."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import FAKE_MODEL, LiveServer, run_live_server

from inhouse.testing.fakes import build_fake_engine

pytestmark = pytest.mark.timeout(60)
MAX_WAIT_S = 0.5


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    def load(spec: object) -> object:
        # One seat; "hold" keeps it ~4 s (400 tokens, 10 ms a step), far beyond the queue bound.
        return build_fake_engine(FAKE_MODEL, script={"hold": "x" * 400}, delay_s=0.01, max_running=1,
                                 n_cache_slots=0, max_queue_wait_s=MAX_WAIT_S, retry_after_s=3.0)

    with run_live_server(tmp_path, load_engine=load) as live:
        yield live


def chat(content: str, *, stream: bool, max_tokens: int = 8) -> dict[str, object]:
    return {"model": FAKE_MODEL, "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": content}]}


def test_a_request_queued_past_the_bound_gets_429_with_retry_after_not_a_stream(server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    started = threading.Event()
    held: dict[str, object] = {}

    def hold() -> None:
        with httpx.stream("POST", server.url + "/v1/chat/completions", headers=headers, timeout=60,
                          json=chat("hold the seat", stream=True, max_tokens=400)) as r:
            held["status"] = r.status_code
            lines = r.iter_lines()
            next(lines)
            started.set()
            held["done"] = any(line == "data: [DONE]" for line in lines)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert started.wait(30), held
        for stream in (True, False):
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client, \
                    client.stream("POST", "/v1/chat/completions", json=chat("me too", stream=stream)) as r:
                body = r.read()
                assert r.status_code == 429, body
                assert r.headers["retry-after"] == "3"  # nothing finished yet: the configured fallback
                assert r.headers["connection"] == "close"
                assert r.headers["content-type"].startswith("application/json")  # no event stream begun
                error = r.json()["error"]
                assert set(error) == {"message", "type", "code", "param"}
                assert (error["type"], error["code"]) == ("rate_limit_error", "queue_timeout")
                assert f"{MAX_WAIT_S:g} s" in error["message"]
    finally:
        holder.join(60)
    assert held == {"status": 200, "done": True}  # the running stream was not disturbed
    metrics = httpx.get(server.url + "/metrics", headers=headers, timeout=10).text
    assert f'inhouse_queue_timeouts_total{{model="{FAKE_MODEL}"}} 2.0' in metrics
    assert f'inhouse_queue_wait_refused_total{{model="{FAKE_MODEL}"}} 0.0' in metrics
    # A refusal is neither a request its client abandoned nor tokens served (the key's quota is not charged).
    assert f'inhouse_requests_aborted_total{{model="{FAKE_MODEL}"}}' not in metrics
    assert 'inhouse_requests_total{route="/v1/chat/completions",status="429"} 2.0' in metrics
    after = httpx.post(server.url + "/v1/chat/completions", headers=headers, timeout=30,
                       json=chat("still there?", stream=False))
    assert after.status_code == 200
