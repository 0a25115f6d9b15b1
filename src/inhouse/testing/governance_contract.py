"""``GovernanceStoreContract``: the conformance suite every ``GovernanceStore`` passes, directly and under the
services that use it (``KeyStore``, ``UserDirectory``, ``QuotaService``). Subclass it and provide a ``store``
fixture (an empty, migrated store)::

    class TestSqliteGovernanceStore(GovernanceStoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            db = open_inhouse_db(tmp_path / "inhouse.db")
            yield SqliteGovernanceStore(db)
            db.close()
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from inhouse.errors import AuditUnavailable, AuthenticationFailed, Conflict, InvalidRequest
from inhouse.governance import events
from inhouse.governance.directory import UserDirectory
from inhouse.governance.events import MemoryAuditSink, SecurityEvent
from inhouse.governance.identity import KeyStore
from inhouse.governance.quotas import QuotaService
from inhouse.governance.store import GovernanceStore, GroupRecord, KeyRecord, UserRecord


def user(uid: str, name: str, *, role: str = "member", disabled: bool = False, at: float = 1.0) -> UserRecord:
    return UserRecord(id=uid, name=name, display_name=name.title(), role=role, disabled=disabled,  # type: ignore[arg-type]
                      created_at=at)


def key(kid: str, *, user_id: str | None = None, at: float = 1.0, expires_at: float | None = None,
        scopes: tuple[str, ...] | None = None) -> KeyRecord:
    return KeyRecord(id=kid, name=f"{kid} name", prefix=f"ih_{kid}", role="member", user_id=user_id, created_at=at,
                     expires_at=expires_at, revoked_at=None, last_used_at=None, scopes=scopes)


class FailingSink:
    def record(self, event: SecurityEvent) -> None:
        raise AuditUnavailable("the audit log is down")


class GovernanceStoreContract:
    @pytest.fixture
    def store(self, tmp_path: Any) -> GovernanceStore:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- rows ---------------------------------------------------------------------------------------------

    def test_keys(self, store: GovernanceStore) -> None:
        store.insert_user(user("usr_a", "ann"))
        store.insert_key(key("key_2", user_id="usr_a", at=2.0, scopes=("apps:support",)), "h2")
        store.insert_key(key("key_1", at=2.0, expires_at=5.0), "h1")
        store.insert_key(key("key_0", at=3.0), "h0")
        assert [k.id for k in store.list_keys()] == ["key_1", "key_2", "key_0"]  # created_at, then id
        assert [k.id for k in store.list_keys(user_id="usr_a")] == ["key_2"]
        assert store.get_key("key_2") == key("key_2", user_id="usr_a", at=2.0, scopes=("apps:support",))
        assert store.get_key("key_nope") is None and store.stored_key("key_nope") is None
        stored = store.stored_key("key_2")
        assert stored is not None and stored.secret_hash == "h2" and stored.user == user("usr_a", "ann")
        bare = store.stored_key("key_0")
        assert bare is not None and bare.user is None and bare.key.scopes is None
        assert store.count_keys() == 3 and store.count_keys(active_at=4.0) == 3 and store.count_keys(active_at=6.0) == 2
        assert store.count_keys(user_id="usr_a") == 1
        assert store.revoke_key("key_1", 7.0) and not store.revoke_key("key_1", 8.0)
        # key_1 expired at 5.0 (revoked at 7.0): usable since 4.0, not since 5.0
        assert store.count_keys(active_since=4.0) == 3 and store.count_keys(active_since=5.0) == 2
        assert store.get_key("key_1").revoked_at == 7.0  # type: ignore[union-attr]
        assert [k.id for k in store.list_keys(include_revoked=False)] == ["key_2", "key_0"]
        store.set_key_limits("key_0", 10, 0)
        store.touch_key("key_0", 9.5)
        k0 = store.get_key("key_0")
        assert k0 is not None and (k0.rpm_limit, k0.tokens_per_day_limit, k0.last_used_at) == (10, 0, 9.5)
        store.insert_key(key("key_3", user_id="usr_a"), "h3")
        assert store.revoke_user_keys("usr_a", 11.0) == ["key_2", "key_3"]
        # revoked keys count as usable since any time before their revocation
        assert store.count_keys(user_id="usr_a", active_since=10.0) == 2 and store.count_keys(user_id="usr_a",
                                                                                          active_since=11.0) == 0
        assert store.revoke_user_keys("usr_a", 12.0) == []

    def test_users_and_names_ignore_ascii_case(self, store: GovernanceStore) -> None:
        store.insert_user(user("usr_b", "bob"))
        store.insert_user(user("usr_a", "Ann"))
        with pytest.raises(Conflict):
            store.insert_user(user("usr_c", "BOB"))
        assert [u.name for u in store.list_users()] == ["Ann", "bob"]
        assert store.find_user("ANN") == store.find_user("usr_a") == store.get_user("usr_a")
        assert store.find_user("carol") is None and store.get_user("usr_x") is None
        store.update_user(user("usr_b", "bob", role="admin", disabled=True))
        b = store.get_user("usr_b")
        assert b is not None and (b.role, b.disabled, b.display_name) == ("admin", True, "Bob")
        store.delete_user("usr_b")
        assert store.get_user("usr_b") is None

    def test_groups_and_memberships(self, store: GovernanceStore) -> None:
        for u in (user("usr_1", "zed"), user("usr_2", "Amy")):
            store.insert_user(u)
        store.insert_group(GroupRecord("grp_f", "finance", 1.0))
        store.insert_group(GroupRecord("grp_h", "HR", 1.0))
        with pytest.raises(Conflict):
            store.insert_group(GroupRecord("grp_x", "hr", 2.0))
        assert [g.name for g in store.list_groups()] == ["finance", "HR"]
        assert store.find_group("hr") == store.get_group("grp_h")
        assert store.add_member("grp_h", "usr_1", 3.0) and not store.add_member("grp_h", "usr_1", 4.0)
        assert store.add_member("grp_h", "usr_2", 3.0) and store.add_member("grp_f", "usr_1", 3.0)
        assert [u.name for u in store.members("grp_h")] == ["Amy", "zed"]
        assert [g.name for g in store.groups_of("usr_1")] == ["finance", "HR"]
        assert store.remove_member("grp_h", "usr_2") and not store.remove_member("grp_h", "usr_2")
        store.delete_user("usr_1")  # memberships go with the user
        assert store.members("grp_f") == [] and store.members("grp_h") == []
        store.add_member("grp_f", "usr_2", 5.0)
        store.delete_group("grp_f")  # and with the group
        assert store.groups_of("usr_2") == [] and store.get_group("grp_f") is None

    def test_usage_per_key_and_day(self, store: GovernanceStore) -> None:
        assert store.usage("key_a", 100) == (0, 0)
        store.add_usage("key_a", 100, 30)
        store.add_usage("key_a", 100, 12)
        store.add_usage("key_a", 101, 5)
        assert store.usage("key_a", 100) == (42, 2) and store.usage("key_a", 101) == (5, 1)

    def test_transaction_commits_or_rolls_back(self, store: GovernanceStore) -> None:
        with store.transaction() as tx:
            tx.insert_user(user("usr_in", "inside"))
            assert tx.get_user("usr_in") is not None  # the transaction sees its own writes
        assert store.get_user("usr_in") is not None
        with pytest.raises(RuntimeError), store.transaction() as tx:
            tx.insert_user(user("usr_gone", "gone"))
            tx.insert_key(key("key_gone", user_id="usr_gone"), "h")
            raise RuntimeError("the audit record could not be written")
        assert store.get_user("usr_gone") is None and store.get_key("key_gone") is None

    # -- the services over the store ----------------------------------------------------------------------

    def test_keys_authenticate_with_the_users_role_and_groups(self, store: GovernanceStore) -> None:
        sink = MemoryAuditSink()
        directory, keys = UserDirectory(store, audit=sink), KeyStore(store, audit=sink)
        ann = directory.create_user("ann", role="admin")
        hr = directory.create_group("hr")
        directory.add_member(hr.id, ann.id)
        record, secret = keys.create_key("laptop", user_id=ann.id)
        actor = keys.authenticate(secret)
        assert (actor.key_id, actor.role, actor.user_id, actor.groups) == (record.id, "admin", ann.id, {"hr"})
        assert keys.get(record.id).last_used_at is not None
        directory.update_user(ann.id, role="member")
        assert keys.authenticate(secret).role == "member"
        directory.update_user(ann.id, disabled=True)
        with pytest.raises(AuthenticationFailed):
            keys.authenticate(secret)
        directory.update_user(ann.id, disabled=False)
        deleted = directory.delete_user(ann.id)
        assert keys.get(record.id).revoked_at is not None and deleted.id == ann.id
        with pytest.raises(AuthenticationFailed):
            keys.authenticate(secret)
        assert [e.action for e in sink.events] == [
            events.USER_CREATED, events.GROUP_CREATED, events.MEMBERSHIP_ADDED, events.KEY_CREATED,
            events.USER_UPDATED, events.USER_UPDATED, events.USER_UPDATED, events.USER_DELETED]

    def test_a_failed_audit_record_undoes_the_change(self, store: GovernanceStore) -> None:
        directory, keys = UserDirectory(store, audit=FailingSink()), KeyStore(store, audit=FailingSink())
        with pytest.raises(AuditUnavailable):
            directory.create_user("ann")
        with pytest.raises(AuditUnavailable):
            keys.create_key("k")
        assert store.list_users() == [] and store.count_keys() == 0

    def test_quotas_count_tokens_per_day(self, store: GovernanceStore) -> None:
        keys = KeyStore(store)
        record, _ = keys.create_key("k", tokens_per_day_limit=100)
        quotas = QuotaService(store, clock=lambda: 86_400.0 * 3 + 5)
        quotas.record_usage(record.id, 60)
        quotas.record_usage(record.id, 50)
        status = quotas.status(record.id)
        assert (status.tokens_used_today, status.requests_today, status.tokens_per_day_limit) == (110, 2, 100)
        with pytest.raises(Exception, match="tokens for today"):
            quotas.check(record.id)

    def test_concurrent_key_creation_respects_the_per_user_limit(self, store: GovernanceStore) -> None:
        ann = UserDirectory(store, audit=MemoryAuditSink()).create_user("ann")
        keys = KeyStore(store, max_keys_per_user=5)
        made: list[str] = []
        refused: list[BaseException] = []

        def work() -> None:
            for i in range(5):
                try:
                    made.append(keys.create_key(f"k{i}", user_id=ann.id)[0].id)
                except (Conflict, InvalidRequest) as exc:
                    refused.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(made) == 5 and len(refused) == 15 and store.count_keys(user_id=ann.id) == 5
