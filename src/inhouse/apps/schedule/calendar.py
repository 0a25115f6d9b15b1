"""Calendar arithmetic, pure and exact: intervals, conflicts, working hours, free slots for a group.

Every instant is an aware ``datetime``; intervals are half-open ``[start, end)`` so a meeting ending at 10:00 does
not conflict with one starting at 10:00. Working hours are wall-clock times in each attendee's own zone, turned
into instants day by day (so a DST change moves them correctly).

``free_windows`` is the exact answer (maximal intervals when every attendee is inside working hours and nobody is
busy); ``propose_slots`` lists every start on the ``step`` grid (aligned to the Unix epoch, so :00/:15/:30/:45 in
every zone with a whole-quarter-hour offset) whose whole duration fits in a free window, earliest first. Both are
unit-tested against brute force.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from inhouse.errors import InvalidRequest

MAX_WINDOW = timedelta(days=92)
MAX_SLOTS = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRequest(f"'{what}' must carry a time zone.", param=what)
    return value


@dataclass(frozen=True, order=True)
class Interval:
    """``[start, end)``, both aware; compared and sorted by start then end. Checks, lengths and overlaps are
    computed in UTC: two times in one zone compare by wall clock, wrong across a DST fold (02:00 CET, after the
    clocks went back, is later than 02:30 CEST)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _aware(self.start, "start")
        _aware(self.end, "end")
        if self.end.astimezone(UTC) <= self.start.astimezone(UTC):
            raise InvalidRequest("An interval must end after it starts.", param="end")

    @property
    def duration(self) -> timedelta:
        return self.end.astimezone(UTC) - self.start.astimezone(UTC)

    def overlaps(self, other: Interval) -> bool:
        a, b = self.to_utc(), other.to_utc()
        return a.start < b.end and b.start < a.end

    def contains(self, other: Interval) -> bool:
        a, b = self.to_utc(), other.to_utc()
        return a.start <= b.start and b.end <= a.end

    def to_utc(self) -> Interval:
        return Interval(self.start.astimezone(UTC), self.end.astimezone(UTC))


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping and touching intervals joined."""
    out: list[Interval] = []
    for iv in sorted(i.to_utc() for i in intervals):
        if out and iv.start <= out[-1].end:
            if iv.end > out[-1].end:
                out[-1] = Interval(out[-1].start, iv.end)
        else:
            out.append(iv)
    return out


def subtract(base: Iterable[Interval], remove: Iterable[Interval]) -> list[Interval]:
    """``base`` minus ``remove`` (both merged first): the parts of base nobody removed."""
    blocks = merge(remove)
    out: list[Interval] = []
    for iv in merge(base):
        cursor = iv.start
        for b in blocks:
            if b.end <= cursor or b.start >= iv.end:
                continue
            if b.start > cursor:
                out.append(Interval(cursor, b.start))
            cursor = max(cursor, b.end)
            if cursor >= iv.end:
                break
        if cursor < iv.end:
            out.append(Interval(cursor, iv.end))
    return out


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    xs, ys = merge(a), merge(b)
    out: list[Interval] = []
    i = j = 0
    while i < len(xs) and j < len(ys):
        start, end = max(xs[i].start, ys[j].start), min(xs[i].end, ys[j].end)
        if start < end:
            out.append(Interval(start, end))
        if xs[i].end <= ys[j].end:
            i += 1
        else:
            j += 1
    return out


def conflicts(candidate: Interval, busy: Iterable[Interval]) -> list[Interval]:
    """The busy intervals ``candidate`` overlaps (touching ends do not conflict)."""
    return [b for b in busy if candidate.overlaps(b)]


@dataclass(frozen=True)
class WorkingHours:
    """Wall-clock working hours in ``tz`` on ``days`` (Monday = 0). ``end`` after ``start`` on the same day."""

    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    start: time = time(9, 0)
    end: time = time(18, 0)
    days: frozenset[int] = frozenset(range(5))

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise InvalidRequest("Working hours must end after they start (overnight shifts are not supported).",
                                 param="working_hours")
        if not self.days or not self.days <= set(range(7)):
            raise InvalidRequest("Working days must be weekday numbers 0 (Monday) to 6 (Sunday).",
                                 param="working_hours")

    def intervals(self, window: Interval) -> list[Interval]:
        """Working intervals intersecting ``window``, clipped to it."""
        first = window.start.astimezone(self.tz).date() - timedelta(days=1)
        last = window.end.astimezone(self.tz).date() + timedelta(days=1)
        out: list[Interval] = []
        day = first
        while day <= last:
            if day.weekday() in self.days:
                start, end = _local(day, self.start, self.tz), _local(day, self.end, self.tz)
                if end > start:
                    out.extend(intersect([Interval(start, end)], [window]))
            day += timedelta(days=1)
        return merge(out)


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The instant of wall-clock ``at`` on ``day`` in ``tz`` (a time skipped by DST lands just after the gap)."""
    naive = datetime.combine(day, at)
    aware = naive.replace(tzinfo=tz)
    # Round-trip through UTC: a nonexistent local time (spring forward) normalises to a real instant.
    return aware.astimezone(UTC)


@dataclass(frozen=True)
class Attendee:
    name: str
    busy: Sequence[Interval] = ()
    hours: WorkingHours = field(default_factory=WorkingHours)


def check_window(window: Interval) -> None:
    """Refuse a search longer than ``MAX_WINDOW``: with the slot limit, this bounds the work of a search."""
    if window.duration > MAX_WINDOW:
        raise InvalidRequest(f"Search at most {MAX_WINDOW.days} days at a time.", param="to")


def free_windows(attendees: Sequence[Attendee], window: Interval, *,
                 min_duration: timedelta = timedelta(0)) -> list[Interval]:
    """Maximal intervals inside ``window`` when every attendee works and none is busy, at least ``min_duration``."""
    if not attendees:
        raise InvalidRequest("Name at least one attendee.", param="attendees")
    check_window(window)
    common = [window.to_utc()]
    busy: list[Interval] = []
    for a in attendees:
        common = intersect(common, a.hours.intervals(window))
        busy.extend(a.busy)
    return [iv for iv in subtract(common, busy) if iv.duration >= min_duration]


def _ceil_to_step(t: datetime, step: timedelta) -> datetime:
    offset = (t - _EPOCH) % step
    return t if not offset else t + (step - offset)


def propose_slots(attendees: Sequence[Attendee], duration: timedelta, window: Interval, *,
                  step: timedelta = timedelta(minutes=15), limit: int = 10) -> list[Interval]:
    """Every grid-aligned slot of ``duration`` that fits a free window, earliest first, at most ``limit``."""
    if duration <= timedelta(0):
        raise InvalidRequest("The duration must be positive.", param="duration_minutes")
    if duration > timedelta(days=1):
        raise InvalidRequest("A meeting may last at most one day.", param="duration_minutes")
    if step <= timedelta(0) or step > timedelta(hours=24):
        raise InvalidRequest("The step must be between 1 minute and 24 hours.", param="step_minutes")
    if limit < 1 or limit > MAX_SLOTS:
        raise InvalidRequest(f"'limit' must be between 1 and {MAX_SLOTS}.", param="limit")
    out: list[Interval] = []
    for free in free_windows(attendees, window, min_duration=duration):
        start = _ceil_to_step(free.start, step)
        while start + duration <= free.end:
            out.append(Interval(start, start + duration))
            if len(out) >= limit:
                return out
            start += step
    return out
