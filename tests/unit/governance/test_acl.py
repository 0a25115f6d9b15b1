"""The one permission check: roles → actions, then resources (own, shared by group, the calling key)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inhouse.errors import PermissionDenied
from inhouse.governance.acl import ACTIONS, Resource, allowed, require_allowed, role_allows
from inhouse.types import Actor

ADMIN = Actor(key_id="key_a", name="a", role="admin", user_id="usr_a")
ALICE = Actor(key_id="key_al", name="al", role="member", user_id="usr_alice", groups=frozenset({"finance"}))
LEGACY = Actor(key_id="key_old", name="old", role="member")


def test_roles() -> None:
    for action, need in ACTIONS.items():
        assert allowed(ADMIN, action)
        assert allowed(ALICE, action) == (need in ("public", "member"))
        assert allowed(None, action) == (need == "public")
    assert not allowed(ADMIN, "no:such-action") and not role_allows(ADMIN, "")
    assert allowed(ALICE, "chat:create") and not allowed(ALICE, "users:manage")


def test_resources() -> None:
    own = Resource("key", "key_x", owner_user_id="usr_alice")
    theirs = Resource("key", "key_y", owner_user_id="usr_bob")
    shared = Resource("collection", "col_1", owner_user_id="usr_bob", groups=frozenset({"finance", "hr"}))
    other_dept = Resource("collection", "col_2", owner_user_id="usr_bob", groups=frozenset({"hr"}))
    assert allowed(ALICE, "own_keys:read", own)
    assert not allowed(ALICE, "own_keys:read", theirs)
    assert allowed(ALICE, "chat:create", shared)
    assert not allowed(ALICE, "chat:create", other_dept)
    assert all(allowed(ADMIN, "own_keys:read", r) for r in (own, theirs, shared, other_dept))
    # A key bound to no user owns nothing but itself.
    assert allowed(LEGACY, "own_keys:read", Resource("key", "key_old"))
    assert not allowed(LEGACY, "own_keys:read", Resource("key", "key_other"))
    assert not allowed(LEGACY, "own_keys:read", Resource("collection", "c", owner_user_id=None))
    # The role layer comes first: a member's own resource does not grant an admin action.
    assert not allowed(ALICE, "keys:manage", own)


def test_require_allowed_raises() -> None:
    require_allowed(ALICE, "chat:create")
    with pytest.raises(PermissionDenied):
        require_allowed(ALICE, "users:read")
    with pytest.raises(PermissionDenied):
        require_allowed(ALICE, "own_keys:read", Resource("key", "key_y", owner_user_id="usr_bob"))
    with pytest.raises(PermissionDenied):
        require_allowed(ADMIN, "made:up")


names = st.sampled_from(["finance", "hr", "legal", "it"])


@given(actor_groups=st.frozensets(names), res_groups=st.frozensets(names),
       owner=st.sampled_from([None, "usr_alice", "usr_bob"]), action=st.sampled_from(sorted(ACTIONS)))
def test_member_access_is_exactly_own_or_shared(actor_groups: frozenset[str], res_groups: frozenset[str],
                                                owner: str | None, action: str) -> None:
    actor = Actor(key_id="key_al", name="al", role="member", user_id="usr_alice", groups=actor_groups)
    res = Resource("collection", "col_1", owner_user_id=owner, groups=res_groups)
    expected = role_allows(actor, action) and (
        ACTIONS[action] == "public" or owner == "usr_alice" or bool(actor_groups & res_groups))
    assert allowed(actor, action, res) == expected
