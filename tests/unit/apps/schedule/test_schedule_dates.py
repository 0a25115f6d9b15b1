"""Date words resolved deterministically in the user's zone (month ends, year ends, Chinese, clock times)."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from inhouse.apps.schedule.dates import extract_time, parse_duration_minutes, resolve_date, resolve_datetime
from inhouse.errors import InvalidRequest

WED_JAN_28 = date(2026, 1, 28)  # a Wednesday near a month end
FRI_JAN_30 = date(2026, 1, 30)


@pytest.mark.parametrize(("text", "today", "expected"), [
    ("next Friday", WED_JAN_28, date(2026, 1, 30)),
    ("next Friday", FRI_JAN_30, date(2026, 2, 6)),  # strictly after today, across the month end
    ("Friday", FRI_JAN_30, date(2026, 1, 30)),
    ("by Friday", WED_JAN_28, date(2026, 1, 30)),
    ("next monday", date(2026, 12, 30), date(2027, 1, 4)),  # across the year end
    ("tomorrow", date(2026, 2, 28), date(2026, 3, 1)),
    ("tomorrow", date(2028, 2, 28), date(2028, 2, 29)),  # leap year
    ("the day after tomorrow", date(2026, 4, 29), date(2026, 5, 1)),
    ("in 3 days", date(2026, 1, 30), date(2026, 2, 2)),
    ("in two weeks", date(2026, 1, 28), date(2026, 2, 11)),
    ("next week", WED_JAN_28, date(2026, 2, 2)),
    ("2026-03-05", WED_JAN_28, date(2026, 3, 5)),
    ("Dec 4", WED_JAN_28, date(2026, 12, 4)),
    ("4 January", WED_JAN_28, date(2027, 1, 4)),  # already past this year → next year
    ("December 3rd, 2027", WED_JAN_28, date(2027, 12, 3)),
    ("下周五", WED_JAN_28, date(2026, 2, 6)),  # Friday of next calendar week
    ("周五", WED_JAN_28, date(2026, 1, 30)),
    ("明天", date(2026, 1, 31), date(2026, 2, 1)),
    ("后天", date(2026, 1, 31), date(2026, 2, 2)),
    ("3天后", date(2026, 1, 30), date(2026, 2, 2)),
    ("2月3日", WED_JAN_28, date(2026, 2, 3)),
    ("31号", date(2026, 2, 5), date(2026, 3, 31)),  # February has no 31st
])
def test_resolve_date(text: str, today: date, expected: date) -> None:
    assert resolve_date(text, today) == expected


@pytest.mark.parametrize("text", ["someday", "2026-02-30", "Feb 30", "", "next blursday"])
def test_unknown_or_impossible_dates_are_clear_errors(text: str) -> None:
    with pytest.raises(InvalidRequest):
        resolve_date(text, WED_JAN_28)


@pytest.mark.parametrize(("text", "expected"), [
    ("3pm", time(15)), ("3:30 pm", time(15, 30)), ("11 a.m.", time(11)), ("15:45", time(15, 45)),
    ("noon", time(12)), ("下午3点半", time(15, 30)), ("上午10点", time(10)), ("晚上8点", time(20)),
    ("12am", time(0)), ("12pm", time(12)),
])
def test_extract_time(text: str, expected: time) -> None:
    assert extract_time(text)[0] == expected


def test_resolve_datetime_in_the_users_zone() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    now = datetime(2026, 1, 30, 22, 0, tzinfo=tz)  # Friday night, Shanghai
    assert resolve_datetime("next Friday 3pm", now) == datetime(2026, 2, 6, 15, 0, tzinfo=tz)
    assert resolve_datetime("tomorrow at 9:30", now) == datetime(2026, 1, 31, 9, 30, tzinfo=tz)
    assert resolve_datetime("2026-02-03T10:00", now) == datetime(2026, 2, 3, 10, 0, tzinfo=tz)
    # An explicit offset keeps its instant.
    utc = resolve_datetime("2026-02-03T10:00:00Z", now)
    assert utc == datetime(2026, 2, 3, 18, 0, tzinfo=tz) and utc.tzinfo == tz
    assert resolve_datetime("下周五下午3点", now) == datetime(2026, 2, 6, 15, 0, tzinfo=tz)
    with pytest.raises(InvalidRequest):
        resolve_datetime("25:00", now)


def test_durations() -> None:
    assert parse_duration_minutes(30) == 30
    assert parse_duration_minutes("1.5 hours") == 90
    assert parse_duration_minutes("45 min") == 45
    assert parse_duration_minutes("半小时") == 30
    for bad in (0, -5, "forever", True, 2000, 1.5):
        with pytest.raises(InvalidRequest):
            parse_duration_minutes(bad)
