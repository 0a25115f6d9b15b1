"""Dates and times from words, resolved deterministically in the user's time zone (no model does date maths).

``resolve_date("next Friday", today)`` and ``resolve_datetime("tomorrow 3pm", now)`` understand English and
Chinese: ISO dates and date-times, today / tomorrow / the day after tomorrow, in N days / weeks, weekday names,
``next week``, month-day forms (``Dec 4``, ``4 December 2026``, ``12月4日``, ``4号``) and clock times (``3pm``,
``15:30``, ``noon``, ``下午3点半``). Unrecognised text raises ``InvalidRequest`` naming what was not understood.

Conventions (documented, tested): ``Friday`` / ``this Friday`` / ``by Friday`` / ``周五`` is the first Friday on or
after today; ``next Friday`` is the first Friday strictly after today; ``下周五`` is the Friday of next calendar
week (Monday-Sunday), which is what the Chinese phrase means. A month-day without a year is the next such date
on or after today.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from inhouse.errors import InvalidRequest

WEEKDAYS = {
    "monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2, "thursday": 3, "thu": 3,
    "thur": 3, "thurs": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5, "sunday": 6, "sun": 6,
}
_ZH_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4, "may": 5,
    "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sep": 9, "sept": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}
_ZH_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
              "十": 10}
_WD = "|".join(sorted(WEEKDAYS, key=len, reverse=True))
_MON = "|".join(sorted(MONTHS, key=len, reverse=True))
_NUM_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
              "ten": 10, "a": 1, "an": 1}
MAX_TEXT = 200


def _zh_number(text: str) -> int:
    if text.isdigit():
        return int(text)
    if text == "十":
        return 10
    if text.startswith("十"):
        return 10 + _ZH_DIGITS[text[1]]
    if text.endswith("十"):
        return _ZH_DIGITS[text[0]] * 10
    if "十" in text:
        tens, ones = text.split("十")
        return _ZH_DIGITS[tens] * 10 + _ZH_DIGITS[ones]
    return _ZH_DIGITS[text]


def _weekday_on_or_after(today: date, weekday: int) -> date:
    return today + timedelta(days=(weekday - today.weekday()) % 7)


def _weekday_after(today: date, weekday: int) -> date:
    return today + timedelta(days=(weekday - today.weekday()) % 7 or 7)


def _next_week(today: date, weekday: int) -> date:
    monday = today - timedelta(days=today.weekday()) + timedelta(days=7)
    return monday + timedelta(days=weekday)


def _month_day(today: date, month: int, day: int, year: int | None) -> date:
    try:
        if year is not None:
            return date(year, month, day)
        candidate = date(today.year, month, day)
        return candidate if candidate >= today else date(today.year + 1, month, day)
    except ValueError:
        raise InvalidRequest(f"There is no day {day} in month {month}.", param="date") from None


_EN_RELATIVE = {"today": 0, "tonight": 0, "tomorrow": 1, "tmrw": 1, "day after tomorrow": 2,
                "the day after tomorrow": 2, "yesterday": -1}
_ZH_RELATIVE = {"今天": 0, "今日": 0, "今晚": 0, "明天": 1, "明日": 1, "明早": 1, "明晚": 1, "后天": 2, "大后天": 3,
                "昨天": -1}


def resolve_date(text: str, today: date) -> date:
    """A calendar date from words (see the module docstring for the conventions)."""
    raw = text.strip()
    t = re.sub(r"\s+", " ", raw.lower()).strip(" ,.")
    t = re.sub(r"^(on|by|before|until|due|for|from|starting) ", "", t)
    if not t:
        raise InvalidRequest("An empty date.", param="date")
    if len(t) > MAX_TEXT:
        raise InvalidRequest("That date is too long to be a date.", param="date")
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", t) or re.fullmatch(r"(\d{4})/(\d{1,2})/(\d{1,2})", t)
    if m:
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            raise InvalidRequest(f"'{raw}' is not a real date.", param="date") from None
    if t in _EN_RELATIVE:
        return today + timedelta(days=_EN_RELATIVE[t])
    if t in _ZH_RELATIVE:
        return today + timedelta(days=_ZH_RELATIVE[t])
    m = re.fullmatch(r"in (\d+|" + "|".join(_NUM_WORDS) + r") (day|days|week|weeks)", t)
    if m:
        n = int(m[1]) if m[1].isdigit() else _NUM_WORDS[m[1]]
        return today + timedelta(days=n * (7 if m[2].startswith("week") else 1))
    m = re.fullmatch(r"([\d一二两三四五六七八九十]+)(天|周|个星期|星期)[之以]?后", t)
    if m:
        return today + timedelta(days=_zh_number(m[1]) * (1 if m[2] == "天" else 7))
    m = re.fullmatch(rf"(this |coming |this coming |next )?({_WD})", t)
    if m:
        wd = WEEKDAYS[m[2]]
        return _weekday_after(today, wd) if m[1] == "next " else _weekday_on_or_after(today, wd)
    if t in ("next week", "下周", "下星期", "下礼拜"):
        return _next_week(today, 0)
    m = re.fullmatch(r"(下|这|本)?(?:个)?(周|星期|礼拜)([一二三四五六日天])", t)
    if m:
        wd = _ZH_WEEKDAYS[m[3]]
        return _next_week(today, wd) if m[1] == "下" else _weekday_on_or_after(today, wd)
    m = re.fullmatch(rf"({_MON})\.? (\d{{1,2}})(?:st|nd|rd|th)?(?:,? (\d{{4}}))?", t)
    if m:
        return _month_day(today, MONTHS[m[1]], int(m[2]), int(m[3]) if m[3] else None)
    m = re.fullmatch(rf"(?:the )?(\d{{1,2}})(?:st|nd|rd|th)?(?: of)? ({_MON})\.?(?:,? (\d{{4}}))?", t)
    if m:
        return _month_day(today, MONTHS[m[2]], int(m[1]), int(m[3]) if m[3] else None)
    m = re.fullmatch(r"(?:(\d{4})年)?(\d{1,2})月(\d{1,2})[日号]?", t)
    if m:
        return _month_day(today, int(m[2]), int(m[3]), int(m[1]) if m[1] else None)
    m = re.fullmatch(r"(\d{1,2})[日号]", t)
    if m:
        day = int(m[1])
        y, mo = today.year, today.month
        for _ in range(13):  # the next month (from this one) that has this day on or after today
            try:
                d = date(y, mo, day)
                if d >= today:
                    return d
            except ValueError:
                pass
            y, mo = (y + 1, 1) if mo == 12 else (y, mo + 1)
        raise InvalidRequest(f"There is no day {day} in any month.", param="date")
    raise InvalidRequest(f"Could not understand the date '{raw[:80]}'. Use YYYY-MM-DD, 'tomorrow', 'next Friday'…",
                         param="date")


_TIME_PATTERNS = [
    # 3pm, 3:30 pm, 11 a.m.
    (re.compile(r"\b(?:at )?(\d{1,2})(?::(\d{2}))? ?([ap])\.?m\.?(?![a-z])"), "ampm"),
    # 15:30, at 9:00
    (re.compile(r"\b(?:at )?(\d{1,2}):(\d{2})(?::\d{2})?\b"), "24h"),
    (re.compile(r"\b(?:at )?(noon|midday|midnight)\b"), "named"),
    # 下午3点半, 上午10点, 15点30分, 晚上8点
    (re.compile(r"(凌晨|早上|上午|中午|下午|晚上)?([\d一二两三四五六七八九十]{1,3})[点點时](半|[\d一二三四五六七八九十]{1,3}分?)?"),
     "zh"),
]


def extract_time(text: str) -> tuple[time | None, str]:
    """The clock time in ``text`` (None when there is none) and the text without it."""
    t = text.lower()
    for pattern, kind in _TIME_PATTERNS:
        m = pattern.search(t)
        if not m:
            continue
        rest = (t[: m.start()] + " " + t[m.end():]).strip()
        try:
            if kind == "ampm":
                hour, minute = int(m[1]), int(m[2] or 0)
                if not 1 <= hour <= 12:
                    raise ValueError
                hour = hour % 12 + (12 if m[3] == "p" else 0)
            elif kind == "24h":
                hour, minute = int(m[1]), int(m[2])
            elif kind == "named":
                hour, minute = (0, 0) if m[1] == "midnight" else (12, 0)
            else:
                hour = _zh_number(m[2])
                minute = 30 if m[3] == "半" else (_zh_number(m[3].rstrip("分")) if m[3] else 0)
                if (m[1] in ("下午", "晚上") and hour < 12) or (m[1] == "中午" and hour < 6):
                    hour += 12
            return time(hour, minute), rest
        except (ValueError, KeyError):
            raise InvalidRequest(f"'{m[0].strip()}' is not a valid time of day.", param="time") from None
    return None, text.strip()


def resolve_datetime(text: str, now: datetime, *, default_time: time = time(9, 0)) -> datetime:
    """An aware date-time in ``now``'s zone. An ISO value with an offset keeps its instant (converted to the zone);
    one without an offset is read in the zone. A date without a time gets ``default_time``."""
    if now.tzinfo is None:
        raise ValueError("now must be aware")
    raw = text.strip()
    if not raw:
        raise InvalidRequest("An empty date/time.", param="date")
    iso = raw.replace(" ", "T", 1) if re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{1,2}:\d{2}.*", raw) else raw
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T.*", iso):
        try:
            value = datetime.fromisoformat(iso.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest(f"'{raw[:80]}' is not a valid ISO date-time.", param="date") from None
        return value.astimezone(now.tzinfo) if value.tzinfo else value.replace(tzinfo=now.tzinfo)
    at, rest = extract_time(raw)
    rest = re.sub(r"\b(at|on)\s*$", "", rest).strip(" ,")
    day = resolve_date(rest, now.date()) if rest else now.date()
    return _in_zone(day, at or default_time, now)


def _in_zone(day: date, at: time, now: datetime) -> datetime:
    # Through UTC so a wall-clock time skipped by DST becomes a real instant.
    return datetime.combine(day, at).replace(tzinfo=now.tzinfo).astimezone(now.tzinfo)


def parse_duration_minutes(value: object, *, param: str = "duration_minutes") -> int:
    """A positive whole number of minutes, from an int or text like '30', '45 min', '1h', '1.5 hours', '半小时'."""
    if isinstance(value, bool):
        raise InvalidRequest(f"'{param}' must be a number of minutes.", param=param)
    if isinstance(value, int | float):
        minutes = float(value)
    elif isinstance(value, str):
        t = value.strip().lower()
        zh = {"半小时": 30, "一小时": 60, "一个小时": 60, "两小时": 120, "两个小时": 120}
        if t in zh:
            minutes = float(zh[t])
        else:
            m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(m|min|mins|minutes?|分钟|h|hr|hrs|hours?|小时)?", t)
            if not m:
                raise InvalidRequest(f"'{value[:40]}' is not a duration; give minutes, e.g. 30.", param=param)
            minutes = float(m[1]) * (60 if m[2] and m[2][0] in "h小" else 1)
    else:
        raise InvalidRequest(f"'{param}' must be a number of minutes.", param=param)
    if not 1 <= minutes <= 24 * 60 or minutes != int(minutes):
        raise InvalidRequest(f"'{param}' must be a whole number of minutes between 1 and 1440.", param=param)
    return int(minutes)
