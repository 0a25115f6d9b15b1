"""Crash consistency: real ``inhouse`` processes killed with SIGKILL at random moments, then checked.

The long versions are ``python -m benchmarks.crash`` (figures in docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.testing.crash import admin_crash_cycles, ingest_crash_cycles

pytestmark = pytest.mark.slow


def test_ingest_killed_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    report = ingest_crash_cycles(tmp_path, cycles=10, seed=14, n_files=60)
    summary = report.to_dict()
    assert report.ok, summary
    assert summary["killed_mid_run"] >= 5, summary  # the kills really landed while it was working
    assert report.check["counts"]["documents"] == 60 and report.check["integrity"] == ["ok"]


def test_admin_changes_killed_at_random_moments_are_never_half_applied(tmp_path: Path) -> None:
    """Users, group memberships, keys and knowledge documents changed in a loop and SIGKILLed: after each kill the
    databases pass their integrity checks, no key or user exists unaudited, no active key points at a missing
    user, the knowledge index is consistent and the audit chain verifies without a reseal."""
    report = admin_crash_cycles(tmp_path, cycles=5, seed=2, window_s=(0.05, 1.5))
    summary = report.to_dict()
    assert report.ok, summary
    assert summary["killed_mid_run"] == 5 and report.users > 0 and report.documents > 0, summary
