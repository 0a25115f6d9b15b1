"""EgressRouter: the effective label, the decision, redaction, audit, and failing closed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from inhouse.errors import InvalidRequest, PermissionDenied, Unavailable
from inhouse.governance.egress.router import EGRESS_DECISION, EgressRouter, LabelSource
from inhouse.governance.events import MemoryAuditSink
from inhouse.governance.pii.redact import RedactionSession, Redactor, ScanResult
from inhouse.governance.policy import PolicyStore
from inhouse.testing.redaction import offline_redactor
from inhouse.types import Actor

LOCAL = "local-model"
ACTOR = Actor(key_id="key_1", name="tester", user_id="usr_1")


def policy_text(on_refusal: str = "local", after: str = "internal") -> str:
    return f"""
[defaults]
conversation_label = "public"
pii_label = "internal"

[[markers]]
pattern = "(?i)\\\\bconfidential\\\\b"
label = "confidential"

[[providers]]
name = "cloud"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "CLOUD_KEY"
models = ["cloud-model"]
max_label = "public"
max_label_after_redaction = "{after}"
on_refusal = "{on_refusal}"
"""


class ExplodingRedactor(Redactor):
    def __init__(self, where: str, inner: Redactor) -> None:
        super().__init__()
        self.where = where
        self.inner = inner

    def inspect(self, texts: Any) -> ScanResult:
        if self.where == "scan":
            raise RuntimeError("presidio broke")
        return self.inner.inspect(texts)

    def redact_messages(self, messages: Any, session: RedactionSession) -> list[dict[str, Any]]:
        raise RuntimeError("anonymizer broke")


@pytest.fixture(scope="module")
def redactor() -> Iterator[Redactor]:
    with offline_redactor(["Alice Wang"]) as r:
        yield r


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(policy_text())
    return path


def make_router(policy_file: Path, redactor: Redactor, *, audit: MemoryAuditSink | None = None,
                on_failure: str = "refuse", sources: tuple[LabelSource, ...] = ()) -> EgressRouter:
    return EgressRouter(PolicyStore(policy_file), redactor, audit or MemoryAuditSink(),
                        is_local=lambda name: name == LOCAL, local_model=lambda: LOCAL, on_failure=on_failure,
                        label_sources=sources)


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "cloud-model", "messages": [{"role": "user", "content": text}], **extra}


def test_local_models_and_unknown_names_are_not_routed(policy_file: Path, redactor: Redactor) -> None:
    router = make_router(policy_file, redactor)
    assert router.route({"model": LOCAL, "messages": []}, ACTOR) is None
    assert router.route(body("hi", model="nobody-serves-this"), ACTOR) is None
    assert [m["id"] for m in router.external_models()] == ["cloud-model"]


@pytest.mark.parametrize(("text", "extra", "labels", "egress", "label"), [
    ("What is 2+2?", {}, (), "sent", "public"),
    ("Mail alice@example.com the answer", {}, (), "sent_redacted", "internal"),
    ("hi", {"metadata": {"label": "internal"}}, (), "sent_redacted", "internal"),
    ("hi", {"metadata": {"label": "confidential"}}, (), "kept_local", "confidential"),
    ("hi", {"inhouse": {"label": "restricted"}}, (), "kept_local", "restricted"),
    ("hi", {"inhouse": {"documents": [{"name": "a.md", "label": "public"}]}}, (), "sent", "public"),
    ("hi", {"inhouse": {"documents": [{"name": "a.md"}]}}, (), "kept_local", "confidential"),  # missing label
    ("hi", {}, ("public", "internal"), "sent_redacted", "internal"),
    ("hi", {}, (None,), "kept_local", "confidential"),  # a retrieved chunk without a label
    ("Q3 results: DRAFT, CONFIDENTIAL", {}, (), "kept_local", "confidential"),  # content marker
])
def test_effective_label_and_decision(policy_file: Path, redactor: Redactor, text: str, extra: dict[str, Any],
                                      labels: tuple[Any, ...], egress: str, label: str) -> None:
    audit = MemoryAuditSink()
    routed = make_router(policy_file, redactor, audit=audit).route(body(text, **extra), ACTOR,
                                                                   extra_labels=labels)
    assert routed is not None
    assert routed.decision.egress == egress and routed.decision.label is not None
    assert routed.decision.label.value == label
    [event] = audit.events
    assert event.action == EGRESS_DECISION and event.actor_key_id == "key_1" and event.resource == "cloud-model"
    assert event.details["egress"] == egress and event.details["label"] == label
    assert event.outcome == ("success" if routed.goes_out else "denied")
    if egress == "kept_local":
        assert routed.body["model"] == LOCAL and routed.body["messages"][0]["content"] == text
    else:
        assert set(routed.body) == {"model", "messages"}  # our extensions and metadata stay here


def test_redacted_body_and_audit_hold_no_values(policy_file: Path, redactor: Redactor) -> None:
    audit = MemoryAuditSink()
    request = body("Alice Wang (alice@example.com, 13812345678) asks", user="alice", metadata={"k": "v"})
    routed = make_router(policy_file, redactor, audit=audit).route(request, ACTOR)
    assert routed is not None and routed.decision.egress == "sent_redacted"
    sent = repr(routed.body)
    for value in ("Alice Wang", "alice@example.com", "13812345678"):
        assert value not in sent and value not in repr(audit.events)
    assert "user" not in routed.body and "metadata" not in routed.body
    assert routed.extension()["redactions"] == {"EMAIL": 1, "PERSON": 1, "PHONE": 1}
    assert routed.session.restore("<PERSON_1>") == "Alice Wang"
    assert request["messages"][0]["content"].startswith("Alice Wang")  # the caller's body is not mutated


def _tool(description: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "file_report", "description": description, "parameters": {
        "type": "object", "properties": {"quarter": {"type": "string", "description": "e.g. Q3"}}}}}


def _schema(description: str) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
        "type": "object", "description": description, "properties": {"text": {"type": "string"}}}}}


@pytest.mark.parametrize("field", ["tools", "response_format"])
def test_tools_and_schemas_are_labelled_scanned_and_redacted_like_messages(policy_file: Path, redactor: Redactor,
                                                                           field: str) -> None:
    """A tool's or a schema's description went out unscanned: a confidential marker, a password or an address
    there reached the provider as is."""
    shape = _tool if field == "tools" else _schema

    def extra(text: str) -> dict[str, Any]:
        return {field: [shape(text)] if field == "tools" else shape(text)}

    router = make_router(policy_file, redactor)
    marked = router.route(body("Summarise", **extra("Files the CONFIDENTIAL Q3 board figures")), ACTOR)
    assert marked is not None and marked.decision.egress == "kept_local" and marked.body["model"] == LOCAL
    secret = router.route(body("Summarise", **extra("Log in with password=Hunter2-Secret!")), ACTOR)
    assert secret is not None and secret.decision.egress == "kept_local" and secret.secrets_found
    sent = router.route(body("Summarise", **extra("Mail the report to alice@example.com")), ACTOR)
    assert sent is not None and sent.decision.egress == "sent_redacted", sent.decision
    assert "alice@example.com" not in repr(sent.body) and "<EMAIL_1>" in repr(sent.body[field])
    names = sent.body[field][0]["function"] if field == "tools" else sent.body[field]["json_schema"]
    assert names["name"] in ("file_report", "answer")  # names and structure are kept
    plain = router.route(body("Summarise", **extra("Files the quarterly report"), stop=["END"]), ACTOR)
    assert plain is not None and plain.decision.egress == "sent" and plain.body[field] == extra(
        "Files the quarterly report")[field] and plain.body["stop"] == ["END"]


def test_refusal_raises_permission_denied(tmp_path: Path, redactor: Redactor) -> None:
    path = tmp_path / "p.toml"
    path.write_text(policy_text(on_refusal="refuse"))
    audit = MemoryAuditSink()
    with pytest.raises(PermissionDenied) as info:
        make_router(path, redactor, audit=audit).route(body("hi", metadata={"label": "confidential"}), ACTOR)
    assert info.value.code == "egress_refused" and "confidential" in info.value.message
    assert [e.details["egress"] for e in audit.events] == ["refused"]


def test_unknown_label_is_a_bad_request(policy_file: Path, redactor: Redactor) -> None:
    with pytest.raises(InvalidRequest):
        make_router(policy_file, redactor).route(body("hi", metadata={"label": "top-secret"}), ACTOR)


def _failing_source(_: Mapping[str, Any]) -> list[object]:
    raise RuntimeError("labeller down")


@pytest.mark.parametrize("fault", ["scan", "redact", "labeller", "corrupt policy", "unreadable policy"])
@pytest.mark.parametrize("on_failure", ["refuse", "local"])
def test_faults_fail_closed(policy_file: Path, redactor: Redactor, fault: str, on_failure: str) -> None:
    r: Redactor = redactor
    sources: tuple[LabelSource, ...] = ()
    if fault in ("scan", "redact"):
        r = ExplodingRedactor(fault, redactor)
    if fault == "labeller":
        sources = (_failing_source,)
    if fault == "corrupt policy":
        policy_file.write_text("[[providers]\nname = ")
    if fault == "unreadable policy":
        policy_file.unlink()
        policy_file.mkdir()
    audit = MemoryAuditSink()
    router = make_router(policy_file, r, audit=audit, on_failure=on_failure, sources=sources)
    # The PII in the message makes the redaction path run (sent_redacted would be the normal outcome).
    request = body("mail alice@example.com")
    if on_failure == "refuse":
        with pytest.raises(PermissionDenied) as info:
            router.route(request, ACTOR)
        assert info.value.code == "egress_refused" and "nothing was sent" in info.value.message
    else:
        routed = router.route(request, ACTOR)
        assert routed is not None and not routed.goes_out and routed.decision.egress == "kept_local"
        assert routed.body["model"] == LOCAL
    [event] = audit.events
    assert event.outcome == "denied" and "nothing was sent" in event.details["reason"]


def test_audit_failure_stops_the_request(policy_file: Path, redactor: Redactor) -> None:
    audit = MemoryAuditSink()
    audit.fail_with = OSError("disk full")
    with pytest.raises(Unavailable) as info:
        make_router(policy_file, redactor, audit=audit).route(body("What is 2+2?"), ACTOR)
    assert info.value.code == "audit_unavailable"


def test_policy_edits_apply_to_the_next_request(policy_file: Path, redactor: Redactor) -> None:
    router = make_router(policy_file, redactor)
    routed = router.route(body("hi", metadata={"label": "internal"}), ACTOR)
    assert routed is not None and routed.decision.egress == "sent_redacted"
    policy_file.write_text(policy_text(after="public"))
    t = time.time() + 5
    os.utime(policy_file, (t, t))
    routed = router.route(body("hi", metadata={"label": "internal"}), ACTOR)
    assert routed is not None and routed.decision.egress == "kept_local"


SECRET_PROMPTS = [
    ("Why does this fail? password: Winter2026!corp", "password"),
    ("DATABASE_URL=postgres://app:S3cr3t@db.qinglan.internal:5432/erp", "connection_string"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "private_key"),
    ("our key ih_0123456789abcdef_" + "Ab1_" * 10 + " stopped working", "inhouse_key"),
    ("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "cloud_key"),
]


@pytest.mark.parametrize(("text", "kind"), SECRET_PROMPTS)
@pytest.mark.parametrize("declared", ["public", "internal"])
def test_secrets_never_go_out_whatever_the_label(policy_file: Path, redactor: Redactor, text: str, kind: str,
                                                 declared: str) -> None:
    """The provider could take this label (as is or redacted), but a secret is never sent: kept local (the
    provider's on_refusal) with an audit record naming the kind of secret, never its value."""
    audit = MemoryAuditSink()
    routed = make_router(policy_file, redactor, audit=audit).route(body(text, metadata={"label": declared}), ACTOR)
    assert routed is not None and not routed.goes_out and routed.decision.egress == "kept_local"
    assert routed.body["model"] == LOCAL and kind in routed.decision.reason
    [event] = audit.events
    assert event.outcome == "denied" and {"kind": kind, "count": 1} in event.details["secrets_found"]
    assert {"kind": "SECRET", "count": 1} in event.details["pii_found"]
    secret_part = text.split(":", 1)[-1].split("=", 1)[-1].strip()
    assert secret_part[:12] not in repr(audit.events)


def test_on_secret_refuse_overrides_the_providers_local_answer(tmp_path: Path, redactor: Redactor) -> None:
    path = tmp_path / "p.toml"
    path.write_text(policy_text().replace('pii_label = "internal"', 'pii_label = "internal"\non_secret = "refuse"'))
    audit = MemoryAuditSink()
    with pytest.raises(PermissionDenied) as info:
        make_router(path, redactor, audit=audit).route(body("token = ghp_" + "a1B2" * 9), ACTOR)
    assert info.value.code == "egress_refused" and "api_token" in info.value.message
    assert "ghp_" not in info.value.message and [e.details["egress"] for e in audit.events] == ["refused"]


def test_internal_addresses_go_out_redacted(policy_file: Path, redactor: Redactor) -> None:
    text = ("Ask zhang.wei@qinglan-components.example and li.na@hr.qinglan.local why "
            "https://jira.qinglan.internal/browse/OPS-7 on db01.qinglan.corp (10.1.2.3) is down.")
    routed = make_router(policy_file, redactor).route(body(text), ACTOR)
    assert routed is not None and routed.decision.egress == "sent_redacted"
    sent = routed.body["messages"][0]["content"]
    for value in ("qinglan", "10.1.2.3"):
        assert value not in sent
    assert routed.extension()["redactions"] == {"EMAIL": 2, "HOST": 1, "IP": 1, "URL": 1}
