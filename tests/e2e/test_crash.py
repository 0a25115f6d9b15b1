"""Crash consistency: real ``inhouse`` processes killed with SIGKILL at random moments, then checked.

The long versions are ``python -m benchmarks.crash`` (figures in docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.testing.crash import ingest_crash_cycles

pytestmark = pytest.mark.slow


def test_ingest_killed_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    report = ingest_crash_cycles(tmp_path, cycles=10, seed=14, n_files=60)
    summary = report.to_dict()
    assert report.ok, summary
    assert summary["killed_mid_run"] >= 5, summary  # the kills really landed while it was working
    assert report.check["counts"]["documents"] == 60 and report.check["integrity"] == ["ok"]
