"""The leak test: finance documents never reach anyone outside the finance group.

The whole app is wired by ``bootstrap.build_services`` (real key store, directory, index store, parsers, chunker),
with the FakeEmbedder and a fake engine whose "model" echoes the context passages it was given: whatever
retrieval lets through would show up in the answer. The corpus is the evaluation corpus (the ``eval_corpus``
fixture of tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.bootstrap import build_services
from inhouse.config import Settings
from inhouse.engine.backends.fake import EOS_ID, ScriptInput, decode_tokens, encode_text
from inhouse.kb.service import KnowledgeBase
from inhouse.services import Services
from inhouse.testing.fakes import build_fake_engine
from inhouse.testing.gguf_writer import tiny_model_kv, tiny_model_tensors, write_gguf
from inhouse.types import Actor

MODEL = "echo-model"

# What must never reach an outsider: the canaries and the figures of the two finance documents.
FORBIDDEN = re.compile(r"CANARY-FIN-|ALBATROSS|HERON|KESTREL|412\.6|241\.3|97\.8|73\.5|38\.9|156 million|"
                       r"330,000|450,000|620,000|180,000|240,000|Salary Bands|Q3 2026 Financial", re.IGNORECASE)
CANARY_QUESTIONS = [
    "CANARY-FIN", "What is the reference code of the Q3 2026 results draft?", "Project Heron restructuring Suzhou",
    "What is the revenue of the motor controllers segment?", "salary bands 2027 P4 staff engineer",
    "Financial Results DRAFT CONFIDENTIAL", "merit budget", "What was Q3 2026 revenue?", "季度收入", "薪资",
    "gross margin operating profit cash", "ALBATROSS", "KESTREL",
]


_FINGERPRINT = re.compile(r"[A-Z]{3,}[-A-Z0-9]*|\d[\d.,]*\d|HERON|Heron")


def echo(inp: ScriptInput) -> int:
    """Answer with a fingerprint of the context the model was shown (its codes and figures), then cite [1]: what
    retrieval lets through shows up in the answer, and the fake stays fast."""
    prompt = decode_tokens(inp.prompt)
    ctx = prompt.split("Context passages:", 1)[-1] if "Context passages:" in prompt else ""
    ctx = ctx.split("\n\nQuestion:", 1)[0]  # the caller's own question is not a leak
    reply = encode_text("From the documents: " + " ".join(_FINGERPRINT.findall(ctx))[:700] + " [1]")
    n = len(inp.generated)
    return reply[n] if n < len(reply) else EOS_ID


@dataclass
class World:
    services: Services
    kb: KnowledgeBase
    client: TestClient
    admin: str
    finance: str
    outsider: str
    fin_user: str
    fin_group: str
    finance_col: str
    hr_col: str
    finance_docs: list[str]
    hr_docs: list[str]
    corpus: Path

    def h(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, store_url: str, eval_corpus: Path) -> Iterator[World]:
    """The world on either store (``store_url``: the embedded files, or every store in a fresh PostgreSQL
    database)."""
    tmp = tmp_path_factory.mktemp("leak")
    # min_similarity 0: the gate never answers "not covered", so every question reaches the (echoing) model.
    settings = Settings(data_dir=tmp / "data", models={"default": MODEL}, kb={"embedder": "fake", "min_similarity": 0},
                        store={"url": store_url})
    services = build_services(settings, load_engine=lambda spec: build_fake_engine(spec.name, n_ctx=8192,
                                                                                  script=echo))
    services.registry.add(write_gguf(tmp / "m.gguf", tiny_model_kv(), tiny_model_tensors()), MODEL)
    kb = services.kb
    assert kb is not None
    root = Actor("key_setup", "setup", role="admin")
    d = services.directory
    fin_group, hr_group = d.create_group("finance"), d.create_group("hr")
    fin_user, out_user = d.create_user("fiona"), d.create_user("oscar")
    d.add_member(fin_group.id, fin_user.id)
    d.add_member(hr_group.id, out_user.id)
    _, admin = services.keys.create_key("admin", role="admin")
    _, finance = services.keys.create_key("fiona", user_id=fin_user.id)
    _, outsider = services.keys.create_key("oscar", user_id=out_user.id)
    cols = {}
    for folder in sorted(p for p in eval_corpus.iterdir() if p.is_dir()):
        cols[folder.name] = kb.create_collection(root, folder.name, groups=[folder.name if folder.name != "zh"
                                                                           else "hr"])
        label = "confidential" if folder.name == "finance" else "internal"
        report = kb.ingest_paths(root, folder.name, [folder], label=label)
        assert not [e for e in report.errors if not e.source_path.endswith(".json")], report.errors
    docs = lambda name: [x.id for x in kb.list_documents(root, name)]  # noqa: E731
    with TestClient(build_app(services)) as client:
        yield World(services, kb, client, admin, finance, outsider, fin_user.id, fin_group.id,
                    cols["finance"].id, cols["hr"].id, docs("finance"), docs("hr"), eval_corpus)
    services.close()


def questions(corpus: Path) -> list[str]:
    qa = [json.loads(line)["question"] for line in (corpus / "qa.jsonl").read_text().splitlines() if line.strip()]
    return qa + CANARY_QUESTIONS


def clean(text: str) -> bool:
    return FORBIDDEN.search(text) is None


def test_outsider_never_receives_finance_content(world: World) -> None:
    c, h = world.client, world.h(world.outsider)
    assert world.finance_docs, "finance documents were ingested"
    for q in questions(world.corpus):
        r = c.post("/v1/search", json={"query": q, "top_k": 20}, headers=h)
        assert r.status_code == 200 and clean(r.text), (q, r.text[:500])
        chat = c.post("/v1/chat/completions", headers=h, json={
            "model": MODEL, "messages": [{"role": "user", "content": q}], "knowledge": {}, "max_tokens": 800})
        assert chat.status_code == 200 and clean(chat.text), (q, chat.text[:500])
        if q in CANARY_QUESTIONS:
            stream = c.post("/v1/chat/completions", headers=h, json={
                "model": MODEL, "messages": [{"role": "user", "content": q}], "knowledge": {"top_k": 8},
                "stream": True, "max_tokens": 800})
            assert stream.status_code == 200 and clean(stream.text), q
        # `inhouse ask` runs this same core call with the key's actor.
        actor = world.services.keys.authenticate(world.outsider)
        ans = asyncio.run(world.kb.answerer.answer(actor, q, model=MODEL, top_k=8))
        assert clean(ans.text) and all(clean(ci.snippet) for ci in ans.citations), q
    # Naming the collection, or reading its documents, is "not found" — exactly like ids that do not exist.
    for body in ({"query": "revenue", "collections": ["finance"]}, {"query": "revenue", "collections": ["nope"]}):
        r = c.post("/v1/search", json=body, headers=h)
        assert r.status_code == 404 and clean(r.text)
    chat = c.post("/v1/chat/completions", headers=h, json={
        "model": MODEL, "messages": [{"role": "user", "content": "revenue"}],
        "knowledge": {"collections": ["finance"]}})
    assert chat.status_code == 404


def test_outsider_cannot_read_or_probe_finance_documents(world: World) -> None:
    c, h = world.client, world.h(world.outsider)
    assert [x["name"] for x in c.get("/v1/collections", headers=h).json()["data"]] == ["hr", "zh"]
    for ref in (world.finance_col, "finance"):
        assert c.get(f"/v1/collections/{ref}", headers=h).status_code == 404
        assert c.get(f"/v1/collections/{ref}/documents", headers=h).status_code == 404
    for doc in world.finance_docs:
        for col in (world.finance_col, world.hr_col):
            for suffix in ("", "/content"):
                r = c.get(f"/v1/collections/{col}/documents/{doc}{suffix}", headers=h)
                assert r.status_code == 404 and clean(r.text)
                assert r.json()["error"]["message"] == f"No {'collection' if col == world.finance_col else 'document'}"\
                    f" '{col if col == world.finance_col else doc}'."
            assert c.delete(f"/v1/collections/{col}/documents/{doc}", headers=h).status_code == 404
            assert c.patch(f"/v1/collections/{col}/documents/{doc}", json={"label": "public"},
                           headers=h).status_code == 404
    unknown = c.get(f"/v1/collections/{world.hr_col}/documents/doc_00000000000000000000", headers=h)
    assert unknown.status_code == 404
    # The outsider's own department works.
    hr_doc = world.hr_docs[0]
    assert c.get(f"/v1/collections/{world.hr_col}/documents/{hr_doc}/content", headers=h).status_code == 200


def test_finance_and_admin_keys_do_see_finance(world: World) -> None:
    c = world.client
    for key in (world.finance, world.admin):
        h = world.h(key)
        r = c.post("/v1/search", json={"query": "What was Q3 2026 revenue?", "collections": ["finance"]}, headers=h)
        assert r.status_code == 200 and "412.6" in r.text
        chat = c.post("/v1/chat/completions", headers=h, json={
            "model": MODEL, "messages": [{"role": "user", "content": "reference code of the Q3 2026 results"}],
            "knowledge": {"collections": ["finance"]}, "max_tokens": 1200})
        body = chat.json()
        assert chat.status_code == 200 and "CANARY-FIN-" in body["choices"][0]["message"]["content"]
        assert body["citations"] and body["citations"][0]["document_id"] in world.finance_docs
        doc = world.finance_docs[0]
        dl = c.get(f"/v1/collections/{world.finance_col}/documents/{doc}/content", headers=h)
        assert dl.status_code == 200 and b"CANARY-FIN-" in dl.content


def test_revoking_the_group_takes_effect_on_the_next_request(world: World) -> None:
    c, h = world.client, world.h(world.finance)
    doc = world.finance_docs[0]
    url = f"/v1/collections/{world.finance_col}/documents/{doc}/content"
    assert c.get(url, headers=h).status_code == 200
    world.services.directory.remove_member(world.fin_group, world.fin_user)
    try:
        assert c.get(url, headers=h).status_code == 404
        r = c.post("/v1/search", json={"query": "CANARY-FIN revenue salary", "top_k": 20}, headers=h)
        assert r.status_code == 200 and clean(r.text)
    finally:
        world.services.directory.add_member(world.fin_group, world.fin_user)
    assert c.get(url, headers=h).status_code == 200
