"""Meta-tests of ``/openapi.json``: every route is described, with its security, the one error shape on every error
status, no 422, bounded integers, request bodies and the response models of the main routes. Whether the
description is *true* is the fuzzer's job (``tests/e2e/test_fuzz.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.api.auth import permissions_of
from inhouse.api.bounds import MAX_INT64, MIN_INT64
from inhouse.api.openapi import build_openapi
from inhouse.governance.acl import METERED_ACTIONS

ERROR_REF = "#/components/schemas/ErrorResponse"
# POST/PUT/PATCH routes that take no body at all.
BODILESS = {("PUT", "/v1/admin/groups/{group_id}/members/{user_id}"), ("POST", "/v1/admin/audit/verify")}
# The main routes answer a documented model, not "any object".
MAIN = [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
        ("POST", "/v1/embeddings"), ("GET", "/v1/admin/users"), ("POST", "/v1/admin/users"),
        ("GET", "/v1/admin/users/{user_id}"), ("GET", "/v1/admin/groups"), ("GET", "/v1/admin/keys"),
        ("POST", "/v1/admin/keys"), ("GET", "/v1/admin/keys/{key_id}"), ("GET", "/v1/me"), ("GET", "/v1/keys"),
        ("POST", "/v1/keys"), ("GET", "/v1/collections"), ("POST", "/v1/collections"),
        ("GET", "/v1/collections/{collection_id}/documents"), ("POST", "/v1/collections/{collection_id}/documents"),
        ("POST", "/v1/search"), ("GET", "/v1/admin/audit"), ("GET", "/v1/conversations")]


@pytest.fixture
def doc(app: FastAPI) -> dict[str, Any]:
    return build_openapi(app)


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


def test_every_route_is_described(app: FastAPI, doc: dict[str, Any]) -> None:
    described = {(m, p) for m, p, _ in operations(doc)}
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert all(r.include_in_schema for r in routes)
    missing = [(m, r.path_format) for r in routes for m in r.methods or () if (m, r.path_format) not in described]
    assert not missing, f"routes not in /openapi.json: {missing}"
    assert len(described) >= 70


def test_security_follows_the_declared_permission(app: FastAPI, doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "An inhouse API key: `Bearer ih_…`."}
    for route in (r for r in app.routes if isinstance(r, APIRoute)):
        is_open = all(p.open for p in permissions_of(route.dependant))
        for method in route.methods or ():
            op = doc["paths"][route.path_format][method.lower()]
            responses = op["responses"]
            if is_open:
                assert op["security"] == [] and "401" not in responses, (method, route.path)
            else:
                assert {"bearer": []} in op["security"] and "401" in responses, (method, route.path)
                # A refusal is 404 where the path names an id, 403 elsewhere.
                assert ("404" if route.dependant.path_params else "403") in responses, (method, route.path)
                # A metered route runs a model, which may not be registered: 404 (found by the fuzzer).
                if any(p.action in METERED_ACTIONS for p in permissions_of(route.dependant)):
                    assert {"404", "429"} <= set(responses), (method, route.path)


def test_every_error_status_has_the_one_shape_and_no_422(doc: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert set(doc["components"]["schemas"]["ErrorResponse"]["properties"]) == {"error"}
    for method, path, op in operations(doc):
        assert "422" not in op["responses"], (method, path)
        assert "503" in op["responses"], (method, path)  # the connection limit, the audit log
        for status, resp in op["responses"].items():
            if int(status) >= 400:
                assert resp["content"] == {"application/json": {"schema": {"$ref": ERROR_REF}}}, (method, path)
                assert resp["description"], (method, path, status)


def test_every_body_is_described(doc: dict[str, Any]) -> None:
    for method, path, op in operations(doc):
        if method in ("POST", "PUT", "PATCH") and (method, path) not in BODILESS:
            assert op.get("requestBody", {}).get("content"), f"{method} {path} describes no request body"
            assert {"400", "413"} <= set(op["responses"]), (method, path)
    bodies = {(m, p): op["requestBody"]["content"] for m, p, op in operations(doc) if "requestBody" in op}
    assert set(bodies[("POST", "/v1/apps/minutes")]) == {"application/json", "multipart/form-data"}
    assert set(bodies[("POST", "/v1/apps/outline")]) == {"application/json", "multipart/form-data"}
    assert set(bodies[("POST", "/v1/apps/schedule/import")]) == {"text/calendar"}
    assert set(bodies[("POST", "/v1/collections/{collection_id}/documents")]) == {"multipart/form-data"}


def test_media_types_are_the_real_ones(doc: dict[str, Any]) -> None:
    def ok(method: str, path: str) -> set[str]:
        responses = doc["paths"][path][method]["responses"]
        return set(responses.get("200", responses.get("201", {})).get("content", {}))

    assert ok("get", "/metrics") == {"text/plain"}
    assert ok("get", "/v1/apps/schedule/export.ics") == {"text/calendar"}
    assert ok("post", "/v1/chat/completions") == {"application/json", "text/event-stream"}
    assert ok("post", "/v1/completions") == {"application/json", "text/event-stream"}
    assert ok("post", "/v1/responses") == {"application/json", "text/event-stream"}  # found by the long fuzz run
    assert ok("post", "/v1/apps/minutes") == {"application/json", "text/markdown", "text/calendar"}
    assert ok("post", "/v1/apps/outline") == {"application/json", "text/markdown"}
    assert ok("get", "/widget.js") == {"text/javascript"}
    assert ok("get", "/") == {"text/html"}


def test_main_routes_document_their_answer(doc: dict[str, Any]) -> None:
    for method, path in MAIN:
        responses = doc["paths"][path][method.lower()]["responses"]
        ok = responses.get("200") or responses["201"]
        schema = ok["content"]["application/json"]["schema"]
        assert schema.get("$ref", "").startswith("#/components/schemas/"), (method, path, schema)


def test_every_integer_is_bounded_by_the_storage(doc: dict[str, Any]) -> None:
    """Every integer a request may carry has a minimum and a maximum the storage can hold (bug class 1)."""
    components = doc["components"]["schemas"]
    unbounded: list[str] = []

    def walk(node: Any, where: str, seen: frozenset[str] = frozenset()) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in seen:
                    walk(components[name], f"{where}→{name}", seen | {name})
            if node.get("type") == "integer" or (isinstance(node.get("type"), list) and "integer" in node["type"]):
                lo, hi = node.get("minimum"), node.get("maximum")
                if lo is None or hi is None or lo < MIN_INT64 or hi > MAX_INT64:
                    unbounded.append(where)
            for key, value in node.items():
                walk(value, f"{where}.{key}", seen)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]", seen)

    for method, path, op in operations(doc):
        walk(op.get("parameters", []), f"{method} {path} parameters")
        walk(op.get("requestBody", {}), f"{method} {path} body")
    assert not unbounded, "integers without a storage range:\n" + "\n".join(unbounded)


def test_openapi_json_needs_a_key_unless_opened(make_services: Any) -> None:
    s = make_services()
    with TestClient(build_app(s)) as c:
        assert c.get("/openapi.json").status_code == 401
        r = c.get("/openapi.json", headers={"Authorization": f"Bearer {s.member_key}"})
        assert r.status_code == 200 and r.json()["openapi"].startswith("3.")
        assert "/v1/chat/completions" in r.json()["paths"]
    opened = make_services(server={"openapi_public": True})
    with TestClient(build_app(opened)) as c:
        r = c.get("/openapi.json")
        assert r.status_code == 200
        assert r.json()["paths"]["/openapi.json"]["get"]["security"] == []
