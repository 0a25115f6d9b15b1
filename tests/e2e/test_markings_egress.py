"""A share uploaded with too low a label: the documents' own markings keep them on the machine.

The evaluation corpus's finance documents say CONFIDENTIAL in their titles and hold canary strings. An
administrator uploads them into a finance collection, and the HR leave policy into an HR one, all as ``internal``
(the label of the share they came from).
The policy lets ``internal`` go to a cloud model after PII redaction, and, like most companies' first policy, has
no content markers. inhouse (production wiring, real e5 embeddings, fake local model) runs in front of a REAL
local HTTP server standing in for the cloud provider, which records every byte it receives.

With markings read (the default) the finance documents are stored as confidential, a grounded question about them
is answered locally, and no canary reaches the provider, while a question about the leave policy still goes out.
The control, with ``kb.markings = false``, shows the same question sending the canary out: the check can fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_cloud import FakeCloud, finance_canaries, key_in_env, provider_toml, run_fake_cloud
from live_server import run_live_server

from inhouse.testing.network_guard import deny_external_connections

CLOUD_MODEL = "cloud-model"
KEY_ENV = "INHOUSE_TEST_MARKINGS_CLOUD_KEY"
CLOUD_KEY = "sk-test-markings-0123456789abcdef"
SALARY_QUESTION = "What is the reference code of the 2027 salary bands?"
LEAVE_QUESTION = "How many days of annual leave do employees get after 3 years of service?"


def policy_toml(cloud_url: str) -> str:
    return f"""
[defaults]
conversation_label = "public"
pii_label = "internal"


{provider_toml("fakecloud", cloud_url, KEY_ENV, CLOUD_MODEL, max_label="public",
               max_label_after_redaction="internal", on_refusal="local")}
"""


@dataclass
class World:
    http: httpx.Client
    cloud: FakeCloud
    collections: dict[str, str]  # name → id
    uploads: dict[str, dict[str, Any]]


@pytest.fixture(scope="module", params=[True, False], ids=["markings", "control-without-markings"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          eval_corpus: Path) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("markings")
    with run_fake_cloud(CLOUD_KEY) as cloud, key_in_env(KEY_ENV, CLOUD_KEY), deny_external_connections() as attempts:
        policy = data_dir.parent / f"{data_dir.name}-policy.toml"
        policy.write_text(policy_toml(cloud.url))
        settings = {"governance": {"policy_file": policy}, "kb": {"markings": request.param}}
        with run_live_server(data_dir, settings=settings) as server, \
                httpx.Client(base_url=server.url, timeout=60,
                             headers={"Authorization": f"Bearer {server.admin_key}"}) as http:
            collections, uploads = {}, {}
            for folder, paths in (("finance", sorted((eval_corpus / "finance").glob("*.md"))),
                                  ("hr", [eval_corpus / "hr" / "leave-policy.md"])):
                http.post("/v1/admin/groups", json={"name": folder}).raise_for_status()  # lists name existing groups
                r = http.post("/v1/collections", json={"name": folder, "access": {"groups": [folder]}})
                assert r.status_code == 201, r.text
                collections[folder] = r.json()["id"]
                for path in paths:
                    up = http.post(f"/v1/collections/{collections[folder]}/documents", data={"label": "internal"},
                                   files={"file": (path.name, path.read_bytes(), "text/markdown")})
                    assert up.status_code == 201, up.text
                    uploads[path.name] = up.json()
            yield World(http, cloud, collections, uploads)
        assert attempts == [], f"something tried to leave the machine: {attempts}"


def ask(world: World, question: str, collection: str) -> httpx.Response:
    return world.http.post("/v1/chat/completions", json={
        "model": CLOUD_MODEL, "messages": [{"role": "user", "content": question}],
        "knowledge": {"collections": [world.collections[collection]]}})


def test_marked_documents_never_reach_the_cloud(world: World, eval_corpus: Path,
                                                request: pytest.FixtureRequest) -> None:
    markings = "control" not in request.node.callspec.id
    finance = {name: doc for name, doc in world.uploads.items() if name != "leave-policy.md"}
    leave = world.uploads["leave-policy.md"]
    assert leave["label"] == "internal" and "marking" not in leave["metadata"]
    for doc in finance.values():
        if markings:
            assert doc["label"] == "confidential" and "CONFIDENTIAL" in doc["metadata"]["marking"], doc
            stored = world.http.get(f"/v1/collections/{doc['collection_id']}/documents/{doc['id']}").json()
            assert stored["label"] == "confidential"
        else:
            assert doc["label"] == "internal" and "marking" not in doc["metadata"]

    before = world.cloud.calls
    r = ask(world, SALARY_QUESTION, "finance")
    assert r.status_code == 200, r.text
    sent = world.cloud.all_bytes().decode("utf-8", errors="replace")
    leaked = [c for c in finance_canaries(eval_corpus)[0] if c in sent]
    if markings:
        assert r.headers["x-inhouse-destination"] == "local" and r.json()["inhouse"]["egress"] == "kept_local", r.text
        assert r.json()["inhouse"]["label"] == "confidential"
        assert world.cloud.calls == before and leaked == []
    else:  # the control: the same upload without markings sends the salary bands out
        assert r.json()["inhouse"]["egress"] == "sent_redacted", r.text
        assert world.cloud.calls == before + 1 and leaked, "the control should have shown the leak"

    # Internal documents still go out after redaction: the cloud path is live in both worlds.
    r = ask(world, LEAVE_QUESTION, "hr")
    assert r.status_code == 200, r.text
    assert r.headers["x-inhouse-destination"] == "fakecloud" and r.json()["inhouse"]["egress"] == "sent_redacted"
    assert "annual leave" in world.cloud.all_bytes().decode("utf-8", errors="replace")


def test_the_audit_names_who_was_given_which_document(world: World) -> None:
    """An investigation: every request that uploaded, searched, read or was given the salary bands' passages."""
    bands = world.uploads["salary-bands-2027.md"]
    r = world.http.post("/v1/search", json={"query": "salary bands reference code",
                                            "collections": [world.collections["finance"]]})
    assert r.status_code == 200 and bands["id"] in {h["document_id"] for h in r.json()["data"]}
    content = f"/v1/collections/{bands['collection_id']}/documents/{bands['id']}/content"
    assert world.http.get(content).status_code == 200
    assert ask(world, SALARY_QUESTION, "finance").status_code == 200

    found = world.http.get("/v1/admin/audit", params={"document": bands["id"], "limit": 1000}).json()["data"]
    by_resource: dict[str, list[dict[str, Any]]] = {}
    for record in found:
        assert bands["id"] in record["documents"]
        by_resource.setdefault(record["resource"], []).append(record)
    upload = by_resource[f"POST /v1/collections/{bands['collection_id']}/documents"]
    assert upload[0]["label"] == bands["label"] and upload[0]["details"]["marking"] == bands["metadata"].get("marking")
    assert by_resource["POST /v1/search"][-1]["label"] == bands["label"]
    assert f"GET {content}" in by_resource
    grounded = [r for r in by_resource["POST /v1/chat/completions"] if r["outcome"] != "started"]
    assert grounded and grounded[-1]["location"] == ("local" if bands["label"] == "confidential" else "fakecloud")
    leave = world.uploads["leave-policy.md"]["id"]
    assert all(leave not in r["documents"] for r in found)  # a question about salaries was not given the leave policy
    assert world.http.post("/v1/admin/audit/verify").json()["ok"] is True
