"""The one date resolver (``inhouse.apps.dates``): English and Chinese words against a reference day, prose
search for the minutes, whole values for the schedule, clock times, durations, the supported range and the one
error contract.

The assertions come from the two resolvers it replaced (``apps/minutes/dates.py``, ``apps/schedule/dates.py``).
Where they contradicted each other, the documented convention (module docstring, docs/dates.md) decides, and
each changed assertion says so in a comment marked CONVENTION.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from inhouse.apps.dates import (
    FIRST_DAY,
    LAST_DAY,
    add_exact,
    check_day,
    check_instant,
    extract_time,
    find_date,
    find_time,
    is_day_only,
    is_time_only,
    parse_duration_minutes,
    resolve_date,
    resolve_datetime,
)
from inhouse.errors import InvalidRequest

WED = date(2026, 10, 14)  # a Wednesday (the minutes tests' meeting day)
WED_JAN_28 = date(2026, 1, 28)  # a Wednesday near a month end
FRI_JAN_30 = date(2026, 1, 30)

# -- prose, against a meeting day (from the minutes resolver) ------------------------------------------------


@pytest.mark.parametrize(("phrase", "expected"), [
    ("by Friday", date(2026, 10, 16)),
    ("Friday", date(2026, 10, 16)),
    ("this Friday", date(2026, 10, 16)),
    ("next Friday", date(2026, 10, 23)),
    ("Friday next week", date(2026, 10, 23)),
    ("by Monday", date(2026, 10, 19)),
    ("Friday, October 16", date(2026, 10, 16)),
    ("by October 30", date(2026, 10, 30)),
    ("30 October 2026", date(2026, 10, 30)),
    ("2026-11-02", date(2026, 11, 2)),
    ("by the 23rd", date(2026, 10, 23)),
    ("by the 2nd", date(2026, 11, 2)),
    ("tomorrow", date(2026, 10, 15)),
    ("in two weeks", date(2026, 10, 28)),
    ("end of the month", date(2026, 10, 31)),
    ("end of next month", date(2026, 11, 30)),
    ("end of the week", date(2026, 10, 16)),
    # CONVENTION: "next week" is the Monday of the next week (the minutes resolver said its Friday, the schedule
    # resolver its Monday; a week phrase names the week's first day in both languages, 下周 too).
    ("next week", date(2026, 10, 19)),
    ("月底", date(2026, 10, 31)),
    ("下周五", date(2026, 10, 23)),
    ("本周五", date(2026, 10, 16)),
    ("周五前", date(2026, 10, 16)),
    ("下下周一", date(2026, 10, 26)),
    ("周五 10 月 23 日前完成", date(2026, 10, 23)),
    ("10月28日前", date(2026, 10, 28)),
    ("2026年11月3日", date(2026, 11, 3)),
    ("明天", date(2026, 10, 15)),
    ("三天内", date(2026, 10, 17)),
    ("25号", date(2026, 10, 25)),
])
def test_finds_dates_in_prose_against_the_meeting_date(phrase: str, expected: date) -> None:
    assert find_date(phrase, WED) == expected


def test_next_friday_across_a_month_end() -> None:
    meeting = date(2026, 10, 28)  # Wednesday of the last week of October
    assert find_date("next Friday", meeting) == date(2026, 11, 6)
    assert find_date("by Friday", meeting) == date(2026, 10, 30)
    assert find_date("下周五", meeting) == date(2026, 11, 6)
    assert find_date("by Friday", date(2026, 10, 30)) == date(2026, 11, 6)  # said on a Friday: the next one
    assert find_date("下周五", date(2026, 12, 30)) == date(2027, 1, 8)  # across a year end
    assert find_date("月底", date(2026, 2, 3)) == date(2026, 2, 28)
    assert find_date("end of the month", date(2028, 2, 3)) == date(2028, 2, 29)


def test_month_day_without_year_is_the_next_such_date() -> None:
    assert find_date("January 5", date(2026, 12, 20)) == date(2027, 1, 5)
    # CONVENTION: a month and day without a year is the first such date on or after today (the schedule
    # resolver's rule); the minutes resolver kept dates up to 60 days past in the meeting's year (2026-12-01).
    assert find_date("December 1", date(2026, 12, 20)) == date(2027, 12, 1)
    assert find_date("December 20", date(2026, 12, 20)) == date(2026, 12, 20)
    assert find_date("February 29", date(2026, 3, 1)) == date(2028, 2, 29)  # waits for a leap year


def test_nothing_to_find() -> None:
    assert find_date("", WED) is None
    assert find_date("as soon as possible", WED) is None
    assert find_date("Friday", None) is None  # relative, with no reference
    assert find_date("2026-10-30", None) == date(2026, 10, 30)
    assert find_date("we sat down on the sun deck", WED) is None  # no "sat"/"sun" weekday abbreviations in prose
    assert find_date("February 30", WED) is None
    assert find_date("we met last Friday and 上周五", WED) is None  # past weekdays are not due dates


@pytest.mark.parametrize("phrase", ["上个周五客户投诉了", "上个星期五", "上周末", "上个周末", "last week Friday",
                                    "on Friday last week", "last Friday"])
def test_past_weekdays_name_no_date(phrase: str) -> None:
    # Not the coming Friday or Sunday: a past day is no due date (docs/dates.md).
    assert find_date(phrase, WED_JAN_28) is None


@pytest.mark.parametrize(("phrase", "expected"), [
    ("下下周之前", date(2026, 2, 9)),  # the Monday of the week after next
    ("下下星期", date(2026, 2, 9)),
    ("下下周五", date(2026, 2, 13)),
    ("下周", date(2026, 2, 2)),
    ("下个周末", date(2026, 2, 8)),
    ("下下周末", date(2026, 2, 15)),
    ("这个周末", date(2026, 2, 1)),
])
def test_weeks_ahead_in_chinese(phrase: str, expected: date) -> None:
    assert find_date(phrase, WED_JAN_28) == expected
    assert resolve_date(phrase, WED_JAN_28) == expected


def test_find_date_reads_headers() -> None:
    assert find_date("2026-10-21(星期三)14:00-14:30", None) == date(2026, 10, 21)
    assert find_date("October 14, 2026, 10:00", None) == date(2026, 10, 14)
    assert find_date("no date here", None) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("October 21 at 10:00", time(10)), ("3pm", time(15)), ("at 9 am", time(9)), ("12 pm", time(12)),
    ("10 月 28 日 14:00", time(14)), ("下午2点半", time(14, 30)), ("上午9点", time(9)), ("no time", None),
    ("下午3:30", time(15, 30)), ("快一点", None), ("at 25:00 or 13pm", None),
])
def test_find_time(text: str, expected: time | None) -> None:
    assert find_time(text) == expected


# -- whole values, against today (from the schedule resolver) ------------------------------------------------


@pytest.mark.parametrize(("text", "today", "expected"), [
    # CONVENTION: "next Friday" is the Friday of the next week, like 下周五 (the schedule resolver said the first
    # Friday after today: 30 January; the minutes resolver and docs/minutes.md said next week's).
    ("next Friday", WED_JAN_28, date(2026, 2, 6)),
    ("next Friday", FRI_JAN_30, date(2026, 2, 6)),  # across the month end
    # CONVENTION: a bare weekday is the first such day after today, so "Friday" said on a Friday is a week later
    # (the schedule resolver said today; the minutes resolver "the next one"). "this Friday" is today.
    ("Friday", FRI_JAN_30, date(2026, 2, 6)),
    ("this Friday", FRI_JAN_30, date(2026, 1, 30)),
    ("this Friday", WED_JAN_28, date(2026, 1, 30)),
    ("by Friday", WED_JAN_28, date(2026, 1, 30)),
    ("next monday", date(2026, 12, 30), date(2027, 1, 4)),  # across the year end
    ("tomorrow", date(2026, 2, 28), date(2026, 3, 1)),
    ("tomorrow", date(2028, 2, 28), date(2028, 2, 29)),  # leap year
    ("the day after tomorrow", date(2026, 4, 29), date(2026, 5, 1)),
    ("in 3 days", date(2026, 1, 30), date(2026, 2, 2)),
    ("in two weeks", date(2026, 1, 28), date(2026, 2, 11)),
    ("in 2 months", date(2026, 12, 31), date(2027, 2, 28)),
    ("next week", WED_JAN_28, date(2026, 2, 2)),
    ("下周", WED_JAN_28, date(2026, 2, 2)),
    ("2026-03-05", WED_JAN_28, date(2026, 3, 5)),
    ("Dec 4", WED_JAN_28, date(2026, 12, 4)),
    ("4 January", WED_JAN_28, date(2027, 1, 4)),  # already past this year → next year
    ("December 3rd, 2027", WED_JAN_28, date(2027, 12, 3)),
    ("下周五", WED_JAN_28, date(2026, 2, 6)),  # Friday of next calendar week
    ("周五", WED_JAN_28, date(2026, 1, 30)),
    ("sat", WED_JAN_28, date(2026, 1, 31)),  # a whole value: the abbreviation is a weekday
    ("明天", date(2026, 1, 31), date(2026, 2, 1)),
    ("后天", date(2026, 1, 31), date(2026, 2, 2)),
    ("3天后", date(2026, 1, 30), date(2026, 2, 2)),
    ("2月3日", WED_JAN_28, date(2026, 2, 3)),
    ("31号", date(2026, 2, 5), date(2026, 3, 31)),  # February has no 31st
    ("周末前", WED_JAN_28, date(2026, 1, 30)),  # before the weekend: Friday
    ("周末", WED_JAN_28, date(2026, 2, 1)),
    ("by the end of the year", WED_JAN_28, date(2026, 12, 31)),
])
def test_resolve_date(text: str, today: date, expected: date) -> None:
    assert resolve_date(text, today) == expected


def test_one_rule_for_both_languages_on_every_day_of_a_week() -> None:
    for offset in range(7):
        today = date(2026, 1, 26) + timedelta(days=offset)  # Monday 26 January .. Sunday 1 February
        assert resolve_date("next Friday", today) == resolve_date("下周五", today) == date(2026, 2, 6)
        assert resolve_date("this Friday", today) == resolve_date("本周五", today)
        assert resolve_date("Friday", today) == resolve_date("周五", today) > today


@pytest.mark.parametrize("text", ["someday", "2026-02-30", "Feb 30", "", "next blursday", "Friday, October 16"])
def test_unknown_or_impossible_dates_are_clear_errors(text: str) -> None:
    with pytest.raises(InvalidRequest):
        resolve_date(text, WED_JAN_28)


@pytest.mark.parametrize(("text", "expected"), [
    ("3pm", time(15)), ("3:30 pm", time(15, 30)), ("11 a.m.", time(11)), ("15:45", time(15, 45)),
    ("noon", time(12)), ("下午3点半", time(15, 30)), ("上午10点", time(10)), ("晚上8点", time(20)),
    ("12am", time(0)), ("12pm", time(12)), ("周五3点", time(3)),
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


def test_time_words_in_a_dst_gap_and_exact_lengths() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 3, 28, 12, 0, tzinfo=berlin)
    gap = resolve_datetime("tomorrow 2:30", now)  # 02:30 is skipped that night: the instant reads 03:30 CEST
    assert gap.isoformat() == "2026-03-29T03:30:00+02:00"
    start = datetime(2026, 3, 29, 1, 30, tzinfo=berlin)
    assert add_exact(start, timedelta(hours=2)).isoformat() == "2026-03-29T04:30:00+02:00"  # not 03:30
    assert add_exact(datetime(2026, 3, 29, 1, 30), timedelta(hours=2)) == datetime(2026, 3, 29, 3, 30)  # floating


@pytest.mark.parametrize(("text", "expected"), [
    ("4pm", True), ("下午4点", True), ("16:00", True), ("at 11:30 am", True), ("tomorrow 4pm", False),
    ("2026-02-03 16:00", False), ("明天下午4点", False), ("Friday", False), ("25:00", False),
])
def test_is_time_only(text: str, expected: bool) -> None:
    assert is_time_only(text) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("2027-03-04", True), ("2027/03/04", True), ("2027年3月4日", True), ("March 4, 2027", True), ("Friday", True),
    ("下周五", True), ("tomorrow", True), ("in 3 days", True), ("2027-03-04 00:00", False),
    ("2027-03-04T10:00:00Z", False), ("tomorrow midnight", False), ("下周五下午3点", False), ("4pm", False),
    ("25:00", False), ("", False),
])
def test_is_day_only(text: str, expected: bool) -> None:
    # A listing window ending on a day so named includes that day (docs/dates.md).
    assert is_day_only(text) is expected


def test_durations() -> None:
    assert parse_duration_minutes(30) == 30
    assert parse_duration_minutes("1.5 hours") == 90
    assert parse_duration_minutes("45 min") == 45
    assert parse_duration_minutes("半小时") == 30
    for bad in (0, -5, "forever", True, 2000, 1.5, "9" * 5000):
        with pytest.raises(InvalidRequest):
            parse_duration_minutes(bad)


# -- the supported range and the error contract ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["0999-06-01 10:00", "0999-06-01", "0001-01-01 00:00", "9999-12-31 23:30",
                                  "9999-12-31T23:30:00Z", "1899-12-31", "3000-01-01 00:00", "in 99999 months",
                                  "in 99999 weeks"])
def test_dates_outside_the_range_are_refused_with_one_code(text: str) -> None:
    for zone in ("UTC", "Pacific/Kiritimati", "America/Adak"):
        with pytest.raises(InvalidRequest) as exc:
            resolve_datetime(text, datetime(2026, 1, 28, 12, tzinfo=ZoneInfo(zone)))
        assert exc.value.code == "date_out_of_range" and exc.value.param == "date", exc.value.message


def test_the_range_edges_are_accepted() -> None:
    utc = datetime(2026, 1, 28, 12, tzinfo=ZoneInfo("UTC"))
    assert resolve_datetime("1900-01-01 00:00", utc).date() == FIRST_DAY
    assert resolve_datetime("2999-12-31 23:59", utc).date() == LAST_DAY
    # Instants are ranged by their UTC date, whatever the zone they are written in.
    kiritimati = datetime(2026, 1, 28, 12, tzinfo=ZoneInfo("Pacific/Kiritimati"))  # +14:00 today
    assert resolve_datetime("2999-12-31 23:59", kiritimati).date() == LAST_DAY  # 09:59 UTC
    for text in ("2999-12-31T23:59:00-12:00", "1900-01-01T00:00:00+01:00"):
        with pytest.raises(InvalidRequest):
            resolve_datetime(text, kiritimati)
    assert check_day(LAST_DAY) == LAST_DAY
    with pytest.raises(InvalidRequest):
        check_day(LAST_DAY + timedelta(days=1))
    with pytest.raises(InvalidRequest):
        check_instant(datetime(999, 6, 1, 10, tzinfo=ZoneInfo("UTC")))


@pytest.mark.parametrize("today", [date(1, 1, 1), date(9999, 12, 31), FIRST_DAY, LAST_DAY])
@pytest.mark.parametrize("text", ["tomorrow", "yesterday", "next Friday", "下下周一", "end of next month",
                                  "in 14 months", "31号", "February 29", "the 31st", "in 99999 days"])
def test_the_contract_holds_at_the_ends_of_time(today: date, text: str) -> None:
    """Never ValueError or OverflowError: a date or InvalidRequest from resolve_date, a date or None from
    find_date, and whatever comes back is in the range."""
    found = find_date(text, today)
    assert found is None or FIRST_DAY <= found <= LAST_DAY
    try:
        resolved = resolve_date(text, today)
    except InvalidRequest:
        return
    assert FIRST_DAY <= resolved <= LAST_DAY and resolved == found
