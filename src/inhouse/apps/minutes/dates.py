"""Deterministic date resolution: "by Friday", "next Friday", "October 23", "月底", "下周五" → an ISO date.

The model only quotes the phrase someone said; this module turns it into a date relative to the meeting date,
so the same transcript always gives the same due dates. Rules (documented because people disagree on them):

* a bare weekday ("Friday", "by Friday", "周五") is the next such day strictly after the meeting day;
* "this Friday" / "本周五" / "这周五" is the Friday of the meeting's week (Monday-based), or the next one when
  that day has passed; "next Friday" / "下周五" is the Friday of the following week; "下下周五" the week after;
* a month and day without a year ("October 23", "10月23日", "23号") is in the meeting's year, unless that is
  more than 60 days before the meeting (then next year); a bare day of month is this month or the next;
* "end of the month" / "月底" is the month's last day; "end of (this) week" / "周末前" is Friday; "年底" Dec 31;
* "tomorrow", "today", "day after tomorrow", "in N days/weeks", "明天", "后天", "N天内/后".

An explicit date always wins over a relative phrase in the same text.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, timedelta

MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9
WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
# Abbreviations that are not also English words ("sat", "sun" are left out on purpose).
WEEKDAYS.update({"mon": 0, "tue": 1, "tues": 1, "wed": 2, "weds": 2, "thu": 3, "thur": 3, "thurs": 3, "fri": 4})
_ZH_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 6}
_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "fourteen": 14, "a couple of": 2, "a few": 3}
_ZH_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
              "十": 10}

_MONTH_NAMES = "|".join(sorted(MONTHS, key=len, reverse=True))
_DAY_NAMES = "|".join(sorted(WEEKDAYS, key=len, reverse=True))
_ORD = r"(?:st|nd|rd|th)?"

_ISO_RE = re.compile(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b")
_ZH_FULL_RE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]?")
_ZH_MD_RE = re.compile(r"(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]")
_ZH_DAY_RE = re.compile(r"(?<![月\d])(\d{1,2})\s*号")
_EN_MD_RE = re.compile(rf"\b({_MONTH_NAMES})\.?\s+(\d{{1,2}}){_ORD}\b(?:,?\s*(\d{{4}}))?", re.I)
_EN_DM_RE = re.compile(rf"\b(\d{{1,2}}){_ORD}\s+(?:of\s+)?({_MONTH_NAMES})\b\.?(?:,?\s*(\d{{4}}))?", re.I)
_EN_THE_DAY_RE = re.compile(r"\b(?:the\s+)(\d{1,2})(st|nd|rd|th)\b", re.I)
_EN_WEEKDAY_RE = re.compile(rf"\b(?:(this|next|coming|following)\s+(?:week\s+)?)?({_DAY_NAMES})\b\.?"
                            r"(?:\s+(next|after next)\s+week)?", re.I)
_ZH_WEEKDAY_RE = re.compile(r"(下下|下|本|这|这个|下个)?\s*(?:周|星期|礼拜)([一二三四五六日天])")
_IN_N_RE = re.compile(r"\bin\s+(\d+|a couple of|a few|an?|one|two|three|four|five|six|seven|eight|nine|ten|"
                      r"fourteen)\s+(day|week|month)s?\b", re.I)
_ZH_IN_N_RE = re.compile(r"([\d一二两三四五六七八九十]+)\s*(天|周|个星期|星期|个月)(?:内|后|之内|以内)")
_TIME_RE = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)|\b(\d{1,2}):(\d{2})\b", re.I)
_ZH_TIME_RE = re.compile(r"(上午|下午|晚上|中午)?\s*(\d{1,2})\s*(?:[:：](\d{2})|点(?:\s*(\d{1,2})\s*分?|半)?)")


def _safe_date(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None


def _near_year(m: int, d: int, ref: date | None) -> date | None:
    """A month and day without a year: the meeting's year, or the next when that is long past."""
    if ref is None:
        return None
    found = _safe_date(ref.year, m, d)
    if found is not None and found < ref - timedelta(days=60):
        found = _safe_date(ref.year + 1, m, d)
    return found


def parse_date_text(text: str, ref: date | None = None) -> date | None:
    """The first explicit calendar date in ``text`` (year optional when ``ref`` gives one), else None."""
    for pattern in (_ISO_RE, _ZH_FULL_RE):
        m = pattern.search(text)
        if m:
            found = _safe_date(int(m[1]), int(m[2]), int(m[3]))
            if found:
                return found
    m = _EN_MD_RE.search(text)
    if m:
        month, day, year = MONTHS[m[1].lower()], int(m[2]), m[3]
        found = _safe_date(int(year), month, day) if year else _near_year(month, day, ref)
        if found:
            return found
    m = _EN_DM_RE.search(text)
    if m:
        day, month, year = int(m[1]), MONTHS[m[2].lower()], m[3]
        found = _safe_date(int(year), month, day) if year else _near_year(month, day, ref)
        if found:
            return found
    m = _ZH_MD_RE.search(text)
    if m:
        found = _near_year(int(m[1]), int(m[2]), ref)
        if found:
            return found
    return None


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _add_months(day: date, n: int) -> date:
    y, m = divmod(day.month - 1 + n, 12)
    year, month = day.year + y, m + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _weekday(target: int, qualifier: str, ref: date) -> date:
    q = qualifier.lower()
    if q in ("next", "下", "下个", "following"):
        return week_start(ref) + timedelta(days=7 + target)
    if q in ("下下", "after next"):
        return week_start(ref) + timedelta(days=14 + target)
    if q in ("this", "本", "这", "这个", "coming"):
        this_week = week_start(ref) + timedelta(days=target)
        return this_week if this_week >= ref else this_week + timedelta(days=7)
    ahead = (target - ref.weekday()) % 7
    return ref + timedelta(days=ahead or 7)


def _count(word: str) -> int:
    word = word.lower()
    if word.isdigit():
        return int(word)
    if word in _NUMBER_WORDS:
        return _NUMBER_WORDS[word]
    # Chinese numerals up to 99: 十 / 十五 / 二十 / 两
    if "十" in word:
        tens, _, ones = word.partition("十")
        return (_ZH_DIGITS.get(tens, 1) if tens else 1) * 10 + (_ZH_DIGITS.get(ones, 0) if ones else 0)
    return sum(_ZH_DIGITS.get(ch, 0) for ch in word)


def resolve_date(text: str, ref: date | None) -> date | None:
    """The date ``text`` names, relative to ``ref`` (the meeting date). None when it names none, or when it
    is relative and there is no reference date."""
    if not text or not text.strip():
        return None
    explicit = parse_date_text(text, ref)
    if explicit is not None:
        return explicit
    if ref is None:
        return None
    low = text.lower()
    m = _EN_WEEKDAY_RE.search(text)
    if m:
        qualifier = m[1] or m[3] or ""
        return _weekday(WEEKDAYS[m[2].lower()], qualifier, ref)
    m = _ZH_WEEKDAY_RE.search(text)
    if m:
        target = _ZH_WEEKDAYS[m[2]]
        if m[2] == "末" or m[2] in "日天":
            target = 6
        return _weekday(target, m[1] or "", ref)
    if "周末" in text or "本周末" in text:
        base = week_start(ref) + timedelta(days=6)
        return base + timedelta(days=7) if "下周末" in text else base
    for phrase, delta in (("day after tomorrow", 2), ("tomorrow", 1), ("today", 0), ("tonight", 0),
                          ("end of day", 0), ("eod", 0)):
        if re.search(rf"\b{phrase}\b", low):
            return ref + timedelta(days=delta)
    for phrase, delta in (("大后天", 3), ("后天", 2), ("明天", 1), ("明日", 1), ("今天", 0), ("今日", 0), ("当天", 0)):
        if phrase in text:
            return ref + timedelta(days=delta)
    if re.search(r"\bend of (?:the )?next month\b", low) or "下月底" in text or "下个月底" in text:
        return month_end(_add_months(ref.replace(day=1), 1))
    if re.search(r"\b(?:end of (?:the |this )?month|month[- ]end)\b", low) or "月底" in text or "月末" in text:
        return month_end(ref)
    if re.search(r"\b(?:beginning|start) of next month\b", low) or "下月初" in text or "下个月初" in text:
        return _add_months(ref.replace(day=1), 1)
    if re.search(r"\bend of (?:the )?next week\b", low):
        return week_start(ref) + timedelta(days=7 + 4)
    if re.search(r"\bend of (?:the |this )?week\b", low) or "周末前" in text or "本周内" in text:
        return week_start(ref) + timedelta(days=4)
    if re.search(r"\bnext week\b", low) or "下周" in text:
        return week_start(ref) + timedelta(days=7 + 4)  # "by next week": the end of that working week
    if re.search(r"\b(?:end of (?:the |this )?year|year[- ]end)\b", low) or "年底" in text or "年末" in text:
        return date(ref.year, 12, 31)
    m = _IN_N_RE.search(text)
    if m:
        n, unit = _count(m[1]), m[2].lower()
        return _add_months(ref, n) if unit == "month" else ref + timedelta(days=n * (7 if unit == "week" else 1))
    m = _ZH_IN_N_RE.search(text)
    if m:
        n, unit = _count(m[1]), m[2]
        return _add_months(ref, n) if "月" in unit else ref + timedelta(days=n * (1 if unit == "天" else 7))
    m = _EN_THE_DAY_RE.search(text) or _ZH_DAY_RE.search(text)
    if m:
        day = int(m[1])
        found = _safe_date(ref.year, ref.month, day)
        if found is None or found < ref:
            nxt = _add_months(ref.replace(day=1), 1)
            found = _safe_date(nxt.year, nxt.month, day)
        return found
    return None


def resolve_time(text: str) -> str | None:
    """A clock time in ``text`` as ``HH:MM`` ("10:00", "3pm", "下午2点半", "14:00"), else None."""
    m = _TIME_RE.search(text)
    if m:
        if m[3]:
            hour, minute = int(m[1]), int(m[2] or 0)
            pm = m[3].lower().startswith("p")
            hour = hour % 12 + (12 if pm else 0)
        else:
            hour, minute = int(m[4]), int(m[5])
        if hour < 24 and minute < 60:
            return f"{hour:02d}:{minute:02d}"
    z = _ZH_TIME_RE.search(text)
    if z and (z[1] or z[3] or "点" in z[0]):
        hour = int(z[2])
        minute = int(z[3] or z[4] or (30 if z[0].endswith("半") else 0))
        if z[1] in ("下午", "晚上") and hour < 12:
            hour += 12
        if hour < 24 and minute < 60:
            return f"{hour:02d}:{minute:02d}"
    return None
