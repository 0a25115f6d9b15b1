"""Users, groups, memberships: one security event per action, recorded inside the transaction."""

from __future__ import annotations

import pytest

from inhouse.errors import Conflict, InvalidRequest, NotFound
from inhouse.governance import events
from inhouse.governance.directory import UserDirectory
from inhouse.governance.events import MemoryAuditSink
from inhouse.governance.identity import KeyStore
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.governance import SqliteGovernanceStore
from inhouse.types import Actor


@pytest.fixture
def sink() -> MemoryAuditSink:
    return MemoryAuditSink()


@pytest.fixture
def directory(db: Database, sink: MemoryAuditSink) -> UserDirectory:
    return UserDirectory(SqliteGovernanceStore(db), audit=sink, clock=lambda: 1000.0)


@pytest.fixture
def keys(db: Database, sink: MemoryAuditSink) -> KeyStore:
    return KeyStore(SqliteGovernanceStore(db), audit=sink, clock=lambda: 1000.0)


ADMIN = Actor(key_id="key_admin", name="admin", role="admin", user_id="usr_admin")


def dump(db: Database) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for table in ("users", "user_groups", "group_members", "api_keys"):
        rows += [(table, *tuple(r)) for r in db.query(f"SELECT * FROM {table} ORDER BY 1, 2")]
    return rows


def test_user_lifecycle_emits_one_event_each(directory: UserDirectory, sink: MemoryAuditSink) -> None:
    u = directory.create_user("alice", display_name="Alice Li", by=ADMIN)
    assert u.id.startswith("usr_") and (u.role, u.disabled, u.display_name) == ("member", False, "Alice Li")
    assert directory.get_user(u.id) == u == directory.find_user("ALICE") == directory.find_user(u.id)
    changed = directory.update_user(u.id, role="admin", disabled=True, by=ADMIN)
    assert (changed.role, changed.disabled) == ("admin", True)
    assert directory.update_user(u.id, role="admin") == changed  # no change: no event
    directory.delete_user(u.id, by=ADMIN)
    with pytest.raises(NotFound):
        directory.get_user(u.id)
    assert [e.action for e in sink.events] == [events.USER_CREATED, events.USER_UPDATED, events.USER_DELETED]
    assert all(e.actor_key_id == "key_admin" and e.actor_user_id == "usr_admin" and e.resource == u.id
               for e in sink.events)
    assert sink.events[1].details["changes"] == {"role": {"before": "member", "after": "admin"},
                                                 "disabled": {"before": False, "after": True}}
    assert all(e.outcome == "success" and e.at == 1000.0 for e in sink.events)


def test_names_are_unique_case_insensitively_and_validated(directory: UserDirectory) -> None:
    directory.create_user("alice")
    with pytest.raises(Conflict):
        directory.create_user("Alice")
    for bad in ("", " alice", "a" * 65, "al ice", "al'ice", "-x", "名字", "a\x00"):
        with pytest.raises(InvalidRequest):
            directory.create_user(bad)
    with pytest.raises(InvalidRequest):
        directory.create_user("bob", role="owner")
    with pytest.raises(InvalidRequest):
        directory.create_user("bob", display_name="x\ny")
    directory.create_group("finance")
    with pytest.raises(Conflict):
        directory.create_group("FINANCE")


def test_groups_and_memberships(directory: UserDirectory, sink: MemoryAuditSink) -> None:
    a, b = directory.create_user("alice"), directory.create_user("bob")
    fin = directory.create_group("finance")
    assert directory.add_member(fin.id, a.id) is True
    assert directory.add_member(fin.id, a.id) is False  # idempotent, no second event
    directory.add_member(fin.id, b.id)
    assert [u.name for u in directory.members(fin.id)] == ["alice", "bob"]
    assert [g.name for g in directory.groups_of(a.id)] == ["finance"]
    directory.remove_member(fin.id, b.id)
    with pytest.raises(NotFound):
        directory.remove_member(fin.id, b.id)
    with pytest.raises(NotFound):
        directory.add_member(fin.id, "usr_nope")
    with pytest.raises(NotFound):
        directory.add_member("grp_nope", a.id)
    directory.delete_group(fin.id)
    assert directory.groups_of(a.id) == []
    acts = [e.action for e in sink.events]
    assert acts.count(events.MEMBERSHIP_ADDED) == 2 and acts.count(events.MEMBERSHIP_REMOVED) == 1
    assert acts[-1] == events.GROUP_DELETED and sink.events[-1].details["members"] == [a.id]


def test_delete_user_revokes_keys_and_memberships(directory: UserDirectory, keys: KeyStore, db: Database) -> None:
    a = directory.create_user("alice")
    g = directory.create_group("finance")
    directory.add_member(g.id, a.id)
    rec, _ = keys.create_key("laptop", user_id=a.id)
    directory.delete_user(a.id)
    assert keys.get(rec.id).revoked_at == 1000.0
    assert db.scalar("SELECT count(*) FROM group_members") == 0


def test_admin_cannot_lock_themselves_out(directory: UserDirectory) -> None:
    me = directory.create_user("root", role="admin")
    actor = Actor(key_id="key_x", name="x", role="admin", user_id=me.id)
    for change in ({"role": "member"}, {"disabled": True}):
        with pytest.raises(Conflict):
            directory.update_user(me.id, by=actor, **change)  # type: ignore[arg-type]
    with pytest.raises(Conflict):
        directory.delete_user(me.id, by=actor)
    assert directory.update_user(me.id, display_name="Root", by=actor).display_name == "Root"


def test_failing_audit_sink_rolls_every_action_back(directory: UserDirectory, keys: KeyStore,
                                                     sink: MemoryAuditSink, db: Database) -> None:
    a = directory.create_user("alice")
    g = directory.create_group("finance")
    directory.add_member(g.id, a.id)
    rec, _ = keys.create_key("k", user_id=a.id)
    before = dump(db)
    n_events = len(sink.events)
    sink.fail_with = OSError("audit disk full")
    actions = [
        lambda: directory.create_user("bob"),
        lambda: directory.update_user(a.id, role="admin"),
        lambda: directory.delete_user(a.id),
        lambda: directory.create_group("legal"),
        lambda: directory.delete_group(g.id),
        lambda: directory.remove_member(g.id, a.id),
        lambda: keys.create_key("k2", user_id=a.id),
        lambda: keys.revoke(rec.id),
        lambda: keys.set_limits(rec.id, rpm_limit=5, tokens_per_day_limit=None),
        lambda: keys.ensure_admin_key(),  # a no-op here (keys exist), so it must not raise
    ]
    for act in actions[:-1]:
        with pytest.raises(OSError):
            act()
    assert actions[-1]() is None
    assert dump(db) == before and len(sink.events) == n_events
    sink.fail_with = None
    directory.remove_member(g.id, a.id)
    assert len(sink.events) == n_events + 1


def test_security_events_never_carry_secrets(directory: UserDirectory, keys: KeyStore,
                                             sink: MemoryAuditSink, db: Database) -> None:
    a = directory.create_user("alice")
    _, secret = keys.create_key("k", user_id=a.id)
    stored = db.scalar("SELECT secret_hash FROM api_keys")
    text = repr(sink.events)
    assert secret not in text and stored not in text and secret.split("_")[2] not in text
    assert {e.action for e in sink.events} <= events.SECURITY_ACTIONS
