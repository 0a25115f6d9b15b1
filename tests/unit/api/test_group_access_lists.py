"""Over HTTP: a collection or document may be shared only with groups that exist (400 ``unknown_group``), and a
deleted group's name leaves every access list, so a group created later under that name reads none of it."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from inhouse.api.app import build_app


def test_an_access_list_naming_no_group_is_refused(admin: TestClient, services: Any) -> None:
    admin.post("/v1/admin/groups", json={"name": "contractors"}).raise_for_status()
    r = admin.post("/v1/collections", json={"name": "payroll", "access": {"groups": ["contractors", "typo1"]}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_group", r.text
    assert "'typo1'" in r.json()["error"]["message"] and admin.get("/v1/collections").json()["data"] == []
    made = admin.post("/v1/collections", json={"name": "payroll", "access": {"groups": ["Contractors"]}})
    assert made.status_code == 201 and made.json()["access"]["groups"] == ["contractors"]  # the group's spelling
    assert admin.patch("/v1/collections/payroll", json={"access": {"groups": ["typo1"]}}).status_code == 400
    base = "/v1/collections/payroll/documents"
    up = admin.post(base, files={"file": ("pay.md", b"# Pay\n\npay table")}, data={"groups": "contractors,typo1"})
    assert up.status_code == 400 and up.json()["error"]["param"] == "groups"
    doc = admin.post(base, files={"file": ("pay.md", b"# Pay\n\npay table")}).json()["id"]
    assert admin.patch(f"{base}/{doc}", json={"access": {"groups": ["typo1"]}}).status_code == 400
    assert admin.get("/v1/collections/payroll").json()["access"]["groups"] == ["contractors"]


def test_a_deleted_groups_name_leaves_the_access_lists_and_a_new_group_of_that_name_reads_nothing(
        admin: TestClient, services: Any) -> None:
    gid = admin.post("/v1/admin/groups", json={"name": "contractors"}).json()["id"]
    admin.post("/v1/collections", json={"name": "payroll", "access": {"groups": ["contractors"]}}).raise_for_status()
    admin.post("/v1/collections", json={"name": "wiki"}).raise_for_status()
    doc = admin.post("/v1/collections/wiki/documents", files={"file": ("rates.md", b"# Rates\n\nday rates")},
                     data={"groups": "contractors"}).json()["id"]
    assert admin.delete(f"/v1/admin/groups/{gid}").status_code == 200
    assert admin.get("/v1/collections/payroll").json()["access"]["groups"] == []
    assert admin.get(f"/v1/collections/wiki/documents/{doc}").json()["access"] == {"groups": [], "keys": []}
    deleted = [r for r in services.audit.records(kind="security") if r.action == "group.deleted"][-1]
    payroll = admin.get("/v1/collections/payroll").json()["id"]
    assert deleted.details["access_lists"] == {"collections": [payroll], "documents": [doc]}
    # Months later: a new team under the same name.
    gid2 = admin.post("/v1/admin/groups", json={"name": "contractors"}).json()["id"]
    carol = services.directory.create_user("carol")
    admin.put(f"/v1/admin/groups/{gid2}/members/{carol.id}").raise_for_status()
    key = services.keys.create_key("carol", user_id=carol.id)[1]
    with TestClient(build_app(services), headers={"Authorization": f"Bearer {key}"}) as c:
        assert c.get("/v1/collections").json()["data"] == []
        assert c.get("/v1/collections/payroll/documents").status_code == 404
