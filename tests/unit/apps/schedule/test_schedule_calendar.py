"""Calendar logic, checked against brute force: conflicts, working hours across zones and DST, free slots that
never overlap a busy interval, stay in working hours, and miss no grid slot."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inhouse.apps.schedule.calendar import (
    Attendee,
    Interval,
    WorkingHours,
    conflicts,
    free_windows,
    merge,
    propose_slots,
    subtract,
)
from inhouse.errors import InvalidRequest

BASE = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
ZONES = [ZoneInfo("UTC"), ZoneInfo("Asia/Shanghai"), ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"),
         ZoneInfo("Asia/Kolkata")]


def iv(h1: float, h2: float) -> Interval:
    return Interval(BASE + timedelta(hours=h1), BASE + timedelta(hours=h2))


def test_half_open_intervals_touching_do_not_conflict() -> None:
    assert conflicts(iv(10, 11), [iv(9, 10), iv(11, 12)]) == []
    assert conflicts(iv(10, 11), [iv(10.5, 12)]) == [iv(10.5, 12)]
    assert conflicts(iv(10, 11), [iv(9, 13)]) == [iv(9, 13)]


def test_intervals_in_one_zone_across_a_dst_fold_are_measured_in_utc() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # clocks go back at 03:00 CEST on 25 October 2026: 02:00-03:00 twice
    first, second = datetime(2026, 10, 25, 2, 30, tzinfo=berlin), datetime(2026, 10, 25, 2, 0, fold=1, tzinfo=berlin)
    night = Interval(first, second)  # ends "earlier" on the wall clock, 30 minutes later in fact
    assert night.duration == timedelta(minutes=30)
    with pytest.raises(InvalidRequest):
        Interval(second, first)
    later = Interval(second, datetime(2026, 10, 25, 2, 45, fold=1, tzinfo=berlin))
    assert not night.overlaps(later) and not later.overlaps(night)
    assert Interval(first, datetime(2026, 10, 25, 2, 50, fold=1, tzinfo=berlin)).contains(later)


def test_merge_and_subtract() -> None:
    assert merge([iv(3, 4), iv(1, 2), iv(2, 3)]) == [iv(1, 4)]
    assert subtract([iv(0, 10)], [iv(1, 2), iv(5, 6), iv(9, 11)]) == [iv(0, 1), iv(2, 5), iv(6, 9)]


def test_bad_intervals_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        iv(2, 1)
    with pytest.raises(InvalidRequest):
        Interval(datetime(2026, 1, 1), datetime(2026, 1, 2))  # naive


def test_working_hours_in_each_zone_and_across_dst() -> None:
    berlin = WorkingHours(tz=ZoneInfo("Europe/Berlin"), start=time(9), end=time(17))
    # The week of the 2026 spring change (29 March): 9:00 Berlin is 08:00 UTC before and 07:00 UTC after.
    window = Interval(datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))
    days = berlin.intervals(window)
    assert [d.start.hour for d in days] == [8, 7]  # Friday, then Monday after the change (no weekend)
    assert all(d.duration == timedelta(hours=8) for d in days)


def test_group_slots_respect_every_zone() -> None:
    shanghai = Attendee("li", hours=WorkingHours(tz=ZoneInfo("Asia/Shanghai")))  # 01:00-10:00 UTC
    berlin = Attendee("anna", hours=WorkingHours(tz=ZoneInfo("Europe/Berlin")))  # 08:00-17:00 UTC (winter)
    slots = propose_slots([shanghai, berlin], timedelta(minutes=60), iv(0, 24), limit=50)
    assert slots[0] == iv(8, 9) and slots[-1] == iv(9, 10)  # the overlap is 08:00-10:00 UTC
    assert len(slots) == 5  # 8:00, 8:15, 8:30, 8:45, 9:00


def test_window_too_long_and_no_attendees() -> None:
    with pytest.raises(InvalidRequest):
        free_windows([Attendee("a")], Interval(BASE, BASE + timedelta(days=400)))
    with pytest.raises(InvalidRequest):
        free_windows([], iv(0, 1))
    with pytest.raises(InvalidRequest):
        propose_slots([Attendee("a")], timedelta(0), iv(0, 1))


busy_st = st.lists(st.tuples(st.integers(0, 4 * 24 * 4), st.integers(1, 16)), max_size=12)
attendee_st = st.tuples(st.sampled_from(ZONES), st.integers(6, 11), st.integers(14, 20), busy_st)


@settings(max_examples=60, deadline=None)
@given(people=st.lists(attendee_st, min_size=1, max_size=3), duration_q=st.integers(1, 12),
       window_q=st.tuples(st.integers(0, 2 * 96), st.integers(8, 3 * 96)))
def test_slots_are_exact_against_brute_force(people: list[tuple[ZoneInfo, int, int, list[tuple[int, int]]]],
                                             duration_q: int, window_q: tuple[int, int]) -> None:
    q = timedelta(minutes=15)
    attendees = [Attendee(f"p{i}", [Interval(BASE + s * q, BASE + (s + n) * q) for s, n in busy],
                          WorkingHours(tz=tz, start=time(h1), end=time(h2)))
                 for i, (tz, h1, h2, busy) in enumerate(people)]
    window = Interval(BASE + window_q[0] * q, BASE + (window_q[0] + window_q[1]) * q)
    duration = duration_q * q
    slots = propose_slots(attendees, duration, window, step=q, limit=200)
    for slot in slots:  # never overlaps a busy interval, always inside everyone's working hours and the window
        assert window.contains(slot) and slot.duration == duration
        for a in attendees:
            assert not conflicts(slot, a.busy)
            assert any(w.contains(slot) for w in a.hours.intervals(window))
    if len(slots) < 200:  # nothing missed: every free grid start is proposed
        expected = []
        t = window.start
        while t + duration <= window.end:
            cand = Interval(t, t + duration)
            if all(not conflicts(cand, a.busy) and any(w.contains(cand) for w in a.hours.intervals(window))
                   for a in attendees):
                expected.append(cand)
            t += q
        assert slots == expected


def test_propose_slots_aligns_to_the_grid_after_an_odd_busy_end() -> None:
    a = Attendee("a", [Interval(BASE + timedelta(hours=9), BASE + timedelta(hours=10, minutes=7))])
    slots = propose_slots([a], timedelta(minutes=30), iv(9, 11), limit=3)
    assert slots[0].start == BASE + timedelta(hours=10, minutes=15)
    windows = free_windows([a], iv(9, 11))
    assert windows == [Interval(BASE + timedelta(hours=10, minutes=7), BASE + timedelta(hours=11))]
