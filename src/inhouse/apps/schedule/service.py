"""The schedule assistant's operations, shared by REST, the CLI and the model's tool calls.

Each method takes the ``AppContext`` (caller, time zone, clock, knowledge base) and validated Python values; dates
given as words are resolved here, in the caller's zone (``dates.py``). Creating or moving an event reports the
caller's events it overlaps (a warning, not a refusal: people do double-book on purpose).

Free/busy of other people: an attendee named by user name contributes the times of their events (never titles),
and only when the caller may see them: themselves, a colleague sharing a group, or anyone for an admin. Others are
reported as unknown, exactly like names that do not exist.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from inhouse.apps.context import AppContext, parse_tz
from inhouse.apps.dates import (
    add_exact,
    check_day,
    check_instant,
    is_day_only,
    is_time_only,
    resolve_date,
    resolve_datetime,
)
from inhouse.apps.ics import IcsItem, read_ics, write_ics
from inhouse.apps.schedule.calendar import (
    Attendee,
    Interval,
    WorkingHours,
    check_window,
    conflicts,
    propose_slots,
)
from inhouse.apps.schedule.store import Event, EventStore
from inhouse.apps.schedule.trip import POLICY_QUERY, parse_policy, plan_itinerary
from inhouse.errors import InvalidRequest, NotFound
from inhouse.store.conversations import owner_of

if TYPE_CHECKING:
    from inhouse.governance.directory import UserDirectory

DEFAULT_DURATION = timedelta(minutes=60)
OVERNIGHT = timedelta(hours=12)  # the longest event a bare end time before its start is read as ending next day
ALL_EVENTS = 20_000  # "every event" of a window or a year: far above any calendar, still a bound
MAX_IMPORT = 5000


def parse_hhmm(value: str, param: str) -> time:
    try:
        hh, mm = value.split(":")
        return time(int(hh), int(mm))
    except ValueError:
        raise InvalidRequest(f"'{param}' must be HH:MM.", param=param) from None


@dataclass
class AttendeeSpec:
    """A person to find time with: a user name (their events are their busy times), optionally their zone and
    working hours (default: the caller's zone and the configured hours)."""

    name: str
    timezone: str | None = None
    work_start: str | None = None
    work_end: str | None = None


class ScheduleService:
    def __init__(self, events: EventStore, directory: UserDirectory | None = None, *, work_start: str = "09:00",
                 work_end: str = "18:00") -> None:
        self.events = events
        self.directory = directory
        self.work_start = parse_hhmm(work_start, "work_start")
        self.work_end = parse_hhmm(work_end, "work_end")

    # -- time words → instants ----------------------------------------------------------------------------

    def when(self, ctx: AppContext, value: str | datetime, param: str = "start", *,
             now: datetime | None = None, default_time: time = time(9, 0)) -> datetime:
        """An instant from words or a ``datetime``, in the supported range (``apps/dates.py``): everything after
        this (a week's window, a duration, a zone) stays representable. Words are read against ``now`` (default:
        the caller's local now); a day without a time is at ``default_time`` (an event: 09:00)."""
        if isinstance(value, datetime):
            return check_instant(value.replace(tzinfo=ctx.tz) if value.tzinfo is None else value, param)
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(f"'{param}' is required (a date and time such as '2026-12-04 15:00' or "
                                 "'next Friday 3pm').", param=param)
        try:
            return resolve_datetime(value, now or ctx.local_now(), default_time=default_time)
        except InvalidRequest as exc:
            raise InvalidRequest(f"'{param}': {exc.message}", code=exc.code, param=param) from None

    def span(self, ctx: AppContext, start: str | datetime, end: str | datetime | None = None,
             duration_minutes: int | None = None) -> Interval:
        s = self.when(ctx, start, "start")
        if end is not None and end != "":
            # "tomorrow 3pm" to "4pm", 明天下午3点 to 下午4点: a bare time is on the start's day, not today.
            on_start_day = isinstance(end, str) and is_time_only(end)
            e = self.when(ctx, end, "end", now=s.astimezone(ctx.tz) if on_start_day else None)
            if e <= s and on_start_day:
                # "22:00" to "01:00": a bare time before the start is the next morning, when that makes an evening
                # or a night shift (up to OVERNIGHT); "3pm" to "2pm" stays a mistake to report.
                next_day = self.when(ctx, end, "end", now=(s.astimezone(ctx.tz) + timedelta(days=1)))
                if next_day - s <= OVERNIGHT:
                    e = next_day
            if e > s:
                return Interval(s, e)
            if not duration_minutes:
                raise InvalidRequest("The end must be after the start.", param="end")
            # Small models fill every optional field (end = start beside a duration): the explicit length wins.
        # Elapsed time: two hours across a DST change are two hours, not two on the wall clock.
        return Interval(s, add_exact(s, timedelta(minutes=duration_minutes) if duration_minutes else DEFAULT_DURATION))

    # -- events -------------------------------------------------------------------------------------------

    def create_event(self, ctx: AppContext, title: str, interval: Interval, *, location: str = "",
                     description: str = "", attendees: Sequence[str] = ()) -> dict[str, Any]:
        clashes = self.clashes(ctx, interval)
        event = self.events.create(ctx.actor, title, interval, tz=ctx.tz, location=location,
                                   description=description, attendees=attendees)
        return {"event": event.to_dict(), "conflicts": clashes}

    def move_event(self, ctx: AppContext, ref: str, start: str | datetime, end: str | datetime | None = None,
                   duration_minutes: int | None = None) -> dict[str, Any]:
        event = self.find(ctx, ref)
        keep = int((event.end - event.start).total_seconds() // 60)
        interval = self.span(ctx, start, end, duration_minutes or keep)
        clashes = self.clashes(ctx, interval, ignore=event.id)
        # Moved to clock times: no longer an all-day event (its export would otherwise write whole days).
        moved = self.events.update(ctx.actor, event.id, interval=interval, all_day=False)
        return {"event": moved.to_dict(), "conflicts": clashes}

    def cancel_event(self, ctx: AppContext, ref: str) -> dict[str, Any]:
        event = self.find(ctx, ref)
        return {"event": self.events.cancel(ctx.actor, event.id).to_dict()}

    def list_events(self, ctx: AppContext, start: str | datetime | None = None,
                    end: str | datetime | None = None) -> dict[str, Any]:
        # A window given as days is whole days, both included: 2027-03-03 to 2027-03-04 runs from the midnight that
        # starts the 3rd to the one that ends the 4th (not 09:00 to 09:00, an event's default time), and 2027-03-03
        # to 2027-03-03 is that one day. A time given is kept.
        s = (self.when(ctx, start, "start", default_time=time(0)) if start
             else datetime.combine(ctx.local_now().date(), time(0), ctx.tz))
        e = self.when(ctx, end, "end", default_time=time(0)) if end else s + timedelta(days=7)
        if isinstance(end, str) and is_day_only(end):
            e = _first_instant(e.astimezone(ctx.tz).date() + timedelta(days=1), ctx.tz)
        if e <= s:
            raise InvalidRequest("The end must be after the start.", param="end")
        found = self.events.list_events(ctx.actor, start=s, end=e)
        return {"from": s.isoformat(), "to": e.isoformat(), "events": [ev.to_dict() for ev in found]}

    def find(self, ctx: AppContext, ref: str) -> Event:
        """An event of the caller by id, or by a title that matches exactly one upcoming event."""
        ref = (ref or "").strip()
        if not ref:
            raise InvalidRequest("Name the event (its id or its title).", param="event_id")
        if ref.startswith("evt_"):
            return self.events.get(ctx.actor, ref)
        now = ctx.now()
        upcoming = self.events.list_events(ctx.actor, start=now - timedelta(days=1), end=now + timedelta(days=366),
                                           limit=ALL_EVENTS)
        matches = [e for e in upcoming if ref.lower() in e.title.lower()]
        if not matches:
            raise NotFound(f"No upcoming event titled '{ref[:80]}'.", param="event_id")
        exact = [e for e in matches if e.title.lower() == ref.lower()]
        if len(exact) == 1:
            return exact[0]
        if len(matches) > 1:
            listing = "; ".join(f"{e.id} {e.title} {e.to_dict()['start']}" for e in matches[:5])
            raise InvalidRequest(f"'{ref[:80]}' matches {len(matches)} events, name one by id: {listing}",
                                 param="event_id")
        return matches[0]

    def clashes(self, ctx: AppContext, interval: Interval, *, ignore: str | None = None) -> list[dict[str, Any]]:
        mine = self.events.list_events(ctx.actor, start=interval.start, end=interval.end)
        hits = conflicts(interval, [e.interval for e in mine if e.id != ignore])
        return [e.to_dict() for e in mine if e.id != ignore and e.interval in hits]

    # -- free slots ---------------------------------------------------------------------------------------

    def attendee(self, ctx: AppContext, spec: AttendeeSpec, window: Interval) -> Attendee:
        tz = parse_tz(spec.timezone) if spec.timezone else ctx.tz
        hours = WorkingHours(tz=tz, start=parse_hhmm(spec.work_start, "work_start") if spec.work_start else
                             self.work_start, end=parse_hhmm(spec.work_end, "work_end") if spec.work_end else
                             self.work_end)
        owner = self._owner_for(ctx, spec.name)
        # Every event of the window: a default page (500) left a busy calendar's later events out, shown as free.
        busy = [e.interval for e in self.events.list_for_owner(owner, start=window.start, end=window.end,
                                                               limit=ALL_EVENTS)]
        return Attendee(spec.name, busy, hours)

    def _owner_for(self, ctx: AppContext, name: str) -> str:
        me = owner_of(ctx.actor)
        key = name.strip().lower()
        if key in ("me", "i", "myself", "我", ctx.actor.name.lower()):
            return me
        if self.directory is None:
            raise NotFound(f"Unknown attendee '{name[:80]}'.", param="attendees")
        try:
            user = self.directory.find_user(name.strip())
        except (NotFound, InvalidRequest):
            raise NotFound(f"Unknown attendee '{name[:80]}' (not a user whose calendar you may see).",
                           param="attendees") from None
        if user.id == ctx.actor.user_id:
            return me
        if not ctx.actor.is_admin:
            theirs = {g.name for g in self.directory.groups_of(user.id)}
            if not theirs & ctx.actor.groups:
                raise NotFound(f"Unknown attendee '{name[:80]}' (not a user whose calendar you may see).",
                               param="attendees")
        return f"user:{user.id}"

    def free_slots(self, ctx: AppContext, attendees: Sequence[AttendeeSpec], duration_minutes: int, *,
                   start: str | datetime | None = None, end: str | datetime | None = None, limit: int = 5,
                   step_minutes: int = 15) -> dict[str, Any]:
        s = self.when(ctx, start, "start") if start else ctx.local_now()
        e = self.when(ctx, end, "end") if end else s + timedelta(days=7)
        if e <= s:
            raise InvalidRequest("The end must be after the start.", param="end")
        window = Interval(s, e)
        check_window(window)  # before any work: the search is bounded by the window and the slot limit
        people = list(attendees) or [AttendeeSpec("me")]
        if not any(self._owner_for(ctx, p.name) == owner_of(ctx.actor) for p in people):
            people.append(AttendeeSpec("me"))  # the caller attends the meetings they plan
        resolved = [self.attendee(ctx, p, window) for p in people]
        slots = propose_slots(resolved, timedelta(minutes=duration_minutes), window,
                              step=timedelta(minutes=step_minutes), limit=limit)
        return {"attendees": [a.name for a in resolved], "duration_minutes": duration_minutes,
                "slots": [{"start": sl.start.astimezone(ctx.tz).isoformat(),
                           "end": sl.end.astimezone(ctx.tz).isoformat()} for sl in slots]}

    # -- trips --------------------------------------------------------------------------------------------

    async def plan_trip(self, ctx: AppContext, destination: str, depart: str, back: str, *, purpose: str = "",
                        international: bool | None = None) -> dict[str, Any]:
        today = ctx.local_now().date()
        d1, d2 = self._day(depart, today, "depart_date"), self._day(back, today, "return_date")
        hits = []
        if ctx.kb is not None:
            # As the caller: a policy they may not read is not applied (and not revealed).
            hits = await asyncio.to_thread(ctx.kb.search, ctx.actor, f"{POLICY_QUERY} {destination}", top_k=8)
        trip = plan_itinerary(destination, d1, d2, parse_policy(hits), purpose=purpose, international=international)
        if trip["policy_sources"]:
            # The plan quotes the policy's limits: its JSON (as returned, and as the chat's model reads it) is
            # remembered with the label of the passages applied (governance/answer_labels.py).
            await ctx.remember_answer([json.dumps(trip, ensure_ascii=False)],
                                      [source["label"] for source in trip["policy_sources"]])
        return trip

    @staticmethod
    def _day(value: str, today: date, param: str) -> date:
        try:
            return resolve_date(value, today)
        except InvalidRequest as exc:
            raise InvalidRequest(f"'{param}': {exc.message}", code=exc.code, param=param) from None

    # -- iCalendar ----------------------------------------------------------------------------------------

    def export_ics(self, ctx: AppContext, *, start: datetime | None = None, end: datetime | None = None) -> str:
        events = self.events.list_events(ctx.actor, start=start, end=end, limit=ALL_EVENTS)
        items = [IcsItem(summary=e.title, start=_day_in_own_zone(e, e.start) if e.all_day else e.start,
                         end=_day_in_own_zone(e, e.end) if e.all_day else e.end, uid=e.uid, description=e.description,
                         location=e.location, attendees=list(e.attendees), status="CONFIRMED",
                         dtstamp=datetime.fromtimestamp(e.updated_at, ctx.tz)) for e in events]
        return write_ics(items, calendar_name=f"inhouse: {ctx.actor.name}", dtstamp=ctx.now())

    def import_ics(self, ctx: AppContext, data: bytes | str) -> dict[str, Any]:
        """Events of an .ics file into the caller's calendar; the same UID again updates instead of duplicating.
        To-dos and recurring rules are reported, not imported (recurrences are not expanded: only the first
        occurrence); a changed occurrence of a series (``RECURRENCE-ID``, same UID) is skipped and reported, so it
        never replaces the series' first occurrence. What could not be read exactly (a time zone the file neither
        names in IANA terms nor defines) is listed per event in ``warnings``: such an event may be at the wrong time."""
        items = read_ics(data, default_tz=ctx.tz)
        if len(items) > MAX_IMPORT:
            raise InvalidRequest(f"Import at most {MAX_IMPORT} events at a time.", param="file")
        created = updated = 0
        skipped: list[dict[str, str]] = []
        warnings: list[dict[str, Any]] = []
        for item in items:
            if item.kind != "VEVENT" or item.start is None:
                skipped.append({"uid": item.uid, "reason": "not an event with a start"})
                continue
            if item.recurrence_id is not None:
                skipped.append({"uid": item.uid, "reason": "changed occurrence of a recurring event not imported: "
                                "only the first occurrence"})
                continue
            if item.status == "CANCELLED":
                skipped.append({"uid": item.uid, "reason": "cancelled"})
                continue
            try:
                interval, all_day = self._item_interval(ctx.tz, item)
                existing = self.events.by_uid(ctx.actor, item.uid)
                title = item.summary.strip() or "(no title)"
                if existing is None:
                    self.events.create(ctx.actor, title, interval, tz=ctx.tz, location=item.location,
                                       description=item.description, attendees=item.attendees, uid=item.uid,
                                       all_day=all_day)
                    created += 1
                else:
                    self.events.update(ctx.actor, existing.id, title=title, interval=interval,
                                       location=item.location, description=item.description,
                                       attendees=item.attendees, status="confirmed", all_day=all_day,
                                       tz=ctx.tz)
                    updated += 1
            except InvalidRequest as exc:
                skipped.append({"uid": item.uid, "reason": exc.message})
                continue
            if item.warnings:
                warnings.append({"uid": item.uid, "title": item.summary.strip()[:300], "warnings": item.warnings})
            if item.rrule:
                skipped.append({"uid": item.uid, "reason": "recurrence not expanded: only the first occurrence"})
        return {"created": created, "updated": updated, "skipped": skipped, "warnings": warnings}

    @staticmethod
    def _item_interval(tz: ZoneInfo, item: IcsItem) -> tuple[Interval, bool]:
        """The event's interval; ``InvalidRequest`` (the item is skipped) when a date is outside the supported
        range, checked before any arithmetic on it."""
        start, end = item.start, item.end or item.start
        assert start is not None and end is not None
        for value, param in ((start, "start"), (end, "end")):
            if isinstance(value, datetime):
                check_instant(value, param)
            else:
                check_day(value, param)
        if not isinstance(start, datetime):  # all-day: midnight to midnight in the caller's zone
            s = datetime.combine(start, time(0), tz)
            e_day = end if not isinstance(end, datetime) else end.date()
            e = datetime.combine(max(e_day, start + timedelta(days=1)), time(0), tz)
            return Interval(s, e), True
        s = start if start.tzinfo else start.replace(tzinfo=tz)
        e = end if isinstance(end, datetime) else datetime.combine(end, time(0), tz)
        e = e if e.tzinfo else e.replace(tzinfo=tz)
        if e <= s:
            e = s + timedelta(minutes=1) if e == s else s  # an instant event: keep it one minute long
        return Interval(s, e), False


def _first_instant(day: date, tz: ZoneInfo) -> datetime:
    """The midnight that starts ``day`` in ``tz``, or the first instant after it where a DST change skips it (through
    UTC, as ``resolve_datetime``). Not range-checked: the day after a day in the range is within its margin."""
    return datetime.combine(day, time(0), tz).astimezone(UTC).astimezone(tz)


def _day_in_own_zone(event: Event, value: datetime) -> date:
    """An all-day event's date: midnight in the zone it was stored in (in UTC it is the day before east of UTC)."""
    return value.astimezone(ZoneInfo(event.tz)).date()


def build_schedule_service(settings: Any, events: EventStore, directory: UserDirectory | None
                           ) -> ScheduleService:
    """From ``Settings``: events in the main database, free/busy through the user directory."""
    return ScheduleService(events, directory, work_start=settings.apps.work_start, work_end=settings.apps.work_end)
