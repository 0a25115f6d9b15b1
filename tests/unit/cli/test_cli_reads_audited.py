"""`inhouse search` and `inhouse ask` read documents from the command line and are in the audit log like the same
reads over HTTP: by the acting key (`--key`'s, with its user, or `key_cli`), naming the documents whose snippets were
returned or whose passages the model was given, so `inhouse audit export --document doc_…` finds who read it. A search
whose record cannot be written shows nothing. Paths given to `inhouse ingest` that are not there are refused before
anything is created."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from inhouse.cli.main import app
from inhouse.errors import AuditUnavailable
from inhouse.governance.audit.log import AuditLog
from inhouse.kb.answer import Answerer, GroundedAnswer, Grounding

LEAVE = "# Annual leave\n\nAfter 3 years of service an employee has 15 days of annual leave a year.\n"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    monkeypatch.setenv("INHOUSE_KB__MIN_SIMILARITY", "0")  # the fake embedder's similarities are not e5's
    monkeypatch.setenv("COLUMNS", "400")
    (tmp_path / "leave.md").write_text(LEAVE)
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

    async def complete(self: Answerer, g: Grounding, *, model: str, **sampling: Any) -> GroundedAnswer:
        assert g.covered and g.hits  # the real grounding: only the model is left out
        return GroundedAnswer("15 days [1].", [], g, model)

    monkeypatch.setattr(Answerer, "complete", complete)
    answered = cli("ask", "How many annual leave days after 3 years?", "--model", "m", "--key", secret)
    assert "15 days" in answered.output

    started, final = [r for r in records("--since", "1h") if r["action"] == "chat:create"]
    assert (started["outcome"], final["outcome"]) == ("started", "success")
    assert started["request_id"] == final["request_id"] and started["details"]["process"]
    assert {r["actor_key_id"] for r in (started, final)} == {key_of(secret)}
    assert final["documents"] == [doc] and final["label"] == "internal" and final["model"] == "m"
    assert [r["action"] for r in records("--document", doc)] == ["kb:write", "chat:create"]


def test_a_search_whose_record_cannot_be_written_shows_nothing(member: tuple[str, str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: AuditLog, **request: Any) -> None:
        raise AuditUnavailable("The audit log cannot be written.")

    monkeypatch.setattr(AuditLog, "record_request", refuse)
    result = CliRunner().invoke(app, ["search", "annual leave", "--collection", "hr", "--key", member[1]])
    assert result.exit_code == 5, result.output
    assert "Annual leave" not in result.output and "audit log cannot be written" in result.output


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
