"""Schedules are the server's local wall-clock time (models/timetable.py): the tests here write their instants in
UTC, so they run with the process's zone set to UTC whatever the machine's (test_timetable_dst.py sets its own)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def server_in_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
