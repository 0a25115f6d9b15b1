"""`inhouse serve` on the packaged SmolLM2, killed with SIGKILL while streams run, then restarted: it serves, the
audit chain verifies with no operator step, the cut-off requests are recorded as interrupted, not lost, and no
engine process outlives its server."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.testing.crash import server_crash_cycles

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_server_killed_during_streams_restarts_clean(tmp_path: Path) -> None:
    report = server_crash_cycles(tmp_path, cycles=3, streams=6, seed=3)
    summary = report.to_dict()
    assert report.ok, summary
    assert report.streams_cut >= 1 and report.interrupted_closed >= 1, summary  # the kills cut real streams
    # Each killed server had its engine process (engine.isolation=process), and none outlived it (report.ok).
    assert report.engine_processes_killed_with >= report.cycles, summary
