"""Conformance suites of the assistants' stores, passed by every implementation (SQLite and PostgreSQL).

``EventStoreContract``: provide an ``events`` fixture, an empty ``EventStore`` whose clock ticks (``ticking_clock``).
``SessionStoreContract``: provide a ``sessions`` fixture, an empty ``SessionStore`` whose clock ticks::

    class TestSqliteEventStore(EventStoreContract):
        @pytest.fixture
        def events(self, tmp_path):
            db = open_inhouse_db(tmp_path / "inhouse.db")
            yield SqliteEventStore(db, clock=ticking_clock())
            db.close()
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from inhouse.apps.schedule.calendar import Interval
from inhouse.apps.schedule.store import EventStore
from inhouse.apps.support.store import MAX_MESSAGES, SessionStore
from inhouse.errors import Conflict, InvalidRequest, NotFound
from inhouse.types import Actor

ANA = Actor("key_ana", "ana", role="member", user_id="usr_ana")
ANA_PHONE = Actor("key_ana2", "ana phone", role="member", user_id="usr_ana")
BEN = Actor("key_ben", "ben", role="member", user_id="usr_ben")
ADMIN = Actor("key_adm", "admin", role="admin")


def at(*args: int, tz: str = "UTC") -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz))  # type: ignore[misc,arg-type]


def hour(*args: int, tz: str = "UTC") -> Interval:
    start = at(*args, tz=tz)
    return Interval(start, start.replace(hour=start.hour + 1))


class EventStoreContract:
    @pytest.fixture
    def events(self) -> EventStore:  # pragma: no cover - overridden
        raise NotImplementedError

    def test_create_read_update_delete(self, events: EventStore) -> None:
        e = events.create(ANA, "  Design review ", hour(2030, 3, 4, 10, tz="Asia/Shanghai"), tz="Asia/Shanghai",
                          location="Room 3", attendees=["ben", "ben", "王芳"], all_day=False)
        assert e.id.startswith("evt_") and e.title == "Design review" and e.attendees == ("ben", "王芳")
        assert e.start == at(2030, 3, 4, 2) and e.to_dict()["start"] == "2030-03-04T10:00:00+08:00"
        assert events.get(ANA_PHONE, e.id) == e  # the same person from another key
        assert events.by_uid(ANA, e.uid) == e and events.by_uid(BEN, e.uid) is None
        moved = events.update(ANA, e.id, title="Review", interval=hour(2030, 3, 5, 9), description="notes")
        assert (moved.title, moved.start, moved.description, moved.location) == (
            "Review", at(2030, 3, 5, 9), "notes", "Room 3")
        assert moved.updated_at > e.updated_at and moved.created_at == e.created_at
        day = events.create(ANA, "Holiday", Interval(at(2030, 3, 6), at(2030, 3, 7)), tz="UTC", all_day=True)
        assert events.get(ANA, day.id).all_day and not events.get(ANA, moved.id).all_day
        timed = events.update(ANA, day.id, interval=hour(2030, 3, 6, 9), all_day=False, tz="Europe/Berlin")
        assert (timed.all_day, timed.tz) == (False, "Europe/Berlin")
        assert events.update(ANA, day.id, all_day=True).all_day
        assert events.cancel(ANA, e.id).status == "cancelled"
        assert [x.id for x in events.list_events(ANA)] == [day.id]
        assert [x.id for x in events.list_events(ANA, include_cancelled=True)] == [e.id, day.id]
        events.delete(ANA, e.id)
        with pytest.raises(NotFound):
            events.get(ANA, e.id)
        with pytest.raises(NotFound):
            events.delete(ANA, e.id)

    def test_another_owners_event_is_not_found_and_unchanged(self, events: EventStore) -> None:
        e = events.create(ANA, "private", hour(2030, 1, 2, 10), tz="UTC")
        for call in (lambda: events.get(BEN, e.id), lambda: events.update(BEN, e.id, title="mine"),
                     lambda: events.cancel(BEN, e.id), lambda: events.delete(BEN, e.id),
                     lambda: events.get(ADMIN, e.id), lambda: events.get(ANA, "evt_unknown")):
            with pytest.raises(NotFound):
                call()
        assert events.get(ANA, e.id).title == "private" and events.list_events(BEN) == []

    def test_a_window_lists_the_overlapping_events_in_time_order(self, events: EventStore) -> None:
        late = events.create(ANA, "late", hour(2999, 12, 31, 10), tz="UTC")
        early = events.create(ANA, "early", hour(1900, 1, 1, 10), tz="UTC")
        mid = events.create(ANA, "mid", hour(2030, 6, 1, 10), tz="UTC")
        nxt = events.create(ANA, "next", hour(2030, 6, 1, 12), tz="UTC")
        assert [x.id for x in events.list_events(ANA)] == [early.id, mid.id, nxt.id, late.id]
        window = events.list_events(ANA, start=at(2030, 6, 1, 10, 30), end=at(2030, 6, 1, 12))
        assert [x.id for x in window] == [mid.id]  # [start, end): the 12:00 event starts at the window's end
        assert [x.id for x in events.list_events(ANA, limit=2)] == [early.id, mid.id]
        assert [x.id for x in events.list_for_owner("user:usr_ana", start=at(2031, 1, 1))] == [late.id]

    def test_one_uid_per_calendar(self, events: EventStore) -> None:
        events.create(ANA, "a", hour(2030, 1, 2, 10), tz="UTC", uid="meeting-1@example.com")
        with pytest.raises(Conflict):
            events.create(ANA_PHONE, "b", hour(2030, 1, 3, 10), tz="UTC", uid="meeting-1@example.com")
        events.create(BEN, "b", hour(2030, 1, 3, 10), tz="UTC", uid="meeting-1@example.com")  # another calendar
        assert len(events.list_events(ANA)) == 1

    @pytest.mark.parametrize(("start", "end", "param"), [
        (at(999, 6, 1, 10), at(999, 6, 1, 11), "start"),
        (at(9999, 12, 31, 20), at(9999, 12, 31, 22), "start"),
        (at(2999, 12, 31, 23, 30), at(3000, 1, 1, 1, 30), "end"),
    ])
    def test_out_of_range_events_are_refused_and_nothing_is_written(self, events: EventStore, start: datetime,
                                                                     end: datetime, param: str) -> None:
        with pytest.raises(InvalidRequest) as exc:
            events.create(ANA, "x", Interval(start, end), tz="UTC")
        assert exc.value.code == "date_out_of_range" and exc.value.param == param
        assert events.list_events(ANA, include_cancelled=True) == []

    def test_a_refused_move_leaves_the_event_unchanged(self, events: EventStore) -> None:
        event = events.create(ANA, "kept", hour(2030, 3, 4, 10), tz="UTC")
        with pytest.raises(InvalidRequest):
            events.update(ANA, event.id, title="renamed", interval=Interval(at(999, 1, 1, 10), at(999, 1, 1, 11)))
        again = events.get(ANA, event.id)
        assert (again.title, again.start, again.end) == ("kept", event.start, event.end)

    def test_at_most_so_many_events_per_calendar(self, events: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
        import inhouse.apps.schedule.store as rules

        monkeypatch.setattr(rules, "MAX_EVENTS_PER_OWNER", 2)
        for day in (2, 3):
            events.create(ANA, "x", hour(2030, 1, day, 10), tz="UTC")
        with pytest.raises(Conflict):
            events.create(ANA_PHONE, "one too many", hour(2030, 1, 4, 10), tz="UTC")
        events.create(BEN, "another calendar's count is its own", hour(2030, 1, 4, 10), tz="UTC")


class SessionStoreContract:
    @pytest.fixture
    def sessions(self) -> SessionStore:  # pragma: no cover - overridden
        raise NotImplementedError

    def test_create_save_read(self, sessions: SessionStore) -> None:
        s = sessions.create(ANA, ["support", "faq"])
        assert s.id.startswith("ses_") and s.status == "open" and s.messages == [] and s.handoff is None
        s.messages.append({"role": "user", "content": "退货 how?", "at": 1.0})
        s.messages.append({"role": "assistant", "content": "See [1]", "citations": [{"index": 1}], "at": 2.0})
        s.misses = 1
        saved = sessions.save(s)
        again = sessions.get(ANA_PHONE, s.id, for_update=True)
        assert (again.collections, again.messages, again.misses) == (["support", "faq"], s.messages, 1)
        assert again.updated_at == saved.updated_at > again.created_at

    def test_another_owners_session_is_not_found_an_admin_may_only_read(self, sessions: SessionStore) -> None:
        s = sessions.create(ANA, ["support"])
        for actor, for_update in ((BEN, False), (BEN, True), (ADMIN, True)):
            with pytest.raises(NotFound):
                sessions.get(actor, s.id, for_update=for_update)
        assert sessions.get(ADMIN, s.id).id == s.id
        with pytest.raises(NotFound):
            sessions.get(ANA, "ses_unknown")

    def test_handed_over_sessions_queue_oldest_first(self, sessions: SessionStore) -> None:
        first, _, second = (sessions.create(a, ["support"]) for a in (ANA, BEN, BEN))
        for s in (first, second):
            s.status = "handed_over"
            s.handoff = {"reason": "asked", "summary": "wants a person", "at": 5.0}
            sessions.save(s)
        queue = sessions.handed_over()
        assert [s.id for s in queue] == [first.id, second.id] and queue[0].handoff == first.handoff
        assert [s.id for s in sessions.handed_over(limit=1)] == [first.id]

    def test_limits(self, sessions: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
        import inhouse.apps.support.store as rules

        s = sessions.create(ANA, ["support"])
        s.messages = [{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)
        with pytest.raises(InvalidRequest):
            sessions.save(s)
        assert sessions.get(ANA, s.id).messages == []
        monkeypatch.setattr(rules, "MAX_SESSIONS_PER_OWNER", 2)
        sessions.create(ANA, ["support"])
        with pytest.raises(Conflict):
            sessions.create(ANA_PHONE, ["support"])
        sessions.create(BEN, ["support"])
