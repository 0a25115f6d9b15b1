"""The in-memory requests/minute window when the wall clock steps back (NTP correcting the time at boot, a VM snapshot
restored, an admin fixing the date): a key waits at most one window, never as long as the step. Before the fix the
admissions made before the step stayed "in the future": stepped back one hour, a key at 6 requests a minute under a
limit of 10 was refused with ``Retry-After`` 3570 s. The real ``QuotaService`` and ``MemoryRequestWindows`` on a
migrated SQLite governance store, the wall clock injected."""

from __future__ import annotations

import pytest

from inhouse.errors import Overloaded
from inhouse.governance.identity import KeyStore
from inhouse.governance.quotas import WINDOW_S, MemoryRequestWindows, QuotaService
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.governance import SqliteGovernanceStore


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_under_its_limit_is_admitted_after_the_clock_steps_back(db: Database) -> None:
    rec, _ = KeyStore(SqliteGovernanceStore(db)).create_key("k", rpm_limit=10)
    clock = Clock()
    q = QuotaService(SqliteGovernanceStore(db), clock=clock, windows=MemoryRequestWindows())
    q.check(rec.id)
    clock.now -= 3600  # stepped back one hour
    for _ in range(20):  # one request every 10 s: 6 a minute, the limit is 10
        q.check(rec.id)
        clock.now += 10


def test_a_key_at_its_limit_waits_at_most_one_window_after_a_step_back(db: Database) -> None:
    rec, _ = KeyStore(SqliteGovernanceStore(db)).create_key("k", rpm_limit=3)
    clock = Clock()
    q = QuotaService(SqliteGovernanceStore(db), clock=clock, windows=MemoryRequestWindows())
    for _ in range(3):
        q.check(rec.id)
    clock.now -= 3600
    with pytest.raises(Overloaded) as e:  # its three requests are still counted, as made now
        q.check(rec.id)
    assert 0 < e.value.retry_after_s <= WINDOW_S
    clock.now += WINDOW_S
    q.check(rec.id)


def test_a_slightly_earlier_time_from_a_racing_thread_does_not_free_the_window() -> None:
    w = MemoryRequestWindows()
    assert [w.admit("key_a", 2, t) for t in (1000.0, 1000.002)] == [None, None]
    assert w.admit("key_a", 2, 1000.001) == pytest.approx(WINDOW_S - 0.001)  # read the clock before the last one
