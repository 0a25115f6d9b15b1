"""Identity routes: ``/v1/admin/…`` (users, groups, keys; admins only), ``/v1/me`` and ``/v1/keys`` (a
caller's own keys). Thin: ``UserDirectory`` and ``KeyStore`` do the work and record the security events;
every route declares its action and passes the calling actor as ``by``.

Lookups by id answer 404 both for an unknown id and for someone else's: the two are indistinguishable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from inhouse.api.auth import require
from inhouse.api.bounds import Count, UnixSeconds
from inhouse.api.openapi import errors
from inhouse.api.responses import (
    ApiKey,
    ApiKeyList,
    Deleted,
    GroupList,
    GroupWithMembers,
    Me,
    NewApiKey,
    UserList,
    UserWithGroups,
)
from inhouse.errors import NotFound, PermissionDenied
from inhouse.governance.acl import Resource, allowed
from inhouse.governance.identity import KeyRecord
from inhouse.types import Actor

if TYPE_CHECKING:
    from inhouse.services import Services

RoleName = Literal["admin", "member"]
_RANK = {"member": 0, "admin": 1}


class _Body(BaseModel):
    # Strict: a JSON number is not a boolean and a boolean is not a count (`{"disabled": 0.0}` and
    # `{"rpm_limit": false}` were taken as False and 0; found by the 1,000-case fuzz run).
    model_config = ConfigDict(extra="forbid", strict=True)


class UserCreate(_Body):
    name: str = Field(max_length=64)
    display_name: str | None = Field(None, max_length=200)
    role: RoleName = "member"


class UserPatch(_Body):
    role: RoleName | None = None
    disabled: bool | None = None
    display_name: str | None = Field(None, max_length=200)


class GroupCreate(_Body):
    name: str = Field(max_length=64)


class KeyCreate(_Body):
    name: str = Field(max_length=200)
    user_id: str | None = Field(None, max_length=100, description="Bind the key to this user (recommended).")
    role: RoleName | None = Field(None, description="Defaults to the user's role; may not exceed it.")
    expires_at: UnixSeconds | None = Field(None, description="Unix seconds.")
    rpm_limit: Count | None = None
    tokens_per_day_limit: Count | None = None
    scopes: list[str] | None = Field(None, max_length=8, description="Limit the key to these actions, e.g. "
                                     "[\"apps:support\"] for an embedded widget.")


class KeyPatch(_Body):
    rpm_limit: Count | None = None
    tokens_per_day_limit: Count | None = None


class OwnKeyCreate(_Body):
    name: str = Field(max_length=200)
    role: RoleName | None = Field(None, description="At most the calling key's role (the default).")
    expires_at: UnixSeconds | None = Field(None, description="Unix seconds.")
    scopes: list[str] | None = Field(None, max_length=8, description="Limit the key to these actions.")


def _deleted(id_: str, obj: str) -> dict[str, Any]:
    return {"id": id_, "object": obj, "deleted": True}


def _key_created(record: KeyRecord, secret: str) -> dict[str, Any]:
    return {**record.to_dict(), "secret": secret}


def add_admin_routes(router: APIRouter, services: Services) -> None:
    directory, keys, quotas = services.directory, services.keys, services.quotas

    def user_view(user_id: str) -> dict[str, Any]:
        user = directory.get_user(user_id)
        return {**user.to_dict(), "object": "user", "groups": [g.name for g in directory.groups_of(user_id)]}

    def group_view(group_id: str) -> dict[str, Any]:
        group = directory.get_group(group_id)
        return {**group.to_dict(), "object": "group",
                "members": [{"id": u.id, "name": u.name} for u in directory.members(group_id)]}

    # -- users ---------------------------------------------------------------------------------------

    @router.get("/v1/admin/users", responses={200: {"model": UserList}})
    def list_users(_: Actor = Depends(require("users:read"))) -> dict[str, Any]:
        return {"object": "list", "data": [{**u.to_dict(), "object": "user"} for u in directory.list_users()]}

    @router.post("/v1/admin/users", status_code=201, responses={201: {"model": UserWithGroups}, **errors(409)})
    def create_user(body: UserCreate, actor: Actor = Depends(require("users:manage"))) -> dict[str, Any]:
        user = directory.create_user(body.name, display_name=body.display_name, role=body.role, by=actor)
        return user_view(user.id)

    @router.get("/v1/admin/users/{user_id}", responses={200: {"model": UserWithGroups}})
    def get_user(user_id: str, _: Actor = Depends(require("users:read"))) -> dict[str, Any]:
        return user_view(user_id)

    @router.patch("/v1/admin/users/{user_id}", responses={200: {"model": UserWithGroups}, **errors(
        409, why={409: "An admin may not demote or disable themselves."})})
    def patch_user(user_id: str, body: UserPatch, actor: Actor = Depends(require("users:manage"))) -> dict[str, Any]:
        directory.update_user(user_id, role=body.role, disabled=body.disabled, display_name=body.display_name,
                              by=actor)
        return user_view(user_id)

    @router.delete("/v1/admin/users/{user_id}", responses={200: {"model": Deleted}, **errors(
        409, why={409: "An admin may not delete themselves."})})
    def delete_user(user_id: str, actor: Actor = Depends(require("users:manage"))) -> dict[str, Any]:
        directory.delete_user(user_id, by=actor)
        return _deleted(user_id, "user")

    # -- groups --------------------------------------------------------------------------------------

    @router.get("/v1/admin/groups", responses={200: {"model": GroupList}})
    def list_groups(_: Actor = Depends(require("groups:read"))) -> dict[str, Any]:
        return {"object": "list", "data": [{**g.to_dict(), "object": "group"} for g in directory.list_groups()]}

    @router.post("/v1/admin/groups", status_code=201, responses={201: {"model": GroupWithMembers}, **errors(409)})
    def create_group(body: GroupCreate, actor: Actor = Depends(require("groups:manage"))) -> dict[str, Any]:
        return group_view(directory.create_group(body.name, by=actor).id)

    @router.get("/v1/admin/groups/{group_id}", responses={200: {"model": GroupWithMembers}})
    def get_group(group_id: str, _: Actor = Depends(require("groups:read"))) -> dict[str, Any]:
        return group_view(group_id)

    @router.delete("/v1/admin/groups/{group_id}", responses={200: {"model": Deleted}})
    def delete_group(group_id: str, actor: Actor = Depends(require("groups:manage"))) -> dict[str, Any]:
        directory.delete_group(group_id, by=actor)
        return _deleted(group_id, "group")

    @router.put("/v1/admin/groups/{group_id}/members/{user_id}", responses={200: {"model": GroupWithMembers}})
    def add_member(group_id: str, user_id: str, actor: Actor = Depends(require("groups:manage"))) -> dict[str, Any]:
        added = directory.add_member(group_id, user_id, by=actor)
        return {**group_view(group_id), "added": added}

    @router.delete("/v1/admin/groups/{group_id}/members/{user_id}", responses={200: {"model": GroupWithMembers}})
    def remove_member(group_id: str, user_id: str,
                      actor: Actor = Depends(require("groups:manage"))) -> dict[str, Any]:
        directory.remove_member(group_id, user_id, by=actor)
        return group_view(group_id)

    # -- keys (all of them) --------------------------------------------------------------------------

    @router.get("/v1/admin/keys", responses={200: {"model": ApiKeyList}})
    def list_all_keys(user_id: str | None = None, include_revoked: bool = True,
                      _: Actor = Depends(require("keys:read"))) -> dict[str, Any]:
        records = keys.list_keys(include_revoked=include_revoked, user_id=user_id)
        return {"object": "list", "data": [r.to_dict() for r in records]}

    @router.post("/v1/admin/keys", status_code=201, responses={201: {"model": NewApiKey}, **errors(404, 409, why={
        404: "No user with that `user_id`.", 409: "The user has the most active keys allowed."})})
    def create_key(body: KeyCreate, actor: Actor = Depends(require("keys:manage"))) -> dict[str, Any]:
        record, secret = keys.create_key(
            body.name, role=body.role, expires_at=body.expires_at, user_id=body.user_id,
            rpm_limit=body.rpm_limit, tokens_per_day_limit=body.tokens_per_day_limit, scopes=body.scopes,
            by=actor,
        )
        return _key_created(record, secret)

    @router.get("/v1/admin/keys/{key_id}", responses={200: {"model": ApiKey}})
    def get_key(key_id: str, _: Actor = Depends(require("keys:read"))) -> dict[str, Any]:
        return keys.get(key_id).to_dict()

    @router.patch("/v1/admin/keys/{key_id}", responses={200: {"model": ApiKey}})
    def patch_key(key_id: str, body: KeyPatch, actor: Actor = Depends(require("keys:manage"))) -> dict[str, Any]:
        current = keys.get(key_id)
        # Only the fields sent change; an explicit null returns a limit to the governance default.
        rpm = body.rpm_limit if "rpm_limit" in body.model_fields_set else current.rpm_limit
        tpd = (body.tokens_per_day_limit if "tokens_per_day_limit" in body.model_fields_set
               else current.tokens_per_day_limit)
        return keys.set_limits(key_id, rpm_limit=rpm, tokens_per_day_limit=tpd, by=actor).to_dict()

    @router.delete("/v1/admin/keys/{key_id}", responses={200: {"model": ApiKey}})
    def revoke_key(key_id: str, actor: Actor = Depends(require("keys:manage"))) -> dict[str, Any]:
        return keys.revoke(key_id, by=actor).to_dict()

    # -- the caller ----------------------------------------------------------------------------------

    @router.get("/v1/me", responses={200: {"model": Me}})
    async def me(actor: Actor = Depends(require("me:read"))) -> dict[str, Any]:
        def build() -> dict[str, Any]:
            try:
                key: dict[str, Any] | None = keys.get(actor.key_id).to_dict()
            except NotFound:  # the anonymous loopback actor has no key
                key = None
            user = directory.get_user(actor.user_id).to_dict() if actor.user_id else None
            return {"object": "actor", "key_id": actor.key_id, "role": actor.role, "user": user,
                    "groups": sorted(actor.groups), "key": key, "quota": quotas.status(actor.key_id).to_dict()}

        return await run_in_threadpool(build)

    # -- the caller's own keys -----------------------------------------------------------------------

    def own_key(actor: Actor, key_id: str, action: str) -> KeyRecord:
        try:
            record = keys.get(key_id)
        except NotFound:
            record = None
        if record is None or not allowed(actor, action, Resource("key", record.id, owner_user_id=record.user_id)):
            # The same answer for "no such key" and "not yours".
            raise NotFound(f"No API key with id '{key_id}'.", param="key_id")
        return record

    @router.get("/v1/keys", responses={200: {"model": ApiKeyList}})
    def list_own_keys(actor: Actor = Depends(require("own_keys:read"))) -> dict[str, Any]:
        if actor.user_id is not None:
            records = keys.list_keys(user_id=actor.user_id)
        else:  # a key bound to no user sees itself only
            records = [r for r in keys.list_keys() if r.id == actor.key_id]
        return {"object": "list", "data": [r.to_dict() for r in records]}

    @router.post("/v1/keys", status_code=201, responses={201: {"model": NewApiKey}, **errors(
        409, why={409: "The caller's user has the most active keys allowed."})})
    def create_own_key(body: OwnKeyCreate, actor: Actor = Depends(require("own_keys:manage"))) -> dict[str, Any]:
        if actor.user_id is None:
            raise PermissionDenied("This key is bound to no user, so it cannot create keys; ask an admin.")
        role = body.role or actor.role
        if _RANK[role] > _RANK[actor.role]:
            # The calling key's role, not the user's: a member key of an admin may not mint an admin key.
            raise PermissionDenied("A new key may not have a higher role than the key creating it.")
        # A key made by a key is at most that key: its expiry and limits carry over, or a key an admin limited (an
        # hour, 10 requests a minute) would mint itself an unlimited one. (A scoped key cannot reach this route.)
        caller = keys.get(actor.key_id)
        expires_at = body.expires_at if body.expires_at is not None else caller.expires_at
        if caller.expires_at is not None and (expires_at is None or expires_at > caller.expires_at):
            raise PermissionDenied("A new key may not outlive the key creating it.", param="expires_at")
        record, secret = keys.create_key(body.name, role=role, expires_at=expires_at, user_id=actor.user_id,
                                         rpm_limit=caller.rpm_limit, tokens_per_day_limit=caller.tokens_per_day_limit,
                                         scopes=body.scopes, by=actor, counting_today=True)
        return _key_created(record, secret)

    @router.get("/v1/keys/{key_id}", responses={200: {"model": ApiKey}})
    def get_own_key(key_id: str, actor: Actor = Depends(require("own_keys:read"))) -> dict[str, Any]:
        return own_key(actor, key_id, "own_keys:read").to_dict()

    @router.delete("/v1/keys/{key_id}", responses={200: {"model": ApiKey}})
    def revoke_own_key(key_id: str, actor: Actor = Depends(require("own_keys:manage"))) -> dict[str, Any]:
        own_key(actor, key_id, "own_keys:manage")
        return keys.revoke(key_id, by=actor).to_dict()

