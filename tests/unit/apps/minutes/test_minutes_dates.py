from __future__ import annotations

from datetime import date

import pytest

from inhouse.apps.minutes.dates import parse_date_text, resolve_date, resolve_time

WED = date(2026, 10, 14)  # a Wednesday


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
    ("next week", date(2026, 10, 23)),
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
def test_resolves_against_the_meeting_date(phrase: str, expected: date) -> None:
    assert resolve_date(phrase, WED) == expected


def test_next_friday_across_a_month_end() -> None:
    meeting = date(2026, 10, 28)  # Wednesday of the last week of October
    assert resolve_date("next Friday", meeting) == date(2026, 11, 6)
    assert resolve_date("by Friday", meeting) == date(2026, 10, 30)
    assert resolve_date("下周五", meeting) == date(2026, 11, 6)
    assert resolve_date("by Friday", date(2026, 10, 30)) == date(2026, 11, 6)  # said on a Friday: the next one
    assert resolve_date("下周五", date(2026, 12, 30)) == date(2027, 1, 8)  # across a year end
    assert resolve_date("月底", date(2026, 2, 3)) == date(2026, 2, 28)
    assert resolve_date("end of the month", date(2028, 2, 3)) == date(2028, 2, 29)


def test_month_day_without_year_rolls_over_only_when_long_past() -> None:
    assert resolve_date("January 5", date(2026, 12, 20)) == date(2027, 1, 5)
    assert resolve_date("December 1", date(2026, 12, 20)) == date(2026, 12, 1)


def test_nothing_to_resolve() -> None:
    assert resolve_date("", WED) is None
    assert resolve_date("as soon as possible", WED) is None
    assert resolve_date("Friday", None) is None  # relative, with no reference
    assert resolve_date("2026-10-30", None) == date(2026, 10, 30)
    assert resolve_date("we sat down on the sun deck", WED) is None  # no "sat"/"sun" weekday abbreviations
    assert resolve_date("February 30", WED) is None


def test_parse_date_text_reads_headers() -> None:
    assert parse_date_text("2026-10-21(星期三)14:00-14:30") == date(2026, 10, 21)
    assert parse_date_text("October 14, 2026, 10:00") == date(2026, 10, 14)
    assert parse_date_text("no date here") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("October 21 at 10:00", "10:00"), ("3pm", "15:00"), ("at 9 am", "09:00"), ("12 pm", "12:00"),
    ("10 月 28 日 14:00", "14:00"), ("下午2点半", "14:30"), ("上午9点", "09:00"), ("no time", None),
])
def test_resolve_time(text: str, expected: str | None) -> None:
    assert resolve_time(text) == expected
