"""Dates and times from English and Chinese words, resolved deterministically (no model does date maths).

One resolver for every assistant: the minutes (due dates relative to the meeting day) and the schedule (event
times in the caller's zone). ``today`` is the reference day: the meeting's date, or the caller's local date.

**Conventions** (also in docs/dates.md; a week runs Monday to Sunday):

* a bare weekday — ``Friday``, ``by Friday``, ``周五``, ``星期五`` — is the first such day *after* today (said on
  a Friday, it means a week later; say ``today`` or ``this Friday`` for today);
* ``this Friday`` / ``coming Friday`` / ``本周五`` / ``这周五`` is the Friday of the current week, or of the next
  week once this week's has passed (the first Friday on or after today);
* ``next Friday`` / ``Friday next week`` / ``下周五`` / ``下个周五`` is the Friday of the next week, the same rule
  in both languages (said on Wednesday 28 January 2026: Friday 6 February); ``Friday after next`` / ``下下周五``
  the week after that;
* ``next week`` / ``下周`` is the Monday of the next week; ``end of (this) week`` / ``周末前`` / ``本周内`` is this
  week's Friday (next week's once it has passed), ``end of next week`` the next week's Friday; ``周末`` /
  ``本周末`` is this week's Sunday, ``下周末`` the next week's; ``下下周`` is the Monday of the week after next;
* a month and day without a year — ``Dec 4``, ``4 December``, ``12月4日`` — is the first such date on or after
  today; a bare day of the month — ``the 23rd``, ``23号`` — the first month, from this one, that has that day on or
  after today;
* ``today`` / ``tonight`` / ``end of day`` / ``今天`` 0, ``tomorrow`` / ``明天`` 1, ``the day after tomorrow`` /
  ``后天`` 2, ``大后天`` 3, ``yesterday`` / ``昨天`` -1 days; ``in N days/weeks/months`` / ``N天内`` / ``N周后``
  / ``N个月内`` (a month keeps the day, or the month's last day);
* ``end of the month`` / ``月底`` / ``月末``, ``end of next month`` / ``下月底``, ``start of next month`` /
  ``下月初``, ``end of the year`` / ``年底``;
* explicit dates: ``2026-12-04`` (also ``/`` or ``.``), ``2026年12月4日``, ``December 4, 2026``,
  ``4 December 2026``. In text that also holds a relative phrase, the explicit date wins.

**One error contract.** ``resolve_date``, ``resolve_datetime``, ``extract_time`` and ``parse_duration_minutes``
read a value that must be a date, time or duration: anything else raises ``InvalidRequest`` (``param`` names what
was read; code ``date_out_of_range`` for a real date outside the supported range), never ``ValueError`` or
``OverflowError``. ``find_date`` and ``find_time`` search prose (a transcript line) and return None when it names
no valid date or time.

**The supported range.** Every date returned lies in ``FIRST_DAY``..``LAST_DAY`` (1900-01-01..2999-12-31), and
every instant returned has its UTC date in that range: far enough from ``datetime``'s own limits (years 1 and
9999) that adding a zone offset, a week or a 92-day search window can never overflow, and wide enough for any
calendar. ``check_day`` and ``check_instant`` apply the same range to values that arrive as ``date`` or
``datetime`` objects (an imported calendar, a stored event).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from inhouse.apps.numerals import zh_number
from inhouse.errors import InvalidRequest

FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2999, 12, 31)
MAX_TEXT = 200

MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9
WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
WEEKDAYS.update({"mon": 0, "tue": 1, "tues": 1, "wed": 2, "weds": 2, "thu": 3, "thur": 3, "thurs": 3, "fri": 4,
                 "sat": 5, "sun": 6})
# In prose, "sat" and "sun" are English words far more often than weekdays ("we sat down on the sun deck").
_PROSE_WEEKDAYS = {k: v for k, v in WEEKDAYS.items() if k not in ("sat", "sun")}
_ZH_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "fourteen": 14, "a couple of": 2, "a few": 3}


def _alternatives(words: dict[str, int]) -> str:
    return "|".join(sorted(map(re.escape, words), key=len, reverse=True))


# -- the supported range ---------------------------------------------------------------------------------------


def _out_of_range(what: object, param: str) -> InvalidRequest:
    return InvalidRequest(f"{what} is outside the supported dates ({FIRST_DAY.isoformat()} to "
                          f"{LAST_DAY.isoformat()}).", code="date_out_of_range", param=param)


def in_range(day: date) -> bool:
    return FIRST_DAY <= day <= LAST_DAY


def check_day(day: date, param: str = "date") -> date:
    """``day`` when it is in the supported range, else ``InvalidRequest`` (code ``date_out_of_range``)."""
    if not in_range(day):
        raise _out_of_range(day.isoformat(), param)
    return day


def check_instant(value: datetime, param: str = "start") -> datetime:
    """``value`` when its date in UTC is in the supported range: one rule whatever the zone, so a stored event's
    own export (written in UTC) always imports again."""
    try:
        day = value.astimezone(UTC).date() if value.tzinfo is not None else value.date()
    except OverflowError:  # year 1 or 9999 pushed past the ends of datetime by the offset
        raise _out_of_range(value.isoformat(timespec="minutes"), param) from None
    if not in_range(day):
        raise _out_of_range(value.isoformat(timespec="minutes"), param)
    return value


# -- calendar arithmetic ---------------------------------------------------------------------------------------


def week_start(day: date) -> date:
    """The Monday of ``day``'s week."""
    return day - timedelta(days=day.weekday())


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def add_months(day: date, n: int) -> date:
    """``day`` n months later; the day of the month is kept, or becomes the month's last day."""
    y, m = divmod(day.month - 1 + n, 12)
    year, month = day.year + y, m + 1
    if not 1 <= year <= 9999:
        raise OverflowError("date value out of range")
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def weekday_on(today: date, weekday: int, qualifier: str) -> date:
    """A weekday by the conventions above: qualifier ``""`` (bare), ``this``, ``next`` or ``after next``."""
    if qualifier == "next":
        return week_start(today) + timedelta(days=7 + weekday)
    if qualifier == "after next":
        return week_start(today) + timedelta(days=14 + weekday)
    ahead = (weekday - today.weekday()) % 7
    if qualifier == "this":
        return today + timedelta(days=ahead)
    return today + timedelta(days=ahead or 7)


def add_exact(value: datetime, delta: timedelta) -> datetime:
    """``value`` plus ``delta`` of elapsed time, in ``value``'s zone. Aware ``+`` adds wall-clock time, so across a
    DST change "two hours" would last one or three; through UTC it lasts two. A naive value has no DST."""
    if value.tzinfo is None:
        return value + delta
    return (value.astimezone(UTC) + delta).astimezone(value.tzinfo)


def _month_day(today: date | None, month: int, day: int, year: str | None) -> date | None:
    if year:
        return date(int(year), month, day)
    if today is None:
        return None  # a month and day need a reference year
    date(2000, month, day)  # ValueError for a day no year has (February 30); 2000 was a leap year
    for y in range(today.year, today.year + 9):  # February 29 may wait 8 years (2100 is no leap year)
        if day <= calendar.monthrange(y, month)[1] and date(y, month, day) >= today:
            return date(y, month, day)
    return None


def _day_of_month(today: date, day: int) -> date:
    y, m = today.year, today.month
    for _ in range(13):  # the first month, from this one, that has this day on or after today
        if day <= calendar.monthrange(y, m)[1] and date(y, m, day) >= today:
            return date(y, m, day)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    raise ValueError(f"there is no day {day} in any month")


def _count(word: str) -> int:
    """A count in digits, English words or Chinese numerals up to 99 (十, 十五, 二十, 两)."""
    word = word.lower()
    if word.isdigit():
        return int(word)
    if word in _NUMBER_WORDS:
        return _NUMBER_WORDS[word]
    value = zh_number(word)
    if value is None or value != int(value):
        raise ValueError(f"not a count: {word!r}")
    return int(value)


# -- the grammar: one rule per phrase shape --------------------------------------------------------------------

Handler = Callable[[re.Match[str], "date | None"], "date | None"]


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    resolve: Handler  # None when the words need a reference day and there is none
    prose: bool = True  # also searched for in prose (find_date)


def _relative(fn: Callable[[re.Match[str], date], date]) -> Handler:
    """A handler for words that only mean a date relative to today."""

    def handler(m: re.Match[str], today: date | None) -> date | None:
        return None if today is None else fn(m, today)

    return handler


_ORD = r"(?:st|nd|rd|th)?"
_MON = _alternatives(MONTHS)
_ZH_NUM = "[\\d一二两三四五六七八九十]"
_CLOCK_NUM = "(?:\\d{1,2}|[一二两三四五六七八九十]{1,3})"  # digits or numerals, never mixed ("周五3点" is 3:00)
_QUALIFIERS = {"this": "this", "coming": "this", "this coming": "this", "next": "next", "following": "next",
               "after next": "after next", "本": "this", "这": "this", "这个": "this", "下": "next", "下个": "next",
               "下下": "after next"}


def _en_weekday_pattern(names: dict[str, int]) -> re.Pattern[str]:
    # "last Friday", "last week Friday", "Friday last week" are past days: no match at all (not the coming Friday).
    return re.compile(r"(?<!last\s)(?<!last\sweek\s)"
                      r"\b(?:(this coming|this|coming|next|following)\s+(?:week\s+)?)?"
                      rf"({_alternatives(names)})\b\.?(?!\s+(?:of\s+)?last\s+week\b)"
                      r"(?:\s+(?:of\s+)?(?:(next|this)\s+week|(after next)(?:\s+week)?))?", re.I)


def _en_weekday(m: re.Match[str], today: date) -> date:
    qualifier = (m[1] or "").lower() or (m[3] or "").lower() or (m[4] or "").lower()
    return weekday_on(today, WEEKDAYS[m[2].lower()], _QUALIFIERS.get(qualifier, ""))


def _zh_weekday(m: re.Match[str], today: date) -> date:
    return weekday_on(today, _ZH_WEEKDAYS[m[2]], _QUALIFIERS.get(m[1] or "", ""))


def _in_n(m: re.Match[str], today: date) -> date:
    n, unit = _count(m[1]), m[2].lower()
    if unit.startswith("month") or "月" in unit:
        return add_months(today, n)
    return today + timedelta(days=n * (7 if unit.startswith("week") or unit in ("周", "个星期", "星期") else 1))


_DAY_WORDS = {"the day after tomorrow": 2, "day after tomorrow": 2, "tomorrow": 1, "tmrw": 1, "today": 0,
              "tonight": 0, "end of day": 0, "eod": 0, "yesterday": -1, "大后天": 3, "后天": 2, "明天": 1, "明日": 1,
              "明早": 1, "明晚": 1, "今天": 0, "今日": 0, "今晚": 0, "当天": 0, "昨天": -1}

RULES: tuple[_Rule, ...] = (
    # Explicit dates first: in prose they win over any relative phrase beside them.
    _Rule(re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)"),
          lambda m, t: date(int(m[1]), int(m[2]), int(m[3]))),
    _Rule(re.compile(r"(?<!\d)(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]?"),
          lambda m, t: date(int(m[1]), int(m[2]), int(m[3]))),
    _Rule(re.compile(rf"\b({_MON})\.?\s+(\d{{1,2}}){_ORD}\b(?:,?\s*(\d{{4}})\b)?", re.I),
          lambda m, t: _month_day(t, MONTHS[m[1].lower()], int(m[2]), m[3])),
    _Rule(re.compile(rf"\b(?:the\s+)?(\d{{1,2}}){_ORD}\s+(?:of\s+)?({_MON})\b\.?(?:,?\s*(\d{{4}})\b)?", re.I),
          lambda m, t: _month_day(t, MONTHS[m[2].lower()], int(m[1]), m[3])),
    _Rule(re.compile(r"(?<!\d)(\d{1,2})\s*月\s*(\d{1,2})(?:\s*[日号])?(?!\d)"),
          lambda m, t: _month_day(t, int(m[1]), int(m[2]), None)),
    # Weekdays.
    _Rule(_en_weekday_pattern(_PROSE_WEEKDAYS), _relative(_en_weekday)),
    _Rule(_en_weekday_pattern(WEEKDAYS), _relative(_en_weekday), prose=False),
    # 上周五, 上个星期五: a past day, no match (a bare 周五 inside them would be the coming Friday).
    _Rule(re.compile(r"(?<!上)(?<!上个)(下下|下个|下|这个|这|本)?\s*(?:周|星期|礼拜)([一二三四五六日天])"),
          _relative(_zh_weekday)),
    # Weeks.
    _Rule(re.compile(r"周末前|本周内|\b(?:the\s+)?end\s+of\s+(?:the\s+|this\s+)?week\b", re.I),
          _relative(lambda m, t: weekday_on(t, 4, "this"))),
    _Rule(re.compile(r"\b(?:the\s+)?end\s+of\s+(?:the\s+)?next\s+week\b", re.I),
          _relative(lambda m, t: weekday_on(t, 4, "next"))),
    _Rule(re.compile(r"下下个?周末"), _relative(lambda m, t: week_start(t) + timedelta(days=20))),
    _Rule(re.compile(r"(?<!下)下个?周末"), _relative(lambda m, t: week_start(t) + timedelta(days=13))),
    _Rule(re.compile(r"(?<![上下])(?<!上个)(?<!下个)(?:本|这个|这)?周末"),  # 上(个)周末 is past: no match
          _relative(lambda m, t: week_start(t) + timedelta(days=6))),
    # Days.
    _Rule(re.compile("|".join(rf"\b{re.escape(w)}\b" if w.isascii() else re.escape(w)
                              for w in sorted(_DAY_WORDS, key=len, reverse=True)), re.I),
          _relative(lambda m, t: t + timedelta(days=_DAY_WORDS[" ".join(m[0].lower().split())]))),
    # Months and years.
    _Rule(re.compile(r"\b(?:the\s+)?end\s+of\s+(?:the\s+)?next\s+month\b|下个?月底|下个?月末", re.I),
          _relative(lambda m, t: month_end(add_months(t.replace(day=1), 1)))),
    _Rule(re.compile(r"\b(?:the\s+)?end\s+of\s+(?:the\s+|this\s+)?month\b|\bmonth[- ]end\b|月底|月末", re.I),
          _relative(lambda m, t: month_end(t))),
    _Rule(re.compile(r"\b(?:the\s+)?(?:beginning|start)\s+of\s+(?:the\s+)?next\s+month\b|下个?月初", re.I),
          _relative(lambda m, t: add_months(t.replace(day=1), 1))),
    _Rule(re.compile(r"\b(?:the\s+)?end\s+of\s+(?:the\s+|this\s+)?year\b|\byear[- ]end\b|年底|年末", re.I),
          _relative(lambda m, t: date(t.year, 12, 31))),
    _Rule(re.compile(r"下下(?:周|星期|礼拜)"), _relative(lambda m, t: week_start(t) + timedelta(days=14))),
    _Rule(re.compile(r"\bnext\s+week\b|(?<!下)(?:下周|下星期|下礼拜)", re.I),
          _relative(lambda m, t: week_start(t) + timedelta(days=7))),
    # Counts of days, weeks, months.
    _Rule(re.compile(rf"\bin\s+(\d{{1,5}}|{_alternatives(_NUMBER_WORDS)})\s+(day|week|month)s?\b", re.I),
          _relative(_in_n)),
    _Rule(re.compile(rf"({_ZH_NUM}{{1,5}})\s*(天|日|周|个星期|星期|个月)(?:之内|以内|之后|以后|内|后)"),
          _relative(_in_n)),
    # A day of the month.
    _Rule(re.compile(r"\b(?:the\s+)(\d{1,2})(?:st|nd|rd|th)\b|(?<![月\d])(\d{1,2})\s*[日号]", re.I),
          _relative(lambda m, t: _day_of_month(t, int(m[1] or m[2])))),
)


def _apply(rule: _Rule, m: re.Match[str], today: date | None) -> date | None:
    """The rule's date for this match; None when the words name no real date (February 30) or leave the range."""
    try:
        found = rule.resolve(m, today)
    except (ValueError, OverflowError, KeyError):
        return None
    return found if found is not None and in_range(found) else None


def find_date(text: str, today: date | None) -> date | None:
    """The first date named in prose (a transcript line, a header), relative to ``today``; None when it names
    none. Without ``today`` only dates with a year count. Never raises for any text."""
    if not text or not text.strip():
        return None
    for rule in RULES:
        if not rule.prose:
            continue
        for m in rule.pattern.finditer(text):
            found = _apply(rule, m, today)
            if found is not None:
                return found
    return None


_LEAD_IN = re.compile(r"^(?:on|by|before|until|till|due|for|from|starting|no later than|在|于)\s*", re.I)
_ZH_BEFORE = re.compile(r"\s*(?:之前|以前|前)$")


def resolve_date(text: str, today: date, *, param: str = "date") -> date:
    """The date that ``text`` as a whole names (``by``/``before``/``前`` aside), relative to ``today``.
    Unknown words, impossible and out-of-range dates raise ``InvalidRequest``."""
    raw = text.strip() if isinstance(text, str) else ""
    t = re.sub(r"\s+", " ", raw).strip(" ,.")
    t = _LEAD_IN.sub("", t).strip(" ,.")
    if not t:
        raise InvalidRequest("An empty date.", param=param)
    if len(t) > MAX_TEXT:
        raise InvalidRequest("That is too long to be a date.", param=param)
    # "周末前" is a phrase of its own (Friday); elsewhere a trailing 前 only means "by".
    candidates = dict.fromkeys([t, _ZH_BEFORE.sub("", t).strip(" ,.")])
    for rule, m in ((r, r.pattern.fullmatch(c)) for c in candidates for r in RULES):
        if m is None:
            continue
        try:
            found = rule.resolve(m, today)
        except OverflowError:
            raise _out_of_range(f"'{raw[:80]}'", param) from None
        except (ValueError, KeyError):
            raise InvalidRequest(f"'{raw[:80]}' is not a real date.", param=param) from None
        if found is None:
            break
        if not in_range(found):
            raise _out_of_range(f"'{raw[:80]}' ({found.isoformat()})", param)
        return found
    raise InvalidRequest(f"Could not understand the date '{raw[:80]}'. Use YYYY-MM-DD, 'tomorrow', 'next Friday', "
                         "'下周五'…", param=param)


# -- times of day ----------------------------------------------------------------------------------------------

_PERIODS = "凌晨|早上|上午|中午|下午|晚上"
_TIME_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # 3pm, 3:30 pm, 11 a.m.
    (re.compile(r"(?<![\d:])(?:at\s+)?(\d{1,2})(?::(\d{2}))?\s?([ap])\.?\s?m\b\.?", re.I), "ampm"),
    # 下午3:30 (a period and a colon; without the period the 24-hour pattern reads it)
    (re.compile(rf"({_PERIODS})\s*(\d{{1,2}})\s*[:：]\s*(\d{{2}})"), "zh_colon"),
    # 下午3点半, 上午10点, 15点30分, 晚上8点
    (re.compile(rf"({_PERIODS})?\s*({_CLOCK_NUM})\s*[点點时](?:\s*(半|{_CLOCK_NUM})\s*分?)?"), "zh"),
    # 15:30, at 9:00, 14：00
    (re.compile(r"(?<![\d:])(?:at\s+)?(\d{1,2})[:：](\d{2})(?::\d{2})?(?![\d:])", re.I), "24h"),
    (re.compile(r"\b(?:at\s+)?(noon|midday|midnight)\b", re.I), "named"),
)


def _clock(m: re.Match[str], kind: str) -> time:
    """The time a match names; ValueError/KeyError when it names none (25:00, 13pm)."""
    if kind == "ampm":
        hour, minute = int(m[1]), int(m[2] or 0)
        if not 1 <= hour <= 12:
            raise ValueError(m[0])
        return time(hour % 12 + (12 if m[3].lower() == "p" else 0), minute)
    if kind == "24h":
        return time(int(m[1]), int(m[2]))
    if kind == "named":
        return time(0) if m[1].lower() == "midnight" else time(12)
    if kind == "zh_colon":
        return _in_period(m[1], int(m[2]), int(m[3]))
    return _in_period(m[1], _count(m[2]), 30 if m[3] == "半" else (_count(m[3]) if m[3] else 0))


def _in_period(period: str | None, hour: int, minute: int) -> time:
    """下午3点 is 15:00, 中午1点 13:00; 上午, 早上, 凌晨 and no period keep the hour."""
    if (period in ("下午", "晚上") and hour < 12) or (period == "中午" and hour < 6):
        hour += 12
    return time(hour, minute)


def extract_time(text: str, *, param: str = "time") -> tuple[time | None, str]:
    """The clock time in ``text`` (None when it holds none) and the text without it. A time that is not one
    (``25:00``, ``13pm``) raises ``InvalidRequest``."""
    for pattern, kind in _TIME_PATTERNS:
        m = pattern.search(text)
        if not m:
            continue
        rest = (text[: m.start()] + " " + text[m.end():]).strip()
        try:
            return _clock(m, kind), rest
        except (ValueError, KeyError):
            raise InvalidRequest(f"'{m[0].strip()}' is not a valid time of day.", param=param) from None
    return None, text.strip()


def is_time_only(text: str) -> bool:
    """True when ``text`` names a clock time and no day ("4pm", "下午4点", "at 16:00"): an event's end given so is
    on the start's day."""
    try:
        at, rest = extract_time(text)
    except InvalidRequest:
        return False
    return at is not None and not re.sub(r"\b(?:at|on)\b", "", rest).strip(" ,.")


def find_time(text: str) -> time | None:
    """The first clock time in prose, else None. Chinese numerals count only after a period word (上午, 下午…):
    "快一点" is "a bit faster", not one o'clock."""
    for pattern, kind in _TIME_PATTERNS:
        for m in pattern.finditer(text or ""):
            if kind == "zh" and not m[1] and not m[2].isdigit():
                continue
            try:
                return _clock(m, kind)
            except (ValueError, KeyError):
                continue
    return None


# -- date-times and durations ----------------------------------------------------------------------------------

_ISO_DAY_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}.*")


def resolve_datetime(text: str, now: datetime, *, default_time: time = time(9, 0), param: str = "date") -> datetime:
    """An aware date-time in ``now``'s zone. An ISO value with an offset keeps its instant (converted to the zone);
    one without an offset is read in the zone. A date without a time gets ``default_time``. The date as written is
    checked first (a zone conversion could not even represent year 1), then the instant, in UTC."""
    if now.tzinfo is None:
        raise ValueError("now must be aware")
    raw = text.strip() if isinstance(text, str) else ""
    if not raw:
        raise InvalidRequest("An empty date/time.", param=param)
    if _ISO_DAY_TIME.fullmatch(raw):
        iso = raw[:10] + "T" + raw[11:]
        try:
            value = datetime.fromisoformat(iso.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest(f"'{raw[:80]}' is not a valid ISO date-time.", param=param) from None
        check_day(value.date(), param)
        value = value.astimezone(now.tzinfo) if value.tzinfo else value.replace(tzinfo=now.tzinfo)
        return check_instant(value, param)
    at, rest = extract_time(raw, param=param)
    rest = re.sub(r"\b(at|on)\s*$", "", rest).strip(" ,")
    day = resolve_date(rest, now.date(), param=param) if rest else check_day(now.date(), param)
    # Through UTC so a wall-clock time skipped by DST becomes a real instant (astimezone to the value's own zone
    # is a no-op).
    local = datetime.combine(day, at or default_time).replace(tzinfo=now.tzinfo)
    value = local.astimezone(UTC).astimezone(now.tzinfo)
    return check_instant(value, param)


def is_day_only(text: str) -> bool:
    """True when ``text`` names a day and no clock time ("2027-03-04", "Friday", "3月4日"): a listing window that
    ends on a day so named includes that day."""
    raw = text.strip() if isinstance(text, str) else ""
    if not raw or _ISO_DAY_TIME.fullmatch(raw):
        return False
    try:
        return extract_time(raw)[0] is None
    except InvalidRequest:
        return False


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
            m = re.fullmatch(r"(\d{1,6}(?:\.\d{1,6})?)\s*(m|min|mins|minutes?|分钟|h|hr|hrs|hours?|小时)?", t)
            if not m:
                raise InvalidRequest(f"'{value[:40]}' is not a duration; give minutes, e.g. 30.", param=param)
            minutes = float(m[1]) * (60 if m[2] and m[2][0] in "h小" else 1)
    else:
        raise InvalidRequest(f"'{param}' must be a number of minutes.", param=param)
    if not 1 <= minutes <= 24 * 60 or minutes != int(minutes):
        raise InvalidRequest(f"'{param}' must be a whole number of minutes between 1 and 1440.", param=param)
    return int(minutes)
