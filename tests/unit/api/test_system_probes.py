"""``/ready`` and ``/metrics`` run on worker threads of their own: requests holding every thread of the shared pool
(anyio's default limiter: retries of a restarting engine once did, a slow disk or a model loading may) must not
turn a readiness probe into a timeout."""

from __future__ import annotations

import threading

import anyio.to_thread
from fastapi.testclient import TestClient


def test_ready_and_metrics_answer_while_every_shared_worker_thread_is_taken(client: TestClient) -> None:
    assert client.portal is not None
    shared = client.portal.call(anyio.to_thread.current_default_thread_limiter)
    holders = [object() for _ in range(int(shared.total_tokens))]
    for holder in holders:
        client.portal.call(shared.acquire_on_behalf_of, holder)
    answers: dict[str, int] = {}
    probes = [threading.Thread(target=lambda p=path: answers.update({p: client.get(p).status_code}))
              for path in ("/ready", "/metrics")]
    try:
        for probe in probes:
            probe.start()
        for probe in probes:
            probe.join(5)
        answered = dict(answers)
    finally:
        for holder in holders:
            client.portal.call(shared.release_on_behalf_of, holder)
        for probe in probes:
            probe.join()
    assert answered.get("/ready") == 200 and "/metrics" in answered, f"probes starved: {answered}"
