"""The schedule keeps local wall-clock time across DST changes (Europe/Berlin, 2025: clocks go forward on
30 March at 02:00, back on 26 October at 03:00), and a time the change skips or repeats gives one event."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from inhouse.models.residency import ModelResidency
from inhouse.models.timetable import Timetable, parse_weekly


@pytest.fixture(autouse=True)
def berlin(server_in_utc: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")  # conftest's server_in_utc puts the zone back afterwards
    time.tzset()


def local(*wall: int) -> dt.datetime:
    """What ``residency.local_now()`` returns at that wall-clock moment (a fixed-offset datetime)."""
    return dt.datetime(*wall).astimezone()


def utc(*wall: int) -> dt.datetime:
    return dt.datetime(*wall, tzinfo=dt.UTC)


def test_an_evening_release_stays_at_19_local_across_both_changes() -> None:
    release = Timetable.parse([], ["mon-fri 19:00"])
    assert release.next_release(local(2025, 3, 29, 12, 0)) == utc(2025, 3, 31, 17, 0)  # Monday 19:00 CEST
    assert release.next_release(local(2025, 10, 25, 12, 0)) == utc(2025, 10, 27, 18, 0)  # Monday 19:00 CET
    nxt = release.next_release(local(2025, 3, 29, 12, 0))
    assert nxt is not None and nxt.strftime("%H:%M %z") == "19:00 +0200"


def test_a_time_the_clocks_skip_happens_once_after_the_gap() -> None:
    at_0230 = parse_weekly("daily 02:30")
    first = at_0230.next_after(local(2025, 3, 29, 12, 0))
    assert first == utc(2025, 3, 30, 1, 30)  # 03:30 CEST: right after the gap
    assert at_0230.next_after(first) == utc(2025, 3, 31, 0, 30)  # Monday 02:30 CEST


def test_a_time_the_clocks_repeat_happens_once() -> None:
    at_0230 = parse_weekly("daily 02:30")
    first = at_0230.next_after(local(2025, 10, 25, 12, 0))
    assert first == utc(2025, 10, 26, 0, 30)  # the first 02:30 (CEST)
    assert at_0230.next_after(first) == utc(2025, 10, 27, 1, 30)  # not the second 02:30 an hour later
    second_0210 = utc(2025, 10, 26, 1, 10).astimezone()  # 02:10 CET, the repeated hour
    assert at_0230.next_after(second_0210) == utc(2025, 10, 27, 1, 30)


class _Stats:
    def __init__(self) -> None:
        self.steps = self.prompt_tokens = self.generated_tokens = self.aborted = self.running = self.waiting = 0
        self.crashes: dict[str, int] = {}


class _Engine:
    def stats(self) -> _Stats:
        return _Stats()


class _Registry:
    def __init__(self) -> None:
        self.names = ["m"]

    def loaded_engines(self) -> list[tuple[str, _Engine]]:
        return [(n, _Engine()) for n in self.names]

    def loaded(self) -> list[str]:
        return list(self.names)

    def unload(self, name: str) -> bool:
        self.names.remove(name)
        return True


def test_the_residency_releases_at_19_local_after_the_change() -> None:
    clock = {"now": local(2025, 3, 29, 12, 0)}
    registry: Any = _Registry()
    r = ModelResidency(registry, timetable=Timetable.parse([], ["mon-fri 19:00"]), clock=lambda: clock["now"],
                       rss=lambda: 0, drop_cache=False)
    clock["now"] = local(2025, 3, 31, 18, 59, 30)
    assert r.tick() == []
    clock["now"] = local(2025, 3, 31, 19, 0, 30)
    assert r.tick() == ["release"] and registry.names == []
    assert r.status()["next_release"] == "2025-04-01T19:00+02:00"
