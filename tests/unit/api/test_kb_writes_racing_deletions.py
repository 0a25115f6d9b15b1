"""Over HTTP, writes of the knowledge index that race another change (each made just before the write reaches the
store): a group deleted while a list naming it is written leaves that list (the answer, the stored list and the
request's record say so); a member whose document was restricted meanwhile gets a 409; an upload into a collection
deleted meanwhile a 404; two admins changing one half each of a collection's list both stand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app


def _before(monkeypatch: pytest.MonkeyPatch, obj: Any, method: str, change: Callable[[], Any]) -> None:
    """``change`` runs once, just before the first call of ``obj.method``."""
    real = getattr(obj, method)
    done: list[int] = []

    def hooked(*args: Any, **kwargs: Any) -> Any:
        if not done:
            done.append(1)
            change()
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, method, hooked)


def _final(services: Any, resource: str) -> Any:
    return [r for r in services.audit.records() if r.resource == resource and r.outcome != "started"][-1]


@pytest.fixture
def board(admin: TestClient) -> str:
    admin.post("/v1/admin/groups", json={"name": "staff"}).raise_for_status()
    return str(admin.post("/v1/collections", json={"name": "board", "access": {"groups": ["staff"]}}).json()["id"])


def _delete_group_meanwhile(monkeypatch: pytest.MonkeyPatch, services: Any, method: str) -> str:
    """A group "ma", deleted just before the next ``kb.store.<method>``; its id."""
    gid = services.directory.create_group("ma").id
    _before(monkeypatch, services.kb.store, method, lambda: services.directory.delete_group(gid))
    return str(gid)


def test_an_upload_naming_a_group_deleted_meanwhile_leaves_it_off_the_documents_list(
        admin: TestClient, services: Any, board: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _delete_group_meanwhile(monkeypatch, services, "put_document")
    base = f"/v1/collections/{board}/documents"
    up = admin.post(base, files={"file": ("plan.md", b"# M&A plan\n\nThe target is ACME at 412 million.")},
                    data={"label": "restricted", "groups": "ma"})
    assert up.status_code == 201 and up.json()["access"] == {"groups": [], "keys": []}, up.text
    doc = up.json()["id"]
    assert admin.get(f"{base}/{doc}").json()["access"] == {"groups": [], "keys": []}
    assert _final(services, f"POST {base}").details["groups_deleted_meanwhile"] == ["ma"]
    # A new team under the old name, in the collection's group too: reads none of it.
    gid = admin.post("/v1/admin/groups", json={"name": "ma"}).json()["id"]
    carol = services.directory.create_user("carol")
    for group in (gid, services.directory.find_group("staff").id):
        admin.put(f"/v1/admin/groups/{group}/members/{carol.id}").raise_for_status()
    key = services.keys.create_key("carol", user_id=carol.id)[1]
    with TestClient(build_app(services), headers={"Authorization": f"Bearer {key}"}) as c:
        assert c.get(f"{base}/{doc}").status_code == 404
        assert c.post("/v1/search", json={"query": "ACME target"}).json()["data"] == []


def test_a_collections_list_naming_a_group_deleted_meanwhile_leaves_it_off(
        admin: TestClient, services: Any, board: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _delete_group_meanwhile(monkeypatch, services, "update_collection")
    r = admin.patch(f"/v1/collections/{board}", json={"access": {"groups": ["staff", "ma"]}})
    assert r.status_code == 200 and r.json()["access"]["groups"] == ["staff"], r.text
    assert admin.get(f"/v1/collections/{board}").json()["access"]["groups"] == ["staff"]
    details = _final(services, f"PATCH /v1/collections/{board}").details
    assert details["groups_deleted_meanwhile"] == ["ma"] and details["access_after"]["groups"] == ["staff"]


def test_a_new_collection_naming_a_group_deleted_meanwhile_leaves_it_off(
        admin: TestClient, services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _delete_group_meanwhile(monkeypatch, services, "create_collection")
    r = admin.post("/v1/collections", json={"name": "deal", "access": {"groups": ["ma"]}})
    assert r.status_code == 201 and r.json()["access"]["groups"] == [], r.text
    assert admin.get("/v1/collections/deal").json()["access"]["groups"] == []


def test_a_documents_list_naming_a_group_deleted_meanwhile_leaves_it_off(
        admin: TestClient, services: Any, board: str, monkeypatch: pytest.MonkeyPatch) -> None:
    base = f"/v1/collections/{board}/documents"
    doc = admin.post(base, files={"file": ("plan.md", b"# Plan\n\nplan")}, data={"label": "restricted"}).json()["id"]
    _delete_group_meanwhile(monkeypatch, services, "relabel")
    r = admin.patch(f"{base}/{doc}", json={"access": {"groups": ["staff", "ma"]}})
    assert r.status_code == 200 and r.json()["access"] == {"groups": ["staff"], "keys": []}, r.text
    assert admin.get(f"{base}/{doc}").json()["access"]["groups"] == ["staff"]
    assert _final(services, f"PATCH {base}/{doc}").details["access_after"] == {"groups": ["staff"], "keys": []}


def test_a_member_whose_document_was_restricted_meanwhile_gets_a_409(
        admin: TestClient, client: TestClient, services: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    member = services.keys.authenticate(services.member_key).key_id
    col = admin.post("/v1/collections", json={"name": "plans", "access": {"keys": [member]}}).json()["id"]
    base = f"/v1/collections/{col}/documents"
    doc = client.post(base, files={"file": ("plan.md", b"# Plan\n\nversion 1")}, data={"label": "internal"}).json()
    _before(monkeypatch, services.kb.store, "put_document",
            lambda: admin.patch(f"{base}/{doc['id']}", json={"label": "restricted"}).raise_for_status())
    r = client.post(base, files={"file": ("plan.md", b"# Plan\n\nversion 2")})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict", r.text
    after = admin.get(f"{base}/{doc['id']}").json()
    assert (after["label"], after["version"]) == ("restricted", 1)


def test_an_upload_into_a_collection_deleted_meanwhile_is_a_404(
        admin: TestClient, services: Any, board: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _before(monkeypatch, services.kb.store, "put_document",
            lambda: admin.delete(f"/v1/collections/{board}").raise_for_status())
    r = admin.post(f"/v1/collections/{board}/documents", files={"file": ("plan.md", b"# Plan\n\nplan")})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    assert r.json()["error"]["param"] == "collection"


def test_two_admins_changing_one_half_each_of_a_collections_list_both_stand(
        admin: TestClient, services: Any, board: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _before(monkeypatch, services.kb.store, "update_collection",
            lambda: admin.patch(f"/v1/collections/{board}", json={"access": {"groups": []}}).raise_for_status())
    r = admin.patch(f"/v1/collections/{board}", json={"access": {"keys": ["key_auditor"]}})
    assert r.status_code == 200 and r.json()["access"] == {"groups": [], "keys": ["key_auditor"]}, r.text
