"""Calendar events, stored per owner (a user, or a key bound to no user): the ``EventStore`` protocol and the one
SQL implementation SQLite (``inhouse.db``) and PostgreSQL (``store.url``) share, like the conversations
(``store/conversations.py``). The dialects (``store/sqlite/assistants.py``, ``store/postgres/assistants.py``)
supply the placeholder, the transaction serialising an owner's creates (the per-owner cap) and the
unique-violation test.

The owner is derived from the caller's ``Actor`` and is part of every query: another owner's event id is
indistinguishable from an unknown one (``NotFound``). A calendar is personal, like the chat history: not even an
admin reads another person's events by id (free/busy times reach colleagues through ``ScheduleService``, never
titles). Instants are stored in UTC as ISO text (``YYYY-MM-DDTHH:MM:SSZ``, always four year digits), which sorts
correctly as text; the zone the event was created in is kept for display.

Every write checks, inside its transaction and before the row is written, that both instants lie in the supported
range (``apps/dates.py``: UTC dates 1900-01-01..2999-12-31) and that the stored
text reads back as the same instant: a row that could not be read back is never stored. Rows written before that
rule (years below 1000 stored with three digits or fewer) are made readable by migration 7 and are still shown,
moved and deleted; reading accepts one to four year digits.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from inhouse.apps.dates import check_instant
from inhouse.apps.schedule.calendar import Interval
from inhouse.errors import Conflict, InvalidRequest, NotFound
from inhouse.store.conversations import owner_of
from inhouse.types import Actor

MAX_EVENTS_PER_OWNER = 20_000
MAX_TITLE = 300
MAX_TEXT = 8000
MAX_ATTENDEES = 200
MAX_UID = 1000  # bytes of an iCalendar UID (RFC 7986 suggests a UUID); PostgreSQL's unique index refused ~2.7 KB


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(12)}"


def iso_utc(value: datetime) -> str:
    """The stored form of an instant: UTC, seconds, four year digits (``strftime("%Y")`` drops the zeros of 999)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


_STORED = re.compile(r"(\d{1,4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z")


def parse_utc(text: str) -> datetime:
    """A stored instant; one to four year digits, as rows written before four were enforced have them."""
    m = _STORED.fullmatch(text)
    if m is None:
        raise ValueError(f"not a stored instant: {text!r}")
    y, mo, d, h, mi, sec = (int(g) for g in m.groups())
    return datetime(y, mo, d, h, mi, sec, tzinfo=UTC)


def stored_interval(interval: Interval) -> tuple[str, str]:
    """The stored text of an interval's instants, after checking both are in the supported range and read back
    as the same instants. ``InvalidRequest`` otherwise: nothing unreadable is ever written."""
    out: list[str] = []
    for value, param in ((interval.start, "start"), (interval.end, "end")):
        check_instant(value, param)
        text = iso_utc(value)
        # Compare in UTC: under PEP 495 an aware == across zones is False for a time in a DST fold or gap.
        if parse_utc(text) != value.astimezone(UTC):
            raise InvalidRequest(f"'{param}' {value.isoformat()} cannot be stored exactly.", param=param)
        out.append(text)
    return out[0], out[1]


def _local_iso(value: datetime, zone: ZoneInfo) -> str:
    """``value`` in ``zone`` for display; in UTC when the zone cannot represent it (an old row near year 1)."""
    try:
        return value.astimezone(zone).isoformat()
    except OverflowError:
        return value.isoformat()


@dataclass(frozen=True)
class Event:
    id: str
    owner: str
    uid: str
    title: str
    start: datetime  # aware, UTC
    end: datetime
    tz: str
    all_day: bool
    location: str
    description: str
    attendees: tuple[str, ...]
    status: str  # 'confirmed' | 'cancelled'
    created_at: float
    updated_at: float

    @property
    def interval(self) -> Interval:
        return Interval(self.start, self.end)

    def to_dict(self) -> dict[str, Any]:
        zone = ZoneInfo(self.tz)
        return {
            "id": self.id, "object": "schedule.event", "uid": self.uid, "title": self.title,
            "start": _local_iso(self.start, zone), "end": _local_iso(self.end, zone),
            "timezone": self.tz, "all_day": self.all_day, "location": self.location,
            "description": self.description, "attendees": list(self.attendees), "status": self.status,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }


def _row(row: Any) -> Event:
    return Event(
        id=row["id"], owner=row["owner"], uid=row["uid"], title=row["title"], start=parse_utc(row["start_utc"]),
        end=parse_utc(row["end_utc"]), tz=row["tz"], all_day=bool(row["all_day"]), location=row["location"],
        description=row["description"], attendees=tuple(json.loads(row["attendees"])), status=row["status"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


def _clean_text(value: str, what: str, limit: int, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"'{what}' must be text.", param=what)
    value = value.strip()
    if required and not value:
        raise InvalidRequest(f"'{what}' must not be empty.", param=what)
    if len(value) > limit:
        raise InvalidRequest(f"'{what}' is longer than {limit} characters.", param=what)
    return value


def _clean_attendees(attendees: Iterable[str]) -> list[str]:
    out: list[str] = []
    for a in attendees:
        a = _clean_text(a, "attendees", 200)
        if a and a not in out:
            out.append(a)
    if len(out) > MAX_ATTENDEES:
        raise InvalidRequest(f"At most {MAX_ATTENDEES} attendees.", param="attendees")
    return out


def _zone_name(tz: ZoneInfo | str) -> str:
    return tz.key if isinstance(tz, ZoneInfo) else str(tz)


class EventStore(Protocol):
    """A calendar per owner. Another owner's event is ``NotFound`` like an unknown one; ``Conflict`` for a second
    event with the same UID in one calendar and past ``MAX_EVENTS_PER_OWNER``; ``InvalidRequest`` for an instant
    that cannot be stored exactly (nothing is written then)."""

    def create(self, actor: Actor, title: str, interval: Interval, *, tz: ZoneInfo | str,
               location: str = "", description: str = "", attendees: Sequence[str] = (), uid: str | None = None,
               all_day: bool = False) -> Event: ...

    def get(self, actor: Actor, event_id: str) -> Event: ...

    def by_uid(self, actor: Actor, uid: str) -> Event | None: ...

    def list_events(self, actor: Actor, *, start: datetime | None = None, end: datetime | None = None,
                    include_cancelled: bool = False, limit: int = 500) -> list[Event]: ...

    def list_for_owner(self, owner: str, *, start: datetime | None = None, end: datetime | None = None,
                       include_cancelled: bool = False, limit: int = 500) -> list[Event]: ...

    def update(self, actor: Actor, event_id: str, *, title: str | None = None, interval: Interval | None = None,
               location: str | None = None, description: str | None = None,
               attendees: Sequence[str] | None = None, tz: ZoneInfo | str | None = None,
               status: str | None = None, all_day: bool | None = None) -> Event: ...

    def cancel(self, actor: Actor, event_id: str) -> Event: ...

    def delete(self, actor: Actor, event_id: str) -> None: ...


class SqlEventStore:
    """The ``EventStore`` over a SQL database (table ``schedule_events``)."""

    placeholder = "?"

    def __init__(self, db: Any, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db  # query / query_one / execute / erase / transaction, as both database helpers offer them
        self._clock = clock

    def owner_transaction(self, owner: str) -> AbstractContextManager[Any]:
        """A write transaction in which no other write to ``owner``'s calendar runs."""
        raise NotImplementedError

    def is_unique_violation(self, exc: Exception) -> bool:
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    def create(self, actor: Actor, title: str, interval: Interval, *, tz: ZoneInfo | str,
               location: str = "", description: str = "", attendees: Sequence[str] = (), uid: str | None = None,
               all_day: bool = False) -> Event:
        owner, now = owner_of(actor), self._clock()
        event_id = new_event_id()
        if uid is not None and len(_clean_text(uid, "uid", MAX_UID).encode("utf-8", "replace")) > MAX_UID:
            raise InvalidRequest(f"'uid' is longer than {MAX_UID} bytes.", param="uid")
        clean = (_clean_text(title, "title", MAX_TITLE, required=True), _clean_text(location, "location", MAX_TITLE),
                 _clean_text(description, "description", MAX_TEXT),
                 json.dumps(_clean_attendees(attendees), ensure_ascii=False))
        with self.owner_transaction(owner) as conn:
            start_utc, end_utc = stored_interval(interval)
            values = (event_id, owner, uid or f"{event_id}@inhouse", clean[0], start_utc, end_utc, _zone_name(tz),
                      bool(all_day), clean[1], clean[2], clean[3], "confirmed", now, now)
            n = conn.execute(self._sql("SELECT count(*) AS n FROM schedule_events WHERE owner = ?"),
                             (owner,)).fetchone()["n"]
            if n >= MAX_EVENTS_PER_OWNER:
                raise Conflict(f"This calendar already holds {n} events (the most allowed).")
            try:
                conn.execute(self._sql(
                    "INSERT INTO schedule_events (id, owner, uid, title, start_utc, end_utc, tz, all_day, location,"
                    " description, attendees, status, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), values)
            except Exception as exc:
                if self.is_unique_violation(exc):
                    raise Conflict("An event with this UID is already in your calendar.") from None
                raise
        return self.get(actor, event_id)

    def get(self, actor: Actor, event_id: str) -> Event:
        """The caller's own event. Unknown or another's (whoever the caller is): NotFound."""
        return self._own(None, actor, event_id)

    def _own(self, conn: Any, actor: Actor, event_id: str) -> Event:
        """``get``, on ``conn`` (a transaction's connection) or, with None, on the database."""
        sql, params = self._sql("SELECT * FROM schedule_events WHERE id = ? AND owner = ?"), (str(event_id)[:100],
                                                                                           owner_of(actor))
        row = self._db.query_one(sql, params) if conn is None else conn.execute(sql, params).fetchone()
        if row is None:
            raise NotFound("No such event, or not yours.", param="event_id")
        return _row(row)

    def by_uid(self, actor: Actor, uid: str) -> Event | None:
        row = self._db.query_one(self._sql("SELECT * FROM schedule_events WHERE owner = ? AND uid = ?"),
                                 (owner_of(actor), uid))
        return None if row is None else _row(row)

    def list_events(self, actor: Actor, *, start: datetime | None = None, end: datetime | None = None,
                    include_cancelled: bool = False, limit: int = 500) -> list[Event]:
        """The caller's events overlapping ``[start, end)``, by start time."""
        return self.list_for_owner(owner_of(actor), start=start, end=end, include_cancelled=include_cancelled,
                                   limit=limit)

    def list_for_owner(self, owner: str, *, start: datetime | None = None, end: datetime | None = None,
                       include_cancelled: bool = False, limit: int = 500) -> list[Event]:
        where, params = ["owner = ?"], [owner]
        if start is not None:
            where.append("end_utc > ?")
            params.append(iso_utc(start))
        if end is not None:
            where.append("start_utc < ?")
            params.append(iso_utc(end))
        if not include_cancelled:
            where.append("status = 'confirmed'")
        limit = max(1, min(int(limit), MAX_EVENTS_PER_OWNER))
        rows = self._db.query(self._sql(f"SELECT * FROM schedule_events WHERE {' AND '.join(where)}"
                                        f" ORDER BY start_utc, id LIMIT {limit}"), params)
        return [_row(r) for r in rows]

    def update(self, actor: Actor, event_id: str, *, title: str | None = None, interval: Interval | None = None,
               location: str | None = None, description: str | None = None,
               attendees: Sequence[str] | None = None, tz: ZoneInfo | str | None = None,
               status: str | None = None, all_day: bool | None = None) -> Event:
        sets: dict[str, Any] = {}
        if all_day is not None:
            sets["all_day"] = bool(all_day)
        if title is not None:
            sets["title"] = _clean_text(title, "title", MAX_TITLE, required=True)
        if location is not None:
            sets["location"] = _clean_text(location, "location", MAX_TITLE)
        if description is not None:
            sets["description"] = _clean_text(description, "description", MAX_TEXT)
        if attendees is not None:
            sets["attendees"] = json.dumps(_clean_attendees(attendees), ensure_ascii=False)
        if tz is not None:
            sets["tz"] = _zone_name(tz)
        if status is not None:
            if status not in ("confirmed", "cancelled"):
                raise InvalidRequest("'status' must be 'confirmed' or 'cancelled'.", param="status")
            sets["status"] = status
        with self.owner_transaction(owner_of(actor)) as conn:
            event = self._own(conn, actor, event_id)
            if interval is not None:
                sets["start_utc"], sets["end_utc"] = stored_interval(interval)
            if not sets:
                return event
            sets["updated_at"] = self._clock()
            cols = ", ".join(f"{k} = ?" for k in sets)
            conn.execute(self._sql(f"UPDATE schedule_events SET {cols} WHERE id = ? AND owner = ?"),
                         [*sets.values(), event.id, event.owner])
        return self.get(actor, event.id)

    def cancel(self, actor: Actor, event_id: str) -> Event:
        return self.update(actor, event_id, status="cancelled")

    def delete(self, actor: Actor, event_id: str) -> None:
        if not self._db.erase(self._sql("DELETE FROM schedule_events WHERE id = ? AND owner = ?"),
                              (str(event_id)[:100], owner_of(actor))):
            raise NotFound("No such event, or not yours.", param="event_id")
