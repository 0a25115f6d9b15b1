"""64 concurrent streaming clients against one `inhouse serve` on SmolLM2 for a bounded time: no 5xx, no broken
stream, no connection error, refusals only as 429 with Retry-After, healthy afterwards, RSS flat within 200 MB.
The 30-minute version is `python -m benchmarks.soak` (docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.testing.load import healthy, run_load
from inhouse.testing.server_process import ServerProcess, create_admin_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SMOL = "smollm2-135m"


def test_64_streaming_clients(tmp_path: Path) -> None:
    key = create_admin_key(tmp_path)
    with ServerProcess(tmp_path, SMOL) as server:
        report = run_load(server.url, key, model=SMOL, clients=64, duration_s=8, max_tokens=16, pid=server.pid)
        summary = report.to_dict(warmup_s=5)
        assert report.ok, summary
        # Every client was answered: served, or refused with 429 + Retry-After when its wait would have exceeded
        # engine.max_queue_wait_s (on a loaded machine a round of 16 streams takes long enough for that); at least
        # the first round (engine.max_running = 16) is served.
        assert report.server_errors == 0 and report.completed >= 16, summary
        assert report.completed + report.statuses[429] >= 64, summary
        # Refusals only from the engine's queue (full, waited engine.max_queue_wait_s, or estimated to): 429.
        assert set(report.refusal_codes) <= {"overloaded", "queue_timeout", "queue_wait_estimate"}, summary
        assert healthy(server.url, key, SMOL), server.log_tail()
        assert abs(report.rss_growth_mb(warmup_s=5)) < 200, summary
