"""Strict parsing of the prewarm/release schedule and the next occurrence."""

from __future__ import annotations

import datetime as dt

import pytest

from inhouse.errors import InvalidRequest
from inhouse.models.timetable import Timetable, parse_weekly

WED_NOON = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)  # a Wednesday


@pytest.mark.parametrize(("entry", "days"), [
    ("mon-fri 08:30", {0, 1, 2, 3, 4}), ("daily 07:00", set(range(7))), ("sat,sun 10:00", {5, 6}),
    ("fri-mon 22:15", {4, 5, 6, 0}), ("WED 00:00", {2}),
])
def test_valid_entries(entry: str, days: set[int]) -> None:
    assert parse_weekly(entry).weekdays == days


@pytest.mark.parametrize("entry", ["mon-fri 8:30", "mon-fri 24:00", "mon-fri 08:60", "funday 08:00", "mon-fri",
                                   "08:30", "mon-tue-wed 08:00", "mon,,tue 08:00", "mon-fri  08:30", "mon-fri 08:30x",
                                   "mon,tue-fri 08:00", ""])
def test_invalid_entries_name_the_entry(entry: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        Timetable.parse([entry], [])
    assert f"'{entry}'" in err.value.message and "models.prewarm" in err.value.message


def test_next_occurrences() -> None:
    s = Timetable.parse(["mon-fri 08:30"], ["mon-fri 19:00", "sat 12:00"])
    assert s.next_prewarm(WED_NOON) == dt.datetime(2026, 11, 26, 8, 30, tzinfo=dt.UTC)
    assert s.next_release(WED_NOON) == dt.datetime(2026, 11, 25, 19, 0, tzinfo=dt.UTC)
    friday_night = dt.datetime(2026, 11, 27, 20, 0, tzinfo=dt.UTC)
    assert s.next_prewarm(friday_night) == dt.datetime(2026, 11, 30, 8, 30, tzinfo=dt.UTC)
    assert s.next_release(friday_night) == dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
    at = dt.datetime(2026, 11, 25, 19, 0, tzinfo=dt.UTC)
    assert s.next_release(at) == dt.datetime(2026, 11, 26, 19, 0, tzinfo=dt.UTC)  # strictly after
    assert Timetable().next_prewarm(WED_NOON) is None
