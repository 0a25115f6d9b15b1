from __future__ import annotations

import hashlib
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inhouse.errors import AuthenticationFailed, InvalidRequest, NotFound, StorageReadOnly
from inhouse.governance.identity import OUTAGE_GRACE_S, KeyStore
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.governance import SqliteGovernanceStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(db: Database, clock: Clock) -> KeyStore:
    return KeyStore(SqliteGovernanceStore(db), clock=clock)


def test_create_and_authenticate(keys: KeyStore) -> None:
    record, secret = keys.create_key("alice laptop")
    assert record.id.startswith("key_")
    assert secret.startswith("ih_" + record.id.removeprefix("key_") + "_")
    assert len(secret.split("_", 2)[2]) >= 32
    assert secret.startswith(record.prefix)
    actor = keys.authenticate(secret)
    assert (actor.key_id, actor.name, actor.role) == (record.id, "alice laptop", "member")
    assert not actor.is_admin


def test_only_the_hash_is_stored(keys: KeyStore, db: Database) -> None:
    _, secret = keys.create_key("k")
    row = db.query_one("SELECT * FROM api_keys")
    assert row is not None
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in [str(v) for v in tuple(row)]


def test_wrong_secret_for_existing_id(keys: KeyStore) -> None:
    _, secret = keys.create_key("k")
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    with pytest.raises(AuthenticationFailed):
        keys.authenticate(tampered)


def test_revoked_and_expired(keys: KeyStore, clock: Clock) -> None:
    rec, secret = keys.create_key("r")
    keys.revoke(rec.id)
    first = keys.get(rec.id).revoked_at
    keys.revoke(rec.id)  # idempotent: the first revocation time stays
    assert keys.get(rec.id).revoked_at == first
    with pytest.raises(AuthenticationFailed, match="revoked"):
        keys.authenticate(secret)

    _, secret2 = keys.create_key("e", expires_at=clock.now + 10)
    keys.authenticate(secret2)
    clock.now += 11
    with pytest.raises(AuthenticationFailed, match="expired"):
        keys.authenticate(secret2)
    assert keys.count() == 2
    assert keys.count(active_only=True) == 0


def test_revoke_unknown(keys: KeyStore) -> None:
    with pytest.raises(NotFound):
        keys.revoke("key_doesnotexist")


def test_bad_arguments(keys: KeyStore, clock: Clock) -> None:
    with pytest.raises(InvalidRequest):
        keys.create_key("  ")
    with pytest.raises(InvalidRequest):
        keys.create_key("x", role="root")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        keys.create_key("x", expires_at=clock.now - 1)


def test_list_keys_and_last_used(keys: KeyStore, clock: Clock) -> None:
    a, sa = keys.create_key("a", role="admin")
    clock.now += 1
    b, _ = keys.create_key("b")
    assert [k.id for k in keys.list_keys()] == [a.id, b.id]
    keys.authenticate(sa)
    assert keys.get(a.id).last_used_at == clock.now
    keys.revoke(b.id)
    assert [k.id for k in keys.list_keys(include_revoked=False)] == [a.id]
    assert keys.authenticate(sa).is_admin


def test_a_key_verified_recently_is_known_for_the_grace_period_only(keys: KeyStore, clock: Clock) -> None:
    record, secret = keys.create_key("scraper", role="admin")
    _, other_secret = keys.create_key("never used")
    assert keys.recently_verified(secret) is None  # not verified yet
    actor = keys.authenticate(secret)
    clock.now += OUTAGE_GRACE_S
    assert keys.recently_verified(secret) == actor and keys.recently_verified(other_secret) is None
    assert keys.recently_verified(secret + "x") is None and keys.recently_verified("ih_nonsense") is None
    assert keys.recently_verified("ih_é") is None and keys.recently_verified(secret + "\x00") is None
    clock.now += 1
    assert keys.recently_verified(secret) is None  # beyond the grace period
    keys.authenticate(secret)
    keys.revoke(record.id)
    assert keys.recently_verified(secret) is None  # revoked here: forgotten at once


def test_a_store_that_cannot_note_the_last_use_does_not_fail_the_check(keys: KeyStore, clock: Clock,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    record, secret = keys.create_key("a")

    def refuse(*_: object) -> None:
        raise StorageReadOnly("read-only")

    monkeypatch.setattr(keys._store, "touch_key", refuse)  # the disk turned read-only
    assert keys.authenticate(secret).key_id == record.id
    assert keys.get(record.id).last_used_at is None


def test_ensure_admin_key_once(keys: KeyStore) -> None:
    secret = keys.ensure_admin_key()
    assert secret is not None
    assert keys.authenticate(secret).is_admin
    assert keys.ensure_admin_key() is None
    assert keys.count() == 1


def test_ensure_admin_key_concurrent(keys: KeyStore) -> None:
    results: list[str | None] = []
    threads = [threading.Thread(target=lambda: results.append(keys.ensure_admin_key())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert keys.count() == 1


@pytest.mark.parametrize("bad", [
    "", " ", "ih_", "ih__", "Bearer x", "ih_0123456789abcdef_" + "a" * 10,
    "ih_0123456789abcdef_" + "a" * 5000, "ih_0123456789abcdef_' OR 1=1 --aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "ih_0123456789abcdef_ä" * 3, "\x00" * 50,
    "ih_0123456789ABCDEF_" + "a" * 43,
])
def test_malformed_secrets(keys: KeyStore, bad: str) -> None:
    keys.create_key("present")
    with pytest.raises(AuthenticationFailed):
        keys.authenticate(bad)


def test_non_string_secret(keys: KeyStore) -> None:
    for bad in (None, 12, b"ih_x", ["ih_"]):
        with pytest.raises(AuthenticationFailed):
            keys.authenticate(bad)


_hex = st.text("0123456789abcdef", min_size=16, max_size=16)
_tail = st.text(st.characters(), min_size=0, max_size=300)
_fuzzed = st.one_of(
    st.text(max_size=500),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.builds(lambda h, t: f"ih_{h}_{t}", _hex, _tail),
    st.builds(lambda h, t: f"ih_{h}_{t}", _hex,
              st.text("ABCDEFabcdef0123456789-_", min_size=32, max_size=64)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=_fuzzed)
def test_fuzzed_secrets_only_ever_fail_authentication(keys: KeyStore, secret: str) -> None:
    try:
        keys.authenticate(secret)
    except AuthenticationFailed:
        return
    pytest.fail(f"authenticated a fuzzed secret: {secret!r}")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.one_of(_tail, st.text("ABCDEFabcdef0123456789-_", min_size=32, max_size=64)))
def test_fuzzed_secrets_for_a_real_key_id_fail(keys: KeyStore, tail: str) -> None:
    if keys.count() == 0:
        keys.create_key("target")
    prefix = keys.list_keys()[0].prefix
    with pytest.raises(AuthenticationFailed):
        keys.authenticate(f"{prefix}_{tail}")


def test_a_scoped_key_an_old_release_made_for_an_admin_authenticates_as_a_member(keys: KeyStore, db: Database) -> None:
    """Releases before cbdadec let an admin key be limited to apps:support; such a row must not keep an admin's
    clearance (another owner's support sessions, every collection) after an upgrade."""
    record, secret = keys.create_key("site-widget", scopes=["apps:support"])
    db.execute("UPDATE api_keys SET role = 'admin' WHERE id = ?", (record.id,))  # as the old release stored it
    actor = keys.authenticate(secret)
    assert actor.role == "member" and not actor.is_admin
    assert actor.scopes == frozenset({"apps:support"})
