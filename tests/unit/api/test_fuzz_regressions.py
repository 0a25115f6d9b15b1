"""Regression tests for the bug classes a schema-driven fuzzer found (issue 14): each was a 500, an answer before
authentication or an echo of unbounded input; each is now a 4xx in the one error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from test_error_shape import assert_error_shape

from inhouse.api.app import build_app
from inhouse.api.auth import AuthFirstRoute
from inhouse.api.errors import MAX_MESSAGE_CHARS, MAX_PARAM_CHARS

BIG = 2**63  # one more than SQLite's largest INTEGER
MSG = [{"role": "user", "content": "hi"}]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# -- 1: integers beyond the storage's range ------------------------------------------------------------------

def test_integers_beyond_int64_are_400_not_500(admin: TestClient) -> None:
    key_id = admin.post("/v1/admin/keys", json={"name": "k"}).json()["id"]
    col = admin.post("/v1/collections", json={"name": "c"}).json()["id"]
    cases = [
        ("GET", f"/v1/admin/audit?after_seq={BIG}", None, "after_seq"),
        ("POST", "/v1/admin/keys", {"name": "x", "rpm_limit": BIG}, "rpm_limit"),
        ("POST", "/v1/admin/keys", {"name": "x", "tokens_per_day_limit": BIG}, "tokens_per_day_limit"),
        ("PATCH", f"/v1/admin/keys/{key_id}", {"rpm_limit": BIG}, "rpm_limit"),
        ("PATCH", f"/v1/admin/keys/{key_id}", {"tokens_per_day_limit": 10**30}, "tokens_per_day_limit"),
        ("GET", f"/v1/collections/{col}/documents?offset={BIG}", None, "offset"),
        ("POST", "/v1/admin/keys", {"name": "x", "expires_at": 1e300}, "expires_at"),
        ("POST", "/v1/chat/completions", {"model": "fake-model", "messages": MSG, "seed": BIG}, "seed"),
        ("POST", "/v1/chat/completions", {"model": "fake-model", "messages": MSG, "top_k": BIG}, "top_k"),
        ("POST", "/v1/chat/completions", {"model": "fake-model", "messages": MSG, "max_tokens": BIG}, "max_tokens"),
        ("POST", "/v1/completions", {"model": "fake-model", "prompt": [BIG]}, "prompt"),
        ("POST", "/v1/responses", {"model": "fake-model", "input": "x", "max_output_tokens": BIG},
         "max_output_tokens"),
        ("POST", "/v1/embeddings", {"model": "multilingual-e5-small", "input": "x", "dimensions": BIG}, "dimensions"),
    ]
    for method, path, body, param in cases:
        err = assert_error_shape(admin.request(method, path, json=body), 400)
        assert err["param"] == param, (path, err)
    # The largest value the storage holds is accepted.
    r = admin.patch(f"/v1/admin/keys/{key_id}", json={"rpm_limit": BIG - 1})
    assert r.status_code == 200 and r.json()["rpm_limit"] == BIG - 1


def test_a_query_parameter_given_twice_is_400_not_the_last_one_wins(admin: TestClient) -> None:
    col = admin.post("/v1/collections", json={"name": "c"}).json()["id"]
    for path, param in ((f"/v1/collections/{col}/documents?limit=5&limit=1000", "limit"),
                        ("/v1/admin/audit?kind=request&limit=2&kind=security", "kind"),
                        ("/v1/models?x=&x=", "x")):
        err = assert_error_shape(admin.get(path), 400)
        assert err["param"] == param and "more than once" in err["message"], (path, err)
    assert admin.get(f"/v1/collections/{col}/documents?limit=5&offset=0").status_code == 200


def test_non_finite_expiry_is_refused(admin: TestClient) -> None:
    # json.loads accepts NaN and Infinity; a key whose expiry is NaN would be stored as NULL: never expiring.
    for raw in (b'{"name": "x", "expires_at": NaN}', b'{"name": "x", "expires_at": Infinity}'):
        r = admin.post("/v1/admin/keys", content=raw, headers={"content-type": "application/json"})
        assert assert_error_shape(r, 400)["param"] == "expires_at"


# -- 2: bad knowledge options on chat (and on the Responses API: the 1,000-case fuzz run found its 500) -------

BAD_KNOWLEDGE = [{"foo": 1}, {"top_k": 0}, {"top_k": 21}, {"collections": "company"}, {"collections": [""]},
                 "everything", [1], [{"": "x"}]]


@pytest.mark.parametrize("knowledge", BAD_KNOWLEDGE)
def test_bad_knowledge_options_are_400(client: TestClient, knowledge: Any) -> None:
    r = client.post("/v1/chat/completions", json={"model": "fake-model", "messages": MSG, "knowledge": knowledge})
    assert assert_error_shape(r, 400)["param"] == "knowledge"


@pytest.mark.parametrize("knowledge", BAD_KNOWLEDGE)
def test_bad_knowledge_options_on_responses_are_400(client: TestClient, knowledge: Any) -> None:
    r = client.post("/v1/responses", json={"model": "fake-model", "input": "hello", "knowledge": knowledge})
    assert assert_error_shape(r, 400)["param"] == "knowledge"


def test_good_knowledge_options_still_answer(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={"model": "fake-model", "messages": MSG,
                                                  "knowledge": {"top_k": 3}})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "The documents do not cover this."
    r = client.post("/v1/responses", json={"model": "fake-model", "input": "hello", "knowledge": {"top_k": 3}})
    assert r.status_code == 200, r.text
    assert "The documents do not cover this." in json.dumps(r.json()["output"])


# -- 5: authentication before the body -----------------------------------------------------------------------

def test_every_route_authenticates_before_reading_its_body(app: Any) -> None:
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert routes and all(isinstance(r, AuthFirstRoute) for r in routes)


def test_unreadable_bodies_without_a_key_get_401(services: Any) -> None:
    col = services.kb.create_collection(_admin_actor(services), "c").id
    unreadable = [
        ("POST", "/v1/admin/users", {"content": b"\xff", "headers": {"content-type": "application/json"}}),
        ("POST", "/v1/admin/users", {"content": b"{", "headers": {"content-type": "application/json"}}),
        ("PATCH", "/v1/admin/users/usr_x", {"content": b"\xff", "headers": {"content-type": "application/json"}}),
        ("POST", f"/v1/collections/{col}/documents",
         {"content": b"abc", "headers": {"content-type": "multipart/form-data"}}),
        ("POST", "/v1/apps/minutes", {"content": b"abc", "headers": {"content-type": "multipart/form-data"}}),
        ("POST", "/v1/chat/completions", {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}),
    ]
    with TestClient(build_app(services)) as c:
        for method, path, kwargs in unreadable:
            err = assert_error_shape(c.request(method, path, **kwargs), 401)
            assert err["type"] == "authentication_error", path
        # A wrong key is the same 401.
        r = c.post("/v1/admin/users", content=b"\xff", headers={**bearer("ih_nope_nope"),
                                                                "content-type": "application/json"})
        assert_error_shape(r, 401)


def test_member_on_admin_routes_gets_the_refusal_whatever_the_body(services: Any) -> None:
    bad = {"content": b"\xff", "headers": {**bearer(services.member_key), "content-type": "application/json"}}
    with TestClient(build_app(services)) as c:
        assert_error_shape(c.post("/v1/admin/users", **bad), 403)
        assert_error_shape(c.post("/v1/admin/keys", **bad), 403)
        # Routes with an id in the path answer 404, as they do with a good body.
        assert_error_shape(c.patch("/v1/admin/users/usr_x", **bad), 404)
        assert_error_shape(c.patch("/v1/admin/keys/key_x", **bad), 404)
        assert_error_shape(c.patch("/v1/collections/col_x", **bad), 404)
        # A route the member may use reads the body and says what is wrong with it.
        err = assert_error_shape(c.post("/v1/chat/completions", **bad), 400)
        assert err["type"] == "invalid_request_error"
        err = assert_error_shape(c.post("/v1/apps/minutes", content=b"abc", headers={
            **bearer(services.member_key), "content-type": "multipart/form-data"}), 400)
        assert err["code"] == "invalid_body"


def test_permission_is_checked_and_metered_once(make_services: Any) -> None:
    # The route checks its permission before the body, the dependency finds it done: a key allowed two requests
    # a minute makes two, not one.
    s = make_services()
    _, secret = s.keys.create_key("two a minute", rpm_limit=2)
    with TestClient(build_app(s), headers=bearer(secret)) as c:
        body = {"model": "fake-model", "messages": MSG, "max_tokens": 2}
        assert [c.post("/v1/chat/completions", json=body).status_code for _ in range(3)] == [200, 200, 429]


# -- 6: no unbounded echo ------------------------------------------------------------------------------------

def test_a_huge_label_does_not_come_back(services: Any, admin: TestClient) -> None:
    col = admin.post("/v1/collections", json={"name": "c"}).json()["id"]
    label = "L" * 100_000
    r = admin.post(f"/v1/collections/{col}/documents", files={"file": ("a.txt", b"hello")}, data={"label": label})
    err = assert_error_shape(r, 400)
    assert len(err["message"]) <= MAX_MESSAGE_CHARS and "L" * 100 not in err["message"]
    assert "use one of" in err["message"]  # the useful part survives


def test_every_message_and_param_is_bounded(admin: TestClient) -> None:
    long = "x" * 100_000
    # Field names the caller made up are cut to MAX_PARAM_CHARS inside the message too.
    for r in (admin.post("/v1/admin/users", json={long: 1, "name": "a"}),
              admin.post("/v1/apps/outline", json={long: 1, "text": "x"})):  # a body the route validates itself
        err = assert_error_shape(r, 400)
        assert len(err["param"]) <= MAX_PARAM_CHARS and "x" * (MAX_PARAM_CHARS + 1) not in err["message"]
    # Whatever a core quotes (here an id from the path) is cut by the edge.
    err = assert_error_shape(admin.get(f"/v1/admin/keys/key_{'x' * 8000}"), 404)
    assert len(err["message"]) == MAX_MESSAGE_CHARS and err["message"].endswith("…")


def _admin_actor(services: Any) -> Any:
    return services.keys.authenticate(services.admin_key)


# -- admin bodies: JSON types are not coerced --------------------------------------------------------------------

def test_admin_bodies_refuse_a_number_for_a_boolean_and_a_boolean_for_a_count(admin: TestClient) -> None:
    user_id = admin.post("/v1/admin/users", json={"name": "strict-u"}).json()["id"]
    key_id = admin.post("/v1/admin/keys", json={"name": "strict-k"}).json()["id"]
    for path, body, param in ((f"/v1/admin/users/{user_id}", {"disabled": 0.0}, "disabled"),
                              (f"/v1/admin/keys/{key_id}", {"rpm_limit": False}, "rpm_limit")):
        assert assert_error_shape(admin.patch(path, json=body), 400)["param"] == param
    assert admin.patch(f"/v1/admin/users/{user_id}", json={"disabled": True}).json()["disabled"] is True
    assert admin.patch(f"/v1/admin/keys/{key_id}", json={"rpm_limit": 5}).json()["rpm_limit"] == 5
    assert admin.post("/v1/admin/keys", json={"name": "k2", "expires_at": 4102444800}).status_code == 201


# -- lone UTF-16 surrogates ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", '{"model": "fake-model", "messages": [{"role": "user", "content": "hi \\ud800 x"}]}'),
    ("/v1/completions", '{"model": "fake-model", "prompt": "hi \\udfff"}'),
    ("/v1/responses", '{"model": "fake-model", "input": "\\udc00 hi"}'),
    ("/v1/search", '{"query": "hi \\ud800"}'),
    ("/v1/apps/minutes", '{"transcript": "A: hi \\ud800"}'),
])
def test_a_lone_surrogate_is_400_not_500(admin: TestClient, path: str, body: str) -> None:
    """json.loads keeps "\\ud800" as is, and no tokenizer could encode it: a 500 deep in the engine."""
    r = admin.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "lone UTF-16 surrogate" in r.text, r.text
    assert_error_shape(r, 400)


def test_an_escaped_surrogate_pair_is_text(admin: TestClient) -> None:
    body = '{"model": "fake-model", "messages": [{"role": "user", "content": "hi \\ud83d\\ude00"}], "max_tokens": 2}'
    r = admin.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text  # an emoji, as clients with ensure_ascii escape it
