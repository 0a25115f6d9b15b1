"""`inhouse search` and `inhouse ask` read documents from the command line and are in the audit log like the same
reads over HTTP: by the acting key (`--key`'s, with its user, or `key_cli`), naming the documents whose snippets were
returned or whose passages the model was given, so `inhouse audit export --document doc_…` finds who read it; so are
`inhouse support` turns and `inhouse schedule` commands. A `--key` is checked as over HTTP (a key scoped to the support
widget cannot search) and a refused one is recorded `denied`. A search whose record cannot be written shows nothing.
Paths given to `inhouse ingest` that are not there are refused before anything is created."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from inhouse.cli.common import services_for
from inhouse.cli.main import app
from inhouse.errors import AuditUnavailable
from inhouse.governance.audit.log import AuditLog
from inhouse.governance.labels import Label
from inhouse.kb.answer import Answerer, GroundedAnswer, Grounding

LEAVE = "# Annual leave\n\nAfter 3 years of service an employee has 15 days of annual leave a year.\n"
POLICY = ("# Travel policy\n\n## Hotel limits per night\n\nCity tier | Limit per night\n"
          "Tier 1 (Shanghai, Beijing) | 1,200 CNY\nOther cities | 500 CNY\n")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    monkeypatch.setenv("INHOUSE_KB__MIN_SIMILARITY", "0")  # the fake embedder's similarities are not e5's
    monkeypatch.setenv("COLUMNS", "400")
    (tmp_path / "leave.md").write_text(LEAVE)
    (tmp_path / "travel-policy.md").write_text(POLICY)
    return tmp_path


def cli(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def records(*args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in cli("audit", "export", *args).output.splitlines()]


@pytest.fixture
def member(env: Path) -> tuple[str, str]:
    """A document in collection hr, and the secret of a key of erin, a member of group hr: (document id, secret)."""
    cli("groups", "add", "hr")
    cli("users", "add", "erin")
    cli("groups", "add-member", "hr", "erin")
    cli("ingest", str(env / "leave.md"), "--collection", "hr", "--group", "hr", "--label", "internal")
    (doc,) = re.findall(r"doc_[0-9a-f]+", cli("collections", "show", "hr").output)
    secret = re.findall(r"ih_[A-Za-z0-9_-]+", cli("keys", "create", "--name", "erin-cli", "--user", "erin").output)
    return doc, secret[-1]


def key_of(secret: str) -> str:
    return "key_" + secret.split("_")[1]


def refused(*args: str, code: int = 4) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result


async def fake_answer(self: Answerer, g: Grounding, *, model: str, **sampling: Any) -> GroundedAnswer:
    assert g.covered and g.hits  # the real grounding: only the model is left out
    return GroundedAnswer("After 3 years of service: 15 days of annual leave a year [1].", [], g, model)


def test_a_search_is_recorded_naming_the_documents_it_returned(member: tuple[str, str]) -> None:
    doc, secret = member
    found = cli("search", "annual leave after 3 years", "--collection", "hr", "--key", secret)
    assert "Annual leave" in found.output
    cli("search", "annual leave", "--collection", "hr")  # the CLI's own key

    reads = [r for r in records("--document", doc) if r["action"] == "kb:read"]
    assert [(r["actor_key_id"], r["outcome"], r["resource"]) for r in reads] == [
        (key_of(secret), "success", "inhouse search"), ("key_cli", "success", "inhouse search")]
    mine = reads[0]
    assert mine["documents"] == [doc] and mine["label"] == "internal" and mine["user_id"].startswith("usr_")
    assert mine["details"]["via"] == "cli"


def test_a_grounded_answer_is_recorded_naming_the_documents_the_model_was_given(
        member: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    doc, secret = member
    monkeypatch.setattr(Answerer, "complete", fake_answer)
    answered = cli("ask", "How many annual leave days after 3 years?", "--model", "m", "--key", secret)
    assert "15 days" in answered.output

    started, final = [r for r in records("--since", "1h") if r["action"] == "chat:create"]
    assert (started["outcome"], final["outcome"]) == ("started", "success")
    assert started["request_id"] == final["request_id"] and started["details"]["process"]
    assert {r["actor_key_id"] for r in (started, final)} == {key_of(secret)}
    assert final["documents"] == [doc] and final["label"] == "internal" and final["model"] == "m"
    assert [r["action"] for r in records("--document", doc)] == ["kb:write", "chat:create"]
    # Remembered at its passages' label, as a grounded chat completion's answer: pasted back, it counts as internal.
    with services_for(None) as services:
        pasted = "After 3 years of service: 15 days of annual leave a year [1]."
        assert services.answers.of_history([{"role": "user", "content": pasted}]) == Label.INTERNAL


def test_a_search_whose_record_cannot_be_written_shows_nothing(member: tuple[str, str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: AuditLog, **request: Any) -> None:
        raise AuditUnavailable("The audit log cannot be written.")

    monkeypatch.setattr(AuditLog, "record_request", refuse)
    result = CliRunner().invoke(app, ["search", "annual leave", "--collection", "hr", "--key", member[1]])
    assert result.exit_code == 5, result.output
    assert "Annual leave" not in result.output and "audit log cannot be written" in result.output


def test_a_key_scoped_to_the_support_widget_may_not_search_or_ask_from_the_command_line(
        member: tuple[str, str]) -> None:
    widget = re.findall(r"ih_[A-Za-z0-9_-]+", cli("keys", "create", "--name", "widget", "--user", "erin",
                                                  "--scope", "apps:support").output)[-1]
    search = refused("search", "annual leave", "--collection", "hr", "--key", widget)
    assert "Annual leave" not in search.output
    assert "Your key is limited to apps:support: it may not perform 'kb:read'." in " ".join(search.output.split())
    ask = refused("ask", "How many annual leave days?", "--model", "m", "--key", widget)
    assert "may not perform 'chat:create'" in ask.output
    denied = [r for r in records("--since", "1h") if r["outcome"] == "denied"]
    assert [(r["action"], r["actor_key_id"], r["reason"], r["documents"]) for r in denied] == [
        ("kb:read", key_of(widget), "permission_denied", []),
        ("chat:create", key_of(widget), "permission_denied", [])]


@pytest.mark.parametrize("secret", ["ih_notakey", "ih_0123456789abcdef_" + "x" * 32])
def test_a_wrong_key_is_refused_and_recorded_denied_by_no_key(member: tuple[str, str], secret: str) -> None:
    result = refused("search", "annual leave", "--key", secret)
    assert "Invalid API key" in result.output and "Annual leave" not in result.output
    (record,) = [r for r in records("--since", "1h") if r["outcome"] == "denied"]
    assert (record["action"], record["actor_key_id"], record["reason"]) == ("kb:read", None, "invalid_api_key")


def test_a_support_turn_is_recorded_naming_the_documents_the_model_was_given(
        member: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    doc, secret = member
    monkeypatch.setattr(Answerer, "complete", fake_answer)
    result = CliRunner().invoke(app, ["support", "--collection", "hr", "--model", "m", "--key", secret],
                                input="How many annual leave days after 3 years?\n\n")
    assert result.exit_code == 0 and "15 days" in result.output, (result.output, result.exception)
    (turn,) = [r for r in records("--since", "1h") if r["action"] == "apps:support"]
    assert (turn["outcome"], turn["actor_key_id"], turn["documents"]) == ("success", key_of(secret), [doc])
    assert turn["resource"].startswith("inhouse support ") and turn["details"]["via"] == "cli"


def test_a_trip_planned_from_the_command_line_names_the_policy_it_applied(
        member: tuple[str, str], env: Path) -> None:
    leave, secret = member
    cli("ingest", str(env / "travel-policy.md"), "--collection", "hr", "--label", "confidential")
    policy = [d for d in re.findall(r"doc_[0-9a-f]+", cli("collections", "show", "hr").output) if d != leave]
    trip = cli("schedule", "trip", "Shanghai", "--depart", "2030-03-01", "--return", "2030-03-03", "--key", secret)
    assert "1200" in trip.output
    cli("schedule", "list", "--key", secret)
    (planned, listed) = [r for r in records("--since", "1h") if r["action"] == "apps:use"]
    assert (planned["resource"], planned["actor_key_id"], planned["documents"], planned["label"]) == (
        "inhouse schedule trip", key_of(secret), policy, "confidential")
    assert (listed["resource"], listed["documents"], listed["outcome"]) == ("inhouse schedule list", [], "success")
    refused("schedule", "list", "--key", re.findall(r"ih_[A-Za-z0-9_-]+", cli(
        "keys", "create", "--name", "w", "--user", "erin", "--scope", "apps:support").output)[-1])


@pytest.mark.parametrize("sync", [False, True])
def test_ingesting_a_path_that_is_not_there_creates_nothing(sync: bool, env: Path) -> None:
    cli("collections", "list")  # the data directory and its audit log exist
    before = len(records())
    typo = env / "typo_dir"
    result = CliRunner().invoke(app, ["ingest", *(["--sync"] if sync else []), str(env / "leave.md"), str(typo),
                                      "--collection", "typo"])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert line == f"error: {typo}: no such file or directory"
    assert "typo" not in cli("collections", "list").output
    assert len(records()) == before  # no collection created, no run recorded


def test_sync_of_a_file_is_refused_before_anything_is_created(env: Path) -> None:
    result = CliRunner().invoke(app, ["ingest", "--sync", str(env / "leave.md"), "--collection", "typo"])
    assert result.exit_code == 2 and "--sync takes directories" in result.output, result.output
    assert "typo" not in cli("collections", "list").output


def test_keys_list_on_a_narrow_terminal_shows_each_value_whole(member: tuple[str, str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cli("keys", "create", "--name", "support widget", "--user", "erin", "--scope", "apps:support")
    monkeypatch.setenv("COLUMNS", "80")  # ten columns at 80 were "na…", "ro…", "20…"
    listed = cli("keys", "list").output
    assert "support widget" in listed and "role: member (apps:support only)" in listed
    assert "last used: never" in listed and "limits: default" in listed and "…" not in listed
    monkeypatch.setenv("COLUMNS", "400")
    assert "member (apps:support only)" in cli("keys", "list").output  # the table, on a wide one
