"""Many concurrent long prompts whose KV together far exceeds the cache: each is admitted when it fits, waits, or
is refused up front (429 with Retry-After when the queue is full, 400 when it alone cannot fit); the KV cache is
never overrun (the fake backend checks every position), nothing fails with 5xx, and the server serves after."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import FAKE_MODEL, LiveServer, run_live_server

from inhouse.testing.fakes import build_fake_engine

N_CTX = 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    def load(spec: object) -> object:
        return build_fake_engine(FAKE_MODEL, n_ctx=N_CTX, max_waiting=8, max_running=4, delay_s=0.005)

    with run_live_server(tmp_path, load_engine=load) as live:
        yield live


def test_concurrent_long_prompts_are_admitted_queued_or_refused_never_overrun(server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    statuses: Counter[int] = Counter()
    missing_retry_after: list[int] = []
    lock = threading.Lock()

    def ask(i: int) -> None:
        # ~400 prompt tokens (the fake tokenizes bytes) + up to 400 more: two fit the 1,024 cells at a time.
        prompt = f"request {i}: " + "long context " * 30
        r = httpx.post(server.url + "/v1/chat/completions", headers=headers, timeout=120, json={
            "model": FAKE_MODEL, "max_tokens": 400, "messages": [{"role": "user", "content": prompt}]})
        with lock:
            statuses[r.status_code] += 1
            if r.status_code == 429 and "retry-after" not in r.headers:
                missing_retry_after.append(i)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert set(statuses) <= {200, 429} and statuses[200] >= 4, statuses
    assert statuses[429] > 0 and not missing_retry_after, statuses  # the queue bound refused the excess up front
    too_long = httpx.post(server.url + "/v1/chat/completions", headers=headers, timeout=30, json={
        "model": FAKE_MODEL, "messages": [{"role": "user", "content": "x" * (N_CTX + 10)}]})
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"
    after = httpx.post(server.url + "/v1/chat/completions", headers=headers, timeout=30, json={
        "model": FAKE_MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "still there?"}]})
    assert after.status_code == 200
