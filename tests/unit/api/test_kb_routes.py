"""The knowledge routes in-process: collections CRUD, upload, list, get, download, relabel, delete, search,
embeddings, and the chat extension (citations, "not covered")."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.api.auth import ACTIONS, route_actions
from inhouse.kb.answer import NOT_COVERED

LEAVE = b"# Leave policy\n\nEmployees with 3 years of service get 18 days of annual leave.\n"


@pytest.fixture
def kb_services(make_services: Any) -> Any:
    services = make_services(kb={"min_similarity": 0.3})
    for group in ("hr", "leads", "finance", "all"):  # access lists name existing groups
        services.directory.create_group(group)
    return services


@pytest.fixture
def admin(kb_services: Any) -> Iterator[TestClient]:
    with TestClient(build_app(kb_services), headers={"Authorization": f"Bearer {kb_services.admin_key}"}) as c:
        yield c


def member_headers(s: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {s.member_key}"}


def test_every_kb_route_declares_a_known_action(kb_services: Any) -> None:
    table = route_actions(build_app(kb_services))
    kb_routes = {k: v for k, v in table.items() if k[1].startswith(("/v1/collections", "/v1/search", "/v1/emb"))}
    assert len(kb_routes) == 13
    for (method, path), actions in kb_routes.items():
        assert len(actions) == 1 and actions[0] in ACTIONS, (method, path)
    assert table[("POST", "/v1/collections")] == ["kb:manage"]
    assert table[("POST", "/v1/collections/{collection_id}/documents")] == ["kb:write"]


def test_collection_and_document_lifecycle(admin: TestClient, kb_services: Any) -> None:
    r = admin.post("/v1/collections", json={"name": "hr", "access": {"groups": ["hr"]}})
    assert r.status_code == 201, r.text
    col = r.json()
    assert col["access"] == {"groups": ["hr"], "keys": []}
    assert admin.post("/v1/collections", json={"name": "hr"}).status_code == 409
    up = admin.post(f"/v1/collections/{col['id']}/documents", files={"file": ("leave.md", LEAVE, "text/markdown")},
                    data={"label": "internal"})
    assert up.status_code == 201, up.text
    doc = up.json()
    assert doc["status"] == "added" and doc["label"] == "internal" and doc["chunk_count"] >= 1
    again = admin.post(f"/v1/collections/{col['id']}/documents", files={"file": ("leave.md", LEAVE)})
    assert again.status_code == 200 and again.json()["status"] == "unchanged"
    base = f"/v1/collections/{col['id']}/documents"
    assert [d["id"] for d in admin.get(base).json()["data"]] == [doc["id"]]
    assert admin.get(f"{base}/{doc['id']}").json()["title"]
    dl = admin.get(f"{base}/{doc['id']}/content")
    assert dl.content == LEAVE and "attachment" in dl.headers["content-disposition"]
    rel = admin.patch(f"{base}/{doc['id']}", json={"label": "public", "access": {"groups": ["leads"]}})
    assert rel.json()["label"] == "public" and rel.json()["access"]["groups"] == ["leads"]
    hits = admin.post("/v1/search", json={"query": "annual leave days", "collections": ["hr"]}).json()["data"]
    assert hits and hits[0]["document_id"] == doc["id"] and "18 days" in hits[0]["text"]
    assert admin.delete(f"{base}/{doc['id']}").json()["deleted"] is True
    assert admin.get(f"{base}/{doc['id']}").status_code == 404
    assert admin.post("/v1/search", json={"query": "annual leave days"}).json()["data"] == []
    assert admin.delete(f"/v1/collections/{col['id']}").status_code == 200
    assert admin.get("/v1/collections").json()["data"] == []


def test_a_collection_is_marked_for_code_sketches_and_bad_values_are_400(admin: TestClient) -> None:
    made = admin.post("/v1/collections", json={"name": "pg", "description": "PostgreSQL 16 manual",
                                               "sketch_questions": True})
    assert made.status_code == 201 and made.json()["sketch_questions"] is True
    assert admin.post("/v1/collections", json={"name": "hr"}).json()["sketch_questions"] is False
    cid = made.json()["id"]
    off = admin.patch(f"/v1/collections/{cid}", json={"sketch_questions": False})
    assert off.status_code == 200 and off.json()["sketch_questions"] is False
    assert off.json()["description"] == "PostgreSQL 16 manual"
    bad = admin.patch(f"/v1/collections/{cid}", json={"sketch_questions": "sometimes"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "sketch_questions", bad.text
    assert admin.get(f"/v1/collections/{cid}").json()["sketch_questions"] is False  # unchanged by the bad request


def test_rejected_upload_is_a_400_and_the_server_keeps_serving(admin: TestClient) -> None:
    cid = admin.post("/v1/collections", json={"name": "hr"}).json()["id"]
    for name, data in (("empty.txt", b""), ("x.pdf", b""), ("bomb.docx", b"PK\x03\x04garbage"),
                       ("../../../etc/passwd", b"\x7fELF\x01\x01")):
        r = admin.post(f"/v1/collections/{cid}/documents", files={"file": (name, data)})
        assert r.status_code == 400, (name, r.text)
        assert r.json()["error"]["code"] == "document_rejected"
    assert admin.get("/v1/collections").status_code == 200


def test_members_need_access_and_cannot_manage(admin: TestClient, kb_services: Any) -> None:
    cid = admin.post("/v1/collections", json={"name": "finance", "access": {"groups": ["finance"]}}).json()["id"]
    doc = admin.post(f"/v1/collections/{cid}/documents", files={"file": ("r.md", b"# R\n\nrevenue 412.6\n")}).json()
    with TestClient(build_app(kb_services), headers=member_headers(kb_services)) as m:
        assert m.get("/v1/collections").json()["data"] == []
        assert m.post("/v1/collections", json={"name": "mine"}).status_code == 403
        for url in (f"/v1/collections/{cid}", f"/v1/collections/{cid}/documents",
                    f"/v1/collections/{cid}/documents/{doc['id']}/content"):
            assert m.get(url).status_code == 404, url
        assert m.post(f"/v1/collections/{cid}/documents", files={"file": ("x.md", b"# x\n\ny\n")}).status_code == 404
        assert m.post("/v1/search", json={"query": "revenue"}).json()["data"] == []
    # Granting the member's key access opens it on the next request.
    member_id = kb_services.keys.authenticate(kb_services.member_key).key_id
    admin.patch(f"/v1/collections/{cid}", json={"access": {"groups": ["finance"], "keys": [member_id]}})
    with TestClient(build_app(kb_services), headers=member_headers(kb_services)) as m:
        assert "412.6" in m.post("/v1/search", json={"query": "revenue"}).text
        assert m.get(f"/v1/collections/{cid}/documents/{doc['id']}/content").status_code == 200
        # Members may relabel but not change a document's access list, nor give one with a new version.
        url = f"/v1/collections/{cid}/documents/{doc['id']}"
        assert m.patch(url, json={"access": {"groups": ["x"]}}).status_code == 403
        again = m.post(f"/v1/collections/{cid}/documents", data={"groups": "x"},
                       files={"file": ("r.md", b"# R\n\nrevenue 412.7\n")})
        assert again.status_code == 403 and again.json()["error"]["param"] == "groups", again.text
        assert m.post(f"/v1/collections/{cid}/documents", data={"keys": member_id},
                      files={"file": ("new.md", b"# N\n\nnew\n")}).status_code == 403
        assert admin.get(url).json()["access"] is None


def test_a_members_pages_count_the_documents_they_may_see(admin: TestClient, kb_services: Any) -> None:
    """Pages were cut from all documents, then filtered: a member got short or empty pages while theirs followed."""
    cid = admin.post("/v1/collections", json={"name": "mixed", "access": {"groups": ["all"]}}).json()["id"]
    member_id = kb_services.keys.authenticate(kb_services.member_key).key_id
    admin.patch(f"/v1/collections/{cid}", json={"access": {"groups": ["all"], "keys": [member_id]}})
    for i in range(12):  # every other document is restricted: the member sees a0, a2, … a10
        admin.post(f"/v1/collections/{cid}/documents", data={"label": "restricted" if i % 2 else "internal"},
                   files={"file": (f"a{i:02d}.md", f"# Doc {i}\n\ntext {i}\n".encode())})
    with TestClient(build_app(kb_services), headers=member_headers(kb_services)) as m:
        pages = [[d["source_path"] for d in m.get(f"/v1/collections/{cid}/documents",
                                                  params={"limit": 2, "offset": o}).json()["data"]]
                 for o in (0, 2, 4, 6)]
    assert pages == [["a00.md", "a02.md"], ["a04.md", "a06.md"], ["a08.md", "a10.md"], []], pages


def test_a_members_upload_of_bytes_held_by_a_document_they_cannot_see_is_their_own(admin: TestClient,
                                                                                  kb_services: Any) -> None:
    cid = admin.post("/v1/collections", json={"name": "hr", "access": {"groups": ["all"]}}).json()["id"]
    member_id = kb_services.keys.authenticate(kb_services.member_key).key_id
    admin.patch(f"/v1/collections/{cid}", json={"access": {"groups": ["all"], "keys": [member_id]}})
    data = b"# Layoff plan\n\nTeam B is cut in March.\n"
    hidden = admin.post(f"/v1/collections/{cid}/documents", data={"label": "restricted"},
                        files={"file": ("plan.md", data)}).json()
    seen = admin.post(f"/v1/collections/{cid}/documents", files={"file": ("faq.md", b"# FAQ\n\nAsk HR.\n")}).json()
    with TestClient(build_app(kb_services), headers=member_headers(kb_services)) as m:
        up = m.post(f"/v1/collections/{cid}/documents", files={"file": ("my-notes.md", data)})
        assert up.status_code == 201, up.text  # was: nothing stored, and a 404 naming the hidden document
        mine = up.json()
        assert mine["id"] != hidden["id"] and mine["source_path"] == "my-notes.md" and hidden["id"] not in up.text
        # Bytes of a document the member sees stand for their file, as before: one copy indexed.
        dup = m.post(f"/v1/collections/{cid}/documents", files={"file": ("faq-copy.md", b"# FAQ\n\nAsk HR.\n")})
        assert dup.status_code == 200 and dup.json()["id"] == seen["id"]
    # An administrator's upload still keeps one copy of the bytes.
    assert admin.post(f"/v1/collections/{cid}/documents", files={"file": ("x.md", data)}).json()["id"] == hidden["id"]


def test_markings_raise_an_upload_and_members_cannot_relabel_below_them(admin: TestClient, kb_services: Any) -> None:
    cid = admin.post("/v1/collections", json={"name": "board", "access": {"groups": ["all"]}}).json()["id"]
    member_id = kb_services.keys.authenticate(kb_services.member_key).key_id
    admin.patch(f"/v1/collections/{cid}", json={"access": {"groups": ["all"], "keys": [member_id]}})
    with TestClient(build_app(kb_services), headers=member_headers(kb_services)) as m:
        up = m.post(f"/v1/collections/{cid}/documents", data={"label": "internal"},
                    files={"file": ("bands.md", b"# Salary Bands: CONFIDENTIAL\n\nP1 180,000.\n")})
        assert up.status_code == 201, up.text
        doc = up.json()
        assert doc["label"] == "confidential" and doc["metadata"]["marking"] == '"CONFIDENTIAL" in the title'
        url = f"/v1/collections/{cid}/documents/{doc['id']}"
        low = m.patch(url, json={"label": "public"})
        assert low.status_code == 403 and "only admins" in low.json()["error"]["message"]
        assert m.patch(url, json={"label": "confidential"}).status_code == 200
        # Marked restricted, the member's upload is answered (they sent its bytes) and then hidden: need to know.
        secret = m.post(f"/v1/collections/{cid}/documents",
                        files={"file": ("ma.md", b"# Acquisition plan: STRICTLY CONFIDENTIAL\n\nKestrel.\n")})
        assert secret.status_code == 201 and secret.json()["label"] == "restricted", secret.text
        assert m.get(f"/v1/collections/{cid}/documents/{secret.json()['id']}").status_code == 404
    assert admin.patch(url, json={"label": "public"}).json()["label"] == "public"  # admins decide, deliberately


MEMO = (b"# Project Kestrel\n\nThe board has agreed to offer 40 million euros for Kestrel Robotics, payable in two "
        b"tranches of 20 million each. The founders stay for two years under a retention plan worth 3 million, and "
        b"the Shenzhen plant is kept open. Due diligence by the outside counsel finishes on 15 January; the signing "
        b"is planned for the first week of February.\n")


def test_raising_a_document_raises_its_copies_and_answers_with_those_the_caller_sees(admin: TestClient,
                                                                                       kb_services: Any) -> None:
    member_id = kb_services.keys.authenticate(kb_services.member_key).key_id
    wiki = admin.post("/v1/collections", json={"name": "wiki", "access": {"keys": [member_id]}}).json()["id"]
    fin = admin.post("/v1/collections", json={"name": "finance", "access": {"groups": ["finance"]}}).json()["id"]
    source = admin.post(f"/v1/collections/{wiki}/documents", data={"label": "internal"},
                        files={"file": ("kestrel.md", MEMO)}).json()
    copy = admin.post(f"/v1/collections/{wiki}/documents", data={"label": "internal"},
                      files={"file": ("notes.md", b"Notes\n\n" + MEMO)}).json()
    hidden = admin.post(f"/v1/collections/{fin}/documents", data={"label": "internal"},
                        files={"file": ("deal.md", b"Deal\n\n" + MEMO)}).json()
    with TestClient(build_app(kb_services), headers=member_headers(kb_services)) as m:
        r = m.patch(f"/v1/collections/{wiki}/documents/{source['id']}", json={"label": "confidential"})
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "confidential"
    # The member sees the copy raised in the wiki, not the one in finance (it is raised all the same).
    (shown,) = r.json()["raised_copies"]
    assert shown == {"id": copy["id"], "collection_id": wiki, "label": "confidential", "label_before": "internal",
                     "derived_from": source["id"], "reason": "its text repeats 100% of a confidential document"}
    after = admin.get(f"/v1/collections/{fin}/documents/{hidden['id']}").json()
    assert after["label"] == "confidential" and after["metadata"]["derived_from"] == source["id"]
    # The audit record names every document raised, with its labels.
    started, rec = [r for r in kb_services.audit.records()
                    if r.action == "kb:write" and r.resource.startswith("PATCH")]
    assert started.outcome == "started" and list(started.documents) == [source["id"]]
    assert set(rec.documents) == {source["id"], copy["id"], hidden["id"]}
    assert {c["id"] for c in rec.details["raised_copies"]} == {copy["id"], hidden["id"]}
    again = admin.patch(f"/v1/collections/{wiki}/documents/{source['id']}", json={"label": "confidential"})
    assert again.json()["raised_copies"] == []


def test_members_cannot_overwrite_a_document_they_may_not_see(admin: TestClient, kb_services: Any) -> None:
    cid = admin.post("/v1/collections", json={"name": "hr", "access": {"groups": ["all"]}}).json()["id"]
    member_id = kb_services.keys.authenticate(kb_services.member_key).key_id
    admin.patch(f"/v1/collections/{cid}", json={"access": {"groups": ["all"], "keys": [member_id]}})
    hidden = admin.post(f"/v1/collections/{cid}/documents", data={"label": "restricted"},
                        files={"file": ("plan.md", b"# Plan\n\nThe reorganisation plan.\n")}).json()
    shared = admin.post(f"/v1/collections/{cid}/documents", data={"label": "internal", "keys": member_id},
                        files={"file": ("notes.md", b"# Notes\n\nTeam notes.\n")}).json()
    with TestClient(build_app(kb_services), headers=member_headers(kb_services)) as m:
        r = m.post(f"/v1/collections/{cid}/documents", files={"file": ("plan.md", b"# Plan\n\nOverwritten.\n")})
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict", r.text
        assert "another name" in r.json()["error"]["message"]
        # A document the member may see they may update; its access list stays as the admin set it.
        r = m.post(f"/v1/collections/{cid}/documents", files={"file": ("notes.md", b"# Notes\n\nMore notes.\n")})
        assert r.status_code == 201 and r.json()["status"] == "replaced", r.text
        assert r.json()["access"] == shared["access"] and r.json()["label"] == "internal"
    kept = admin.get(f"/v1/collections/{cid}/documents/{hidden['id']}").json()
    assert kept["version"] == 1 and kept["label"] == "restricted"
    content = admin.get(f"/v1/collections/{cid}/documents/{hidden['id']}/content")
    assert b"reorganisation" in content.content


EMBED = "fake-trigram"  # the FakeEmbedder's name, as multilingual-e5-small is the real one's


def test_embeddings_openai_shape(admin: TestClient) -> None:
    r = admin.post("/v1/embeddings", json={"model": EMBED, "input": ["hello", "world"]})
    body = r.json()
    assert r.status_code == 200 and body["object"] == "list" and len(body["data"]) == 2
    assert body["model"] == EMBED
    assert len(body["data"][0]["embedding"]) == 384 and body["usage"]["prompt_tokens"] > 0
    b64 = admin.post("/v1/embeddings", json={"model": EMBED, "input": "hello", "encoding_format": "base64"}).json()
    vec = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
    assert vec.shape == (384,) and abs(float(np.linalg.norm(vec)) - 1) < 1e-4
    assert admin.post("/v1/embeddings", json={"model": EMBED, "input": []}).status_code == 400


def test_embeddings_count_against_the_keys_daily_tokens(kb_services: Any) -> None:
    """Embeddings are metered, yet were never charged: a key with a token budget embedded without end."""
    record, secret = kb_services.keys.create_key("capped", tokens_per_day_limit=10)
    with TestClient(build_app(kb_services), headers={"Authorization": f"Bearer {secret}"}) as c:
        first = c.post("/v1/embeddings", json={"model": EMBED, "input": "quarterly figures " * 20})
        assert first.status_code == 200, first.text
        used = first.json()["usage"]["total_tokens"]
        assert kb_services.quotas.status(record.id).tokens_used_today == used > 10
        again = c.post("/v1/embeddings", json={"model": EMBED, "input": "x"})
        assert again.status_code == 429 and again.json()["error"]["code"] == "quota_exceeded", again.text


def test_embedding_models_are_listed_and_others_refused(admin: TestClient) -> None:
    listed = {m["id"]: m for m in admin.get("/v1/models").json()["data"]}
    assert listed[EMBED]["input_type"] == "passage" and listed[EMBED + ":query"]["input_type"] == "query"
    assert admin.get(f"/v1/models/{EMBED}:query").json()["type"] == "embedding"
    for model in ("text-embedding-3-small", EMBED + ":other", "fake-model"):
        r = admin.post("/v1/embeddings", json={"model": model, "input": "x"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        assert EMBED + ":query" in r.json()["error"]["message"], "the message lists what exists"


def test_query_and_passage_embeddings_by_model_id(admin: TestClient, kb_services: Any) -> None:
    def vec(model: str, **kw: Any) -> list[float]:
        return admin.post("/v1/embeddings", json={"model": model, "input": "annual leave", **kw}).json()[
            "data"][0]["embedding"]

    calls = kb_services.kb.embedder.calls
    vec(EMBED)
    vec(EMBED + ":passage")
    assert kb_services.kb.embedder.calls == calls + 2, "passages go through embed_passages"
    vec(EMBED + ":query")
    vec(EMBED, input_type="query")
    assert kb_services.kb.embedder.calls == calls + 2, "queries through embed_query"


def test_token_id_input_is_embedded_as_its_text(admin: TestClient) -> None:
    by_text = admin.post("/v1/embeddings", json={"model": EMBED, "input": ["hello", "world"]}).json()
    by_ids = admin.post("/v1/embeddings", json={"model": EMBED, "input": [list(b"hello"), list(b"world")]}).json()
    assert [d["embedding"] for d in by_ids["data"]] == [d["embedding"] for d in by_text["data"]]
    one = admin.post("/v1/embeddings", json={"model": EMBED, "input": list(b"hello")}).json()
    assert one["data"][0]["embedding"] == by_text["data"][0]["embedding"]
    for bad in ([[100000, 3]], [["a"]], [1, "a"], [[]], [{"x": 1}]):
        r = admin.post("/v1/embeddings", json={"model": EMBED, "input": bad})
        assert r.status_code == 400, bad
        message = r.json()["error"]["message"]
        assert "constrained" not in message and message.startswith(("'input' must", "These token ids")), message


def test_chat_with_knowledge_cites_and_says_not_covered(admin: TestClient, kb_services: Any) -> None:
    cid = admin.post("/v1/collections", json={"name": "hr"}).json()["id"]
    admin.post(f"/v1/collections/{cid}/documents", files={"file": ("leave.md", LEAVE)})
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "How many annual leave days after "
                                                                           "3 years of service?"}],
            "knowledge": {"collections": ["hr"]}}
    r = admin.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert "citations" in out and isinstance(out["citations"], list)
    far = {**body, "messages": [{"role": "user", "content": "zzz qqq xxx"}]}
    nc = admin.post("/v1/chat/completions", json=far).json()
    assert nc["choices"][0]["message"]["content"] == NOT_COVERED and nc["citations"] == []
    stream = admin.post("/v1/chat/completions", json={**far, "stream": True})
    events = [json.loads(line[6:]) for line in stream.text.splitlines() if line.startswith("data: {")]
    assert events[0]["choices"][0]["delta"]["content"] == NOT_COVERED and stream.text.endswith("data: [DONE]\n\n")
    s2 = admin.post("/v1/chat/completions", json={**body, "stream": True})
    last = [json.loads(line[6:]) for line in s2.text.splitlines() if line.startswith("data: {")][-1]
    assert "citations" in last
    # The audit record of each answer names the documents whose passages the model was given (none: not covered).
    leave_id = admin.get(f"/v1/collections/{cid}/documents").json()["data"][0]["id"]
    chats = [r for r in kb_services.audit.records(action="chat:create") if r.outcome != "started"]
    assert [r.documents for r in chats] == [(leave_id,), (), (), (leave_id,)]


def test_responses_with_knowledge_cite_and_say_not_covered(admin: TestClient, kb_services: Any) -> None:
    from inhouse.testing.openapi import OpenAISpec

    spec = OpenAISpec.load()
    cid = admin.post("/v1/collections", json={"name": "hr"}).json()["id"]
    admin.post(f"/v1/collections/{cid}/documents", files={"file": ("leave.md", LEAVE)})
    body = {"model": "fake-model", "input": "How many annual leave days after 3 years of service?",
            "knowledge": {"collections": ["hr"]}}
    out = admin.post("/v1/responses", json=body).json()
    assert isinstance(out["citations"], list)
    spec.check("POST", "/responses", out)
    far = {**body, "input": "zzz qqq xxx"}
    nc = admin.post("/v1/responses", json=far).json()
    assert nc["output"][0]["content"][0]["text"] == NOT_COVERED and nc["citations"] == []
    spec.check("POST", "/responses", nc)
    events = [json.loads(line[6:]) for line in admin.post("/v1/responses", json={**body, "stream": True}).text
              .splitlines() if line.startswith("data: ")]
    assert isinstance(events[-1]["response"]["citations"], list)
    assert spec.check_stream("POST", "/responses", events) == len(events)
    # The chat answers of the same two cases, whole and streamed.
    chat = {"model": "fake-model", "knowledge": {"collections": ["hr"]}}
    for question in (body["input"], far["input"]):
        msgs = [{"role": "user", "content": question}]
        spec.check("POST", "/chat/completions", admin.post("/v1/chat/completions", json={**chat, "messages": msgs})
                   .json())
        streamed = admin.post("/v1/chat/completions", json={**chat, "messages": msgs, "stream": True}).text
        spec.check_stream("POST", "/chat/completions", [json.loads(line[6:]) for line in streamed.splitlines()
                                                         if line.startswith("data: {")])


def test_upload_limit_is_larger_than_the_body_limit_only_for_uploads(admin: TestClient, kb_services: Any) -> None:
    cid = admin.post("/v1/collections", json={"name": "big"}).json()["id"]
    text = b"# Big\n\n" + (b"x" * 99 + b"\n") * 11_000  # 1.1 MB > server.max_body_bytes (1 MB)
    assert admin.post(f"/v1/collections/{cid}/documents", files={"file": ("big.md", text)}).status_code == 201
    assert admin.post("/v1/search", content=b"{" + b" " * 1_100_000 + b"}",
                      headers={"content-type": "application/json"}).status_code == 413


@pytest.mark.parametrize("filters", [{"document_ids": 5}, {"labels": 5}, {"labels": True}, {"document_ids": "doc_x"},
                                     {"labels": "internal"}, {"document_ids": [1, 2]}])
def test_a_search_filter_that_is_not_a_list_of_strings_is_a_400(admin: TestClient, filters: dict[str, Any]) -> None:
    """A number was iterated (500), a string taken apart into its characters (silently nothing found)."""
    r = admin.post("/v1/search", json={"query": "annual leave", "filters": filters})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_request" and r.json()["error"]["param"] == "filters"
    assert admin.post("/v1/search", json={"query": "leave", "filters": {"labels": ["internal"]}}).status_code == 200


def test_a_members_document_count_counts_the_documents_they_may_see(admin: TestClient, kb_services: Any) -> None:
    """Restricted documents and those whose own list leaves the member out are not theirs to count either."""
    cid = admin.post("/v1/collections", json={"name": "hr", "access": {"groups": ["all"]}}).json()["id"]
    member_id = kb_services.keys.authenticate(kb_services.member_key).key_id
    admin.patch(f"/v1/collections/{cid}", json={"access": {"groups": ["all"], "keys": [member_id]}})
    admin.post(f"/v1/collections/{cid}/documents", files={"file": ("leave.md", b"# Leave\n\n18 days.\n")})
    admin.post(f"/v1/collections/{cid}/documents", data={"label": "restricted"},
               files={"file": ("layoffs.md", b"# Layoffs\n\nBerlin closes.\n")})
    admin.post(f"/v1/collections/{cid}/documents", data={"keys": "key_someone_else"},
               files={"file": ("salaries.md", b"# Salaries\n\nBands.\n")})
    assert admin.get(f"/v1/collections/{cid}").json()["document_count"] == 3
    with TestClient(build_app(kb_services), headers=member_headers(kb_services)) as m:
        assert len(m.get(f"/v1/collections/{cid}/documents").json()["data"]) == 1
        assert m.get(f"/v1/collections/{cid}").json()["document_count"] == 1
        assert [c["document_count"] for c in m.get("/v1/collections").json()["data"]] == [1]


def multipart(filename: str, data: bytes) -> dict[str, Any]:
    """A one-file body as a browser writes it (the file name given as it goes on the wire)."""
    body = (b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="' + filename.encode() +
            b'"\r\nContent-Type: text/plain\r\n\r\n' + data + b"\r\n--b0undary--\r\n")
    return {"content": body, "headers": {"content-type": "multipart/form-data; boundary=b0undary"}}


def test_a_file_name_keeps_its_quotes_as_browsers_send_them(admin: TestClient) -> None:
    """Browsers and httpx write '"', CR and LF in a part's filename as %22, %0D and %0A (WHATWG multipart/form-data);
    'Q3 "draft" notes.txt' was stored, listed and downloaded as 'Q3 %22draft%22 notes.txt' (and the CLI's ingest of
    the same file made a second document). Those three escapes are decoded, no other: '100%25.txt' is a name."""
    cid = admin.post("/v1/collections", json={"name": "names"}).json()["id"]
    base = f"/v1/collections/{cid}/documents"
    stored = {}
    for wire, expected in (('Q3 %22draft%22 notes.txt', 'Q3 "draft" notes.txt'), ("100%25.txt", "100%25.txt"),
                           ("line%0D%0Abreak%0a.txt", "linebreak%0a.txt"), ("caf%C3%A9.txt", "caf%C3%A9.txt")):
        r = admin.post(base, **multipart(wire, f"The file sent as {wire}, its own text.".encode()))
        assert r.status_code == 201 and r.json()["filename"] == expected, (wire, r.text)
        stored[expected] = r.json()
    doc = stored['Q3 "draft" notes.txt']
    assert doc["source_path"] == 'Q3 "draft" notes.txt'
    cd = admin.get(f"{base}/{doc['id']}/content").headers["content-disposition"]
    assert cd == "attachment; filename*=UTF-8''Q3%20%22draft%22%20notes.txt"
    # httpx (the test client) encodes the same way; the same bytes under the same name are the same document.
    again = admin.post(base, files={"file": ('Q3 "draft" notes.txt', b'The file sent as Q3 %22draft%22 notes.txt, '
                                                                    b"its own text.")})
    assert again.status_code == 200 and again.json()["id"] == doc["id"] and again.json()["status"] == "unchanged"


def test_two_files_in_one_upload_are_a_400(admin: TestClient) -> None:
    """The first of two 'file' parts was dropped without a word (201, only the second stored)."""
    cid = admin.post("/v1/collections", json={"name": "two"}).json()["id"]
    base = f"/v1/collections/{cid}/documents"
    r = admin.post(base, files=[("file", ("first.txt", b"First file: walrus budget.", "text/plain")),
                                ("file", ("second.txt", b"Second file: heron budget.", "text/plain"))])
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "file" and err["code"] == "invalid_request" and "one file per request" in err["message"]
    assert admin.get(base).json()["data"] == []
