"""Per-key quotas with an injected clock: a sliding minute for requests, a UTC day for tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inhouse.errors import Overloaded, StorageFull, StoreUnavailable
from inhouse.governance.identity import KeyStore
from inhouse.governance.process import process_tag
from inhouse.governance.quotas import DAY_S, QuotaService
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.governance import SqliteGovernanceStore
from inhouse.testing.crash import ended_process


class Clock:
    now = 100 * DAY_S + 3600.0  # 01:00 UTC

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_requests_per_minute_sliding_window(db: Database, clock: Clock) -> None:
    rec, _ = KeyStore(SqliteGovernanceStore(db)).create_key("k", rpm_limit=3)
    q = QuotaService(SqliteGovernanceStore(db), clock=clock)
    start = clock.now
    for t in (0.0, 10.0, 20.0):
        clock.now = start + t
        q.check(rec.id)
    with pytest.raises(Overloaded) as e:
        q.check(rec.id)
    assert e.value.code == "rate_limit_exceeded"
    assert e.value.retry_after_s == pytest.approx(40.0)  # the first request leaves the window in 40 s
    clock.now += 40.0
    q.check(rec.id)  # one slot freed
    with pytest.raises(Overloaded):
        q.check(rec.id)


def test_refused_requests_do_not_count(db: Database, clock: Clock) -> None:
    rec, _ = KeyStore(SqliteGovernanceStore(db)).create_key("k", rpm_limit=1)
    q = QuotaService(SqliteGovernanceStore(db), clock=clock)
    q.check(rec.id)
    for _ in range(5):
        clock.now += 1
        with pytest.raises(Overloaded):
            q.check(rec.id)
    clock.now += 55.0
    q.check(rec.id)


def test_tokens_per_day_persist_and_renew_at_midnight(db: Database, clock: Clock) -> None:
    rec, _ = KeyStore(SqliteGovernanceStore(db)).create_key("k", tokens_per_day_limit=100)
    q = QuotaService(SqliteGovernanceStore(db), clock=clock)
    q.check(rec.id)
    q.record_usage(rec.id, 60)
    q.check(rec.id)
    q.record_usage(rec.id, 60)  # admitted under budget, finished over it
    # A restart (new service, same database) keeps the count.
    q2 = QuotaService(SqliteGovernanceStore(db), clock=clock)
    with pytest.raises(Overloaded) as e:
        q2.check(rec.id)
    assert e.value.code == "quota_exceeded"
    assert e.value.retry_after_s == pytest.approx(DAY_S - 3600.0)
    st = q2.status(rec.id)
    assert (st.tokens_used_today, st.requests_today, st.tokens_per_day_limit) == (120, 2, 100)
    clock.now = 101 * DAY_S
    q2.check(rec.id)
    assert q2.status(rec.id).tokens_used_today == 0


def test_defaults_overrides_and_unlimited(db: Database, clock: Clock) -> None:
    keys = KeyStore(SqliteGovernanceStore(db))
    default, _ = keys.create_key("default")
    unlimited, _ = keys.create_key("unlimited", rpm_limit=0, tokens_per_day_limit=0)
    q = QuotaService(SqliteGovernanceStore(db), default_rpm=2, default_tokens_per_day=10, clock=clock)
    assert q.limits(default.id) == (2, 10) and q.limits(unlimited.id) == (0, 0)
    assert q.limits("key_anonymous") == (0, 0)
    for _ in range(50):
        q.check(unlimited.id)
        q.record_usage(unlimited.id, 1000)
        q.check("key_anonymous")
    q.check(default.id)
    q.check(default.id)
    with pytest.raises(Overloaded):
        q.check(default.id)
    keys.set_limits(default.id, rpm_limit=5, tokens_per_day_limit=None)  # takes effect at once
    q.check(default.id)
    q.record_usage(default.id, 10)
    with pytest.raises(Overloaded):
        q.check(default.id)


def test_charges_the_store_cannot_take_are_kept_and_added_to_their_own_day(db: Database, clock: Clock,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteGovernanceStore(db)
    rec, _ = KeyStore(store).create_key("k", tokens_per_day_limit=1000)
    q = QuotaService(store, clock=clock)
    add, away = store.add_usage, [True]

    def add_usage(key_id: str, day: int, tokens: int) -> None:
        if away[0]:
            raise StoreUnavailable("The database cannot be reached right now.")
        add(key_id, day, tokens)

    monkeypatch.setattr(store, "add_usage", add_usage)
    today = int(clock.now // DAY_S)
    q.record_usage(rec.id, 600)  # the request has ended: its charge waits instead of failing
    clock.now += DAY_S  # the outage lasts past midnight
    q.record_usage(rec.id, 50)
    assert q.waiting == 2 and store.usage(rec.id, today) == (0, 0)
    away[0] = False
    q.record_usage(rec.id, 25)
    assert q.waiting == 0
    assert store.usage(rec.id, today) == (600, 1) and store.usage(rec.id, today + 1) == (75, 2)


def test_charges_kept_by_a_process_that_died_are_added_by_the_next_once(db: Database, clock: Clock, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The first server keeps three charges through an outage, in memory and in the spool, adds one once the store
    is back and dies before the others (or before it could remove the file): the next server adds exactly the two
    it had not, to their own days, and the spool goes."""
    store = SqliteGovernanceStore(db)
    rec, _ = KeyStore(store).create_key("k")
    spool = tmp_path / "usage.waiting.jsonl"
    first = QuotaService(store, clock=clock)
    assert first.take_over_kept(spool) == 0 and not spool.exists()
    add, calls = store.add_usage, []

    def add_usage(key_id: str, day: int, tokens: int) -> None:
        calls.append(tokens)
        if len(calls) <= 3 or len(calls) == 5:  # away for three charges; then one goes in, and the process "dies"
            raise StoreUnavailable("The database cannot be reached right now.")
        add(key_id, day, tokens)

    monkeypatch.setattr(store, "add_usage", add_usage)
    today = int(clock.now // DAY_S)
    first.record_usage(rec.id, 100)
    first.record_usage(rec.id, 20)
    clock.now += DAY_S
    first.record_usage(rec.id, 3)
    assert first.waiting == 3 and len(spool.read_text().splitlines()) == 3
    assert oct(spool.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(StoreUnavailable):
        first._flush()  # the first kept charge is added (call 4), the second is not (call 5): the process dies here
    assert store.usage(rec.id, today) == (100, 1) and first.waiting == 2
    monkeypatch.setattr(store, "add_usage", add)  # the store is back; a new process starts
    with spool.open("a") as f:
        f.write('{"charge": "cut')  # a line a crash cut short
    second = QuotaService(store, clock=clock)
    assert second.take_over_kept(spool) == 2 and second.waiting == 0
    assert store.usage(rec.id, today) == (120, 2) and store.usage(rec.id, today + 1) == (3, 1)  # nothing twice
    assert not spool.exists()


def test_charges_kept_by_a_replica_that_died_are_added_once_by_the_next(db: Database, clock: Clock,
                                                                        tmp_path: Path) -> None:
    """Replicas sharing the data directory keep one spool each, named by their process. The next to start adds the
    charges of those that are gone, and not those marked done, even when the mark is in a file read before the
    charge's (a spool that a dead replica had taken over itself); a running replica's charges stay its own."""
    store = SqliteGovernanceStore(db)
    rec, _ = KeyStore(store).create_key("k")
    like, today = tmp_path / "usage.waiting.jsonl", int(clock.now // DAY_S)
    dead = process_tag(ended_process())
    charge = {"key_id": rec.id, "day": today}
    (tmp_path / f"usage.waiting.{dead}.from-00000000.jsonl").write_text('{"done": "c2"}\n')
    (tmp_path / f"usage.waiting.{dead}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in [
        {**charge, "tokens": 100, "charge": "c1"}, {**charge, "tokens": 20, "charge": "c2"}]))
    (tmp_path / f"usage.waiting.{process_tag(ended_process())}.jsonl").write_text(
        json.dumps({**charge, "tokens": 3, "charge": "c3"}) + "\n")
    running = tmp_path / "usage.waiting.other_host-1-1.jsonl"
    running.write_text(json.dumps({**charge, "tokens": 5000, "charge": "c4"}) + "\n")
    q = QuotaService(store, clock=clock)
    assert q.take_over_kept(like, per_process=True) == 2 and q.waiting == 0
    assert store.usage(rec.id, today) == (103, 2)
    assert [p.name for p in tmp_path.glob("usage.waiting*")] == [running.name]


def test_kept_charges_are_bounded(db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteGovernanceStore(db)
    q = QuotaService(store, clock=clock)

    def full(key_id: str, day: int, tokens: int) -> None:
        raise StorageFull("the disk is full")

    monkeypatch.setattr(store, "add_usage", full)
    monkeypatch.setattr(q._kept, "limit", 2)  # MAX_KEPT_CHARGES, as the service was built with it
    q.record_usage("key_a", 1)
    q.record_usage("key_a", 1)
    with pytest.raises(StorageFull):
        q.record_usage("key_a", 1)
