"""Keys bound to users: role narrowing, groups read fresh, disabled users, per-user key cap, events."""

from __future__ import annotations

import pytest

from inhouse.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound
from inhouse.governance import events
from inhouse.governance.directory import UserDirectory
from inhouse.governance.events import MemoryAuditSink
from inhouse.governance.identity import KeyStore
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.governance import SqliteGovernanceStore


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sink() -> MemoryAuditSink:
    return MemoryAuditSink()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(db: Database, sink: MemoryAuditSink, clock: Clock) -> KeyStore:
    return KeyStore(SqliteGovernanceStore(db), audit=sink, clock=clock, max_keys_per_user=3)


@pytest.fixture
def directory(db: Database, sink: MemoryAuditSink, clock: Clock) -> UserDirectory:
    return UserDirectory(SqliteGovernanceStore(db), audit=sink, clock=clock)


def test_key_of_a_user_carries_user_and_groups(keys: KeyStore, directory: UserDirectory) -> None:
    a = directory.create_user("alice")
    fin, hr = directory.create_group("finance"), directory.create_group("hr")
    directory.add_member(fin.id, a.id)
    rec, secret = keys.create_key("laptop", user_id=a.id)
    assert (rec.user_id, rec.role) == (a.id, "member")
    actor = keys.authenticate(secret)
    assert (actor.user_id, actor.role, actor.groups) == (a.id, "member", frozenset({"finance"}))
    # Membership is read on every request.
    directory.add_member(hr.id, a.id)
    assert keys.authenticate(secret).groups == {"finance", "hr"}
    directory.remove_member(fin.id, a.id)
    assert keys.authenticate(secret).groups == {"hr"}
    directory.delete_group(hr.id)
    assert keys.authenticate(secret).groups == frozenset()


def test_role_is_the_narrower_of_key_and_user(keys: KeyStore, directory: UserDirectory) -> None:
    boss = directory.create_user("boss", role="admin")
    full, full_secret = keys.create_key("full", user_id=boss.id)  # defaults to the user's role
    narrow, narrow_secret = keys.create_key("narrow", user_id=boss.id, role="member")
    assert (full.role, narrow.role) == ("admin", "member")
    assert keys.authenticate(full_secret).role == "admin"
    assert keys.authenticate(narrow_secret).role == "member"
    directory.update_user(boss.id, role="member")
    assert keys.authenticate(full_secret).role == "member"  # demotion applies at once
    directory.update_user(boss.id, role="admin")
    assert keys.authenticate(narrow_secret).role == "member"  # promotion never widens a narrow key
    m = directory.create_user("m")
    with pytest.raises(InvalidRequest):
        keys.create_key("too much", user_id=m.id, role="admin")


def test_disabled_or_deleted_user_cannot_authenticate(keys: KeyStore, directory: UserDirectory,
                                                      db: Database) -> None:
    a = directory.create_user("alice")
    _, secret = keys.create_key("k", user_id=a.id)
    directory.update_user(a.id, disabled=True)
    with pytest.raises(AuthenticationFailed) as e:
        keys.authenticate(secret)
    assert e.value.code == "user_disabled"
    with pytest.raises(InvalidRequest):
        keys.create_key("k2", user_id=a.id)
    directory.update_user(a.id, disabled=False)
    assert keys.authenticate(secret).user_id == a.id
    # A key whose user row vanished (not through delete_user, which revokes) still fails.
    db.execute("DELETE FROM users WHERE id = ?", (a.id,))
    with pytest.raises(AuthenticationFailed):
        keys.authenticate(secret)


def test_unknown_user_and_key_cap(keys: KeyStore, directory: UserDirectory) -> None:
    with pytest.raises(NotFound):
        keys.create_key("k", user_id="usr_missing")
    a = directory.create_user("alice")
    made = [keys.create_key(f"k{i}", user_id=a.id)[0] for i in range(3)]
    with pytest.raises(Conflict):
        keys.create_key("k4", user_id=a.id)
    keys.revoke(made[0].id)
    keys.create_key("k4", user_id=a.id)
    assert len(keys.list_keys(user_id=a.id)) == 4
    assert len(keys.list_keys(user_id=a.id, include_revoked=False)) == 3


def test_standalone_keys_work_as_before(keys: KeyStore) -> None:
    rec, secret = keys.create_key("service")
    actor = keys.authenticate(secret)
    assert (rec.role, actor.user_id, actor.groups) == ("member", None, frozenset())


def test_key_events(keys: KeyStore, directory: UserDirectory, sink: MemoryAuditSink) -> None:
    assert keys.ensure_admin_key() is not None
    a = directory.create_user("alice")
    sink.events.clear()
    rec, _ = keys.create_key("k", user_id=a.id, rpm_limit=10)
    keys.set_limits(rec.id, rpm_limit=10, tokens_per_day_limit=None)  # unchanged: no event
    keys.set_limits(rec.id, rpm_limit=0, tokens_per_day_limit=500)
    keys.revoke(rec.id)
    keys.revoke(rec.id)  # idempotent: one event
    assert [e.action for e in sink.events] == [events.KEY_CREATED, events.KEY_UPDATED, events.KEY_REVOKED]
    assert sink.events[0].details["user_id"] == a.id and sink.events[0].resource == rec.id
    with pytest.raises(NotFound):
        keys.revoke("key_nope")
    with pytest.raises(InvalidRequest):
        keys.set_limits(rec.id, rpm_limit=-1, tokens_per_day_limit=None)


def test_initial_admin_key_is_recorded(keys: KeyStore, sink: MemoryAuditSink) -> None:
    keys.ensure_admin_key()
    assert [(e.action, e.actor_key_id, e.details.get("initial")) for e in sink.events] == [
        (events.KEY_CREATED, None, True)]
