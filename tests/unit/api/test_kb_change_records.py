"""What the audit record of a change to the knowledge index says: the documents a collection's deletion took with
it, and the access lists before and after a collection's or a document's list changed."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def services(make_services: Any) -> Any:
    services = make_services()
    for name in ("ga", "gb"):
        services.directory.create_group(name)
    return services


def _final(services: Any, resource: str) -> Any:
    """The last final (not ``started``) record of the request on ``resource``."""
    return [r for r in services.audit.records() if r.resource == resource and r.outcome != "started"][-1]


def test_deleting_a_collection_names_every_document_it_deleted(admin: TestClient, services: Any) -> None:
    col = admin.post("/v1/collections", json={"name": "board"}).json()["id"]
    docs = [admin.post(f"/v1/collections/{col}/documents", files={"file": (f"m{i}.md", f"# Memo {i}\n\nmemo {i}")},
                       data={"label": "internal"}).json()["id"] for i in range(3)]
    assert admin.delete(f"/v1/collections/{col}/documents/{docs[0]}").status_code == 200
    assert admin.delete(f"/v1/collections/{col}").status_code == 200
    final = _final(services, f"DELETE /v1/collections/{col}")
    assert final.outcome == "success" and sorted(final.documents) == sorted(docs[1:])
    assert final.details["removed"] == 2 and final.details["documents_not_listed"] == 0
    for doc in docs[1:]:  # who deleted it: found by the document, like a document deleted on its own
        named = services.audit.records(document=doc)
        assert [(r.resource, r.outcome) for r in named][-1] == (f"DELETE /v1/collections/{col}", "success")


def test_a_collections_access_change_records_the_list_before_and_after(admin: TestClient, services: Any) -> None:
    col = admin.post("/v1/collections", json={"name": "acl", "access": {"groups": ["ga"]}}).json()["id"]
    member = services.keys.authenticate(services.member_key).key_id
    r = admin.patch(f"/v1/collections/{col}", json={"access": {"groups": ["ga", "gb"], "keys": [member]}})
    assert r.status_code == 200, r.text
    details = _final(services, f"PATCH /v1/collections/{col}").details
    assert details["access_before"] == {"groups": ["ga"], "keys": []}
    assert details["access_after"] == {"groups": ["ga", "gb"], "keys": [member]}
    admin.patch(f"/v1/collections/{col}", json={"description": "board papers"})  # no list given: none recorded
    assert "access_before" not in _final(services, f"PATCH /v1/collections/{col}").details


def test_a_documents_access_change_records_the_list_before_and_after(admin: TestClient, services: Any) -> None:
    col = admin.post("/v1/collections", json={"name": "acl", "access": {"groups": ["ga", "gb"]}}).json()["id"]
    base = f"/v1/collections/{col}/documents"
    doc = admin.post(base, files={"file": ("board.md", b"# Board\n\nboard minutes")},
                     data={"label": "restricted", "groups": "ga"}).json()["id"]
    assert admin.patch(f"{base}/{doc}", json={"access": {"groups": ["ga", "gb"]}}).status_code == 200
    details = _final(services, f"PATCH {base}/{doc}").details
    assert details["label_before"] == "restricted"
    assert details["access_before"] == {"groups": ["ga"], "keys": []}
    assert details["access_after"] == {"groups": ["ga", "gb"], "keys": []}
    assert admin.patch(f"{base}/{doc}", json={"clear_access": True}).status_code == 200
    details = _final(services, f"PATCH {base}/{doc}").details
    assert details["access_before"] == {"groups": ["ga", "gb"], "keys": []} and details["access_after"] is None
    assert admin.patch(f"{base}/{doc}", json={"label": "confidential"}).status_code == 200  # the label only
    assert "access_before" not in _final(services, f"PATCH {base}/{doc}").details


def test_a_new_version_with_another_access_list_records_the_list_it_replaced(admin: TestClient,
                                                                             services: Any) -> None:
    col = admin.post("/v1/collections", json={"name": "acl", "access": {"groups": ["ga", "gb"]}}).json()["id"]
    base = f"/v1/collections/{col}/documents"
    first = admin.post(base, files={"file": ("board.md", b"# Board\n\nversion one")}, data={"groups": "ga"})
    assert first.status_code == 201 and "access_before" not in _final(services, f"POST {base}").details
    second = admin.post(base, files={"file": ("board.md", b"# Board\n\nversion two")}, data={"groups": "ga,gb"})
    assert second.json()["status"] == "replaced"
    details = _final(services, f"POST {base}").details
    assert details["access_before"] == {"groups": ["ga"], "keys": []}
    assert details["access_after"] == {"groups": ["ga", "gb"], "keys": []}
