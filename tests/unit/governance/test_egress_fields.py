"""What of a request is content: keys named like structure (id, type, role) are skipped only where they are
structure, tool_choice goes out only in its defined shapes, and JSON-escaped text is read as the provider reads it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inhouse.errors import InvalidRequest
from inhouse.governance.egress.router import EgressRouter
from inhouse.governance.events import MemoryAuditSink
from inhouse.governance.pii.redact import RedactionSession, Redactor, field_texts, message_texts, unescaped
from inhouse.governance.policy import PolicyStore
from inhouse.testing.redaction import offline_redactor
from inhouse.types import Actor

ACTOR = Actor(key_id="key_1", name="tester", user_id="usr_1")
SECRET = "Hengtai#2025x9"
MAIL = "alice.wang@qinglan.com.cn"
POLICY = """
[defaults]
conversation_label = "public"
pii_label = "internal"

[[markers]]
pattern = "(?i)\\\\bconfidential\\\\b|机密"
label = "confidential"

[[providers]]
name = "cloud"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "CLOUD_KEY"
models = ["cloud-model"]
max_label = "public"
max_label_after_redaction = "internal"
on_refusal = "local"
"""


@pytest.fixture(scope="module")
def redactor() -> Iterator[Redactor]:
    with offline_redactor(["王小明"]) as r:
        yield r


@pytest.fixture
def router(tmp_path: Path, redactor: Redactor) -> EgressRouter:
    (tmp_path / "policy.toml").write_text(POLICY)
    return EgressRouter(PolicyStore(tmp_path / "policy.toml"), redactor, MemoryAuditSink(),
                        is_local=lambda name: name == "local-model", local_model=lambda: "local-model")


def route(router: EgressRouter, messages: list[dict[str, Any]] | None = None, **extra: Any) -> tuple[str, str]:
    routed = router.route({"model": "cloud-model", "messages": messages or [{"role": "user", "content": "Hi"}],
                           **extra}, ACTOR)
    assert routed is not None
    return routed.decision.egress, json.dumps(routed.body, ensure_ascii=False) if routed.goes_out else ""


def tool(param: str) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": "lookup", "description": "Look up a ticket.", "parameters": {
        "type": "object", "required": [param], "properties": {param: {
            "type": "string", "description": f"Ticket {param}, CONFIDENTIAL tracker, password={SECRET}, {MAIL}"}}}}}]


@pytest.mark.parametrize("name", ["id", "type", "role", "tool_call_id", "ticket"])
def test_a_parameter_named_like_structure_is_read(router: EgressRouter, name: str) -> None:
    assert any(SECRET in t for t in field_texts("tools", tool(name)))
    assert route(router, tools=tool(name)) == ("kept_local", "")


def test_schema_enum_values_under_a_type_property_are_read(router: EgressRouter) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "object", "properties": {
        "type": {"type": ["string", "null"], "enum": ["bug", f"escalate to {MAIL}"]}}}}}
    assert field_texts("response_format", schema) == ["t", "bug", f"escalate to {MAIL}"]
    egress, sent = route(router, response_format=schema)
    assert egress == "sent_redacted" and MAIL not in sent and '"type": ["string", "null"]' in sent
    assert '"type": "json_schema"' in sent and '"type": "object"' in sent


def test_structure_stays_as_it_is(redactor: Redactor) -> None:
    call_id = "call_9f8e7d6c5b4a39281706AbCdEf"  # high entropy: a secret if it were read
    messages = [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": "send", "arguments": json.dumps({"id": MAIL})}}]},
        {"role": "tool", "tool_call_id": call_id, "content": [{"type": "text", "text": MAIL}]},
    ]
    assert message_texts(messages) == ["send", json.dumps({"id": MAIL}), MAIL]
    out = redactor.redact_messages(messages, RedactionSession())
    assert out[0]["tool_calls"][0]["id"] == messages[0]["tool_calls"][0]["id"]  # type: ignore[index]
    assert out[1]["tool_call_id"] == messages[1]["tool_call_id"] and out[1]["content"][0]["type"] == "text"
    assert MAIL not in json.dumps(out)


def test_tool_choice_goes_out_only_in_its_defined_shapes(router: EgressRouter) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    choice = {"type": "function", "function": {"name": "lookup", "description": f"CONFIDENTIAL {SECRET} {MAIL}"}}
    egress, sent = route(router, tools=tools, tool_choice=choice)
    assert egress == "sent" and SECRET not in sent and MAIL not in sent
    assert '"tool_choice": {"type": "function", "function": {"name": "lookup"}}' in sent
    assert '"tool_choice": "auto"' in route(router, tools=tools, tool_choice="auto")[1]
    with pytest.raises(InvalidRequest):
        route(router, tools=tools, tool_choice={"type": "function", "name": f"{SECRET}"})


RECORD = {"员工": "王小明", "系统密码": SECRET, "密级": "机密", "备注": "薪资调整方案"}


def tool_result(content: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "总结这条记录"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": content}]


def test_json_escaped_tool_results_are_read_decoded(router: EgressRouter) -> None:
    assert unescaped(json.dumps(RECORD)) == json.dumps(RECORD, ensure_ascii=False)
    twice = unescaped(json.dumps(json.dumps(RECORD)))  # JSON in a JSON string
    assert twice is not None and "王小明" in twice and "机密" in twice
    assert route(router, tool_result(json.dumps(RECORD))) == ("kept_local", "")  # marker, name and password
    # Only a name: the label allows sending after redaction, and the decoded form goes, redacted.
    egress, sent = route(router, tool_result(json.dumps({"员工": "王小明", "备注": "调岗"})))
    assert egress == "sent_redacted" and "王小明" not in sent and "\\u738b\\u5c0f\\u660e" not in sent
    assert "<PERSON_1>" in sent
    # Escapes that hide nothing go out as they came.
    plain = json.dumps({"备注": "调岗"})
    egress, sent = route(router, tool_result(plain))
    assert egress == "sent" and json.loads(sent)["messages"][2]["content"] == plain
