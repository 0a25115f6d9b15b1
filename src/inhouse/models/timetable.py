"""Weekly times for "AI hours": ``prewarm = ["mon-fri 08:30"]``, ``release = ["mon-fri 19:00"]``.

Grammar, parsed strictly (anything else is an ``InvalidRequest`` that quotes the entry)::

    entry := DAYS " " HH ":" MM          e.g. "mon-fri 08:30", "sat,sun 10:00", "daily 07:15"
    DAYS  := "daily" | DAY | DAY "-" DAY | DAY ("," DAY)+      (a range may wrap: "fri-mon")
    DAY   := mon | tue | wed | thu | fri | sat | sun

Times are the server's local wall-clock time (its zone's DST rules included).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from inhouse.errors import InvalidRequest

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ENTRY = re.compile(r"^(?P<days>[a-z,\-]+) (?P<h>\d{2}):(?P<m>\d{2})$")


@dataclass(frozen=True)
class WeeklyTime:
    text: str
    weekdays: frozenset[int]  # 0 = Monday
    hour: int
    minute: int

    def next_after(self, now: dt.datetime) -> dt.datetime:
        """The first occurrence strictly after ``now`` (aware, any zone), as an aware datetime in the server's
        local zone.

        The days are counted on the local wall clock and each candidate gets the UTC offset in force on its
        own day, so "19:00" stays 19:00 across a DST change (adding days to a fixed-offset datetime would keep
        the old offset and fire an hour off). A time the change skips (02:30 on the spring-forward night) maps
        to one instant after the gap, a time it repeats to its first occurrence: one event either way."""
        wall = now.astimezone().replace(tzinfo=None)
        for days in range(8):
            day = wall.date() + dt.timedelta(days=days)
            if day.weekday() not in self.weekdays:
                continue
            # Through the timestamp: naive .timestamp() follows PEP 495 in a gap (naive .astimezone() lands an
            # hour before it).
            wall_time = dt.datetime.combine(day, dt.time(self.hour, self.minute))
            candidate = dt.datetime.fromtimestamp(wall_time.timestamp(), dt.UTC).astimezone()
            if candidate > now:
                return candidate
        raise AssertionError("a weekly time recurs within 8 days")


def _day(name: str, entry: str, setting: str) -> int:
    if name not in DAYS:
        raise InvalidRequest(f"{setting}: '{entry}' has an unknown day '{name}'; use {', '.join(DAYS)} "
                             "or 'daily'.", param=setting)
    return DAYS.index(name)


def parse_weekly(entry: str, setting: str = "schedule") -> WeeklyTime:
    text = entry.strip().lower()
    match = _ENTRY.match(text)
    if not match:
        raise InvalidRequest(f"{setting}: '{entry}' is not 'DAYS HH:MM' (e.g. 'mon-fri 08:30', 'daily 07:00').",
                             param=setting)
    hour, minute = int(match["h"]), int(match["m"])
    if hour > 23 or minute > 59:
        raise InvalidRequest(f"{setting}: '{entry}' has no valid time of day (00:00-23:59).", param=setting)
    days_text = match["days"]
    if days_text == "daily":
        days = frozenset(range(7))
    elif "-" in days_text:
        first, _, last = days_text.partition("-")
        if "-" in last or "," in days_text:
            raise InvalidRequest(f"{setting}: '{entry}': use one range ('mon-fri') or a list ('mon,wed').",
                                 param=setting)
        a, b = _day(first, entry, setting), _day(last, entry, setting)
        days = frozenset((a + i) % 7 for i in range((b - a) % 7 + 1))
    else:
        names = days_text.split(",")
        if any(not n for n in names):
            raise InvalidRequest(f"{setting}: '{entry}' has an empty day in its list.", param=setting)
        days = frozenset(_day(n, entry, setting) for n in names)
    return WeeklyTime(text=text, weekdays=days, hour=hour, minute=minute)


@dataclass(frozen=True)
class Timetable:
    prewarm: tuple[WeeklyTime, ...] = ()
    release: tuple[WeeklyTime, ...] = ()

    @classmethod
    def parse(cls, prewarm: Sequence[str], release: Sequence[str]) -> Timetable:
        return cls(prewarm=tuple(parse_weekly(e, "models.prewarm") for e in prewarm),
                   release=tuple(parse_weekly(e, "models.release") for e in release))

    @staticmethod
    def next_of(times: Sequence[WeeklyTime], now: dt.datetime) -> dt.datetime | None:
        return min((t.next_after(now) for t in times), default=None)

    def next_prewarm(self, now: dt.datetime) -> dt.datetime | None:
        return self.next_of(self.prewarm, now)

    def next_release(self, now: dt.datetime) -> dt.datetime | None:
        return self.next_of(self.release, now)
