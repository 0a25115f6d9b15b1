"""`inhouse collections create / update / markings --apply / delete` change the knowledge index from the command line
and are in the audit log like the same changes over HTTP (and like `inhouse ingest`): a started record, then a final
one by ``key_cli`` naming the documents changed, so `inhouse audit export --document doc_…` finds who relabelled or
deleted a document. Access lists name existing groups only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app

BOARD = "# Board pay memo: CONFIDENTIAL\n\nThe board approved salary band changes for grade 7 and 8 next year.\n"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    (tmp_path / "board.md").write_text(BOARD)
    return tmp_path


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def records(*args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in cli("audit", "export", *args).output.splitlines()]


def test_collection_commands_are_recorded_naming_the_documents_they_changed(
        env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("groups", "add", "board")
    cli("collections", "create", "cli", "--group", "board", "--description", "cli made")
    monkeypatch.setenv("INHOUSE_KB__MARKINGS", "false")  # ingested before markings were read: stays internal
    cli("ingest", str(env / "board.md"), "--collection", "cli", "--label", "internal")
    monkeypatch.delenv("INHOUSE_KB__MARKINGS")
    (doc,) = [r for r in records() if r["action"] == "kb:write" and r["outcome"] == "success"][-1]["documents"]
    cli("collections", "update", "cli", "--description", "changed by cli")
    cli("collections", "markings", "cli")  # a listing changes nothing: not recorded
    cli("collections", "markings", "cli", "--apply")
    cli("collections", "delete", "cli")

    manage = [r for r in records() if r["action"] == "kb:manage"]
    assert [(r["resource"].split(" col_")[0], r["outcome"]) for r in manage] == [
        (f"inhouse collections {what}", outcome) for what in ("create cli", "update", "markings --apply", "delete")
        for outcome in ("started", "success")]
    assert all(r["actor_key_id"] == "key_cli" and r["details"]["via"] == "cli" for r in manage)
    assert all(a["request_id"] == b["request_id"] for a, b in zip(manage[::2], manage[1::2], strict=True))
    created, updated, relabelled, deleted = manage[1::2]
    assert created["details"]["access_after"] == {"groups": ["board"], "keys": []}
    assert updated["details"]["changes"] == {"description": {"before": "cli made", "after": "changed by cli"}}
    assert relabelled["documents"] == [doc] and relabelled["details"]["relabelled"] == 1
    assert relabelled["details"]["raised"] == [{"id": doc, "label": "confidential", "label_before": "internal",
                                                "derived_from": None}]
    assert deleted["documents"] == [doc] and deleted["details"]["removed"] == 1
    # Who added, relabelled and deleted it, found by the document.
    named = [(r["action"], r["resource"].split(" col_")[0]) for r in records("--document", doc)
             if r["outcome"] == "success"]
    assert named == [("kb:write", "inhouse ingest"), ("kb:manage", "inhouse collections markings --apply"),
                     ("kb:manage", "inhouse collections delete")]


def test_an_access_list_naming_no_group_is_refused(env: Path) -> None:
    cli("groups", "add", "board")
    made = CliRunner().invoke(app, ["collections", "create", "cli", "--group", "board", "--group", "typo1"])
    assert made.exit_code == 2 and "No group 'typo1'" in made.output, made.output
    ingest = CliRunner().invoke(app, ["ingest", str(env / "board.md"), "--collection", "cli", "--group", "typo1"])
    assert ingest.exit_code == 2 and "No group 'typo1'" in ingest.output, ingest.output
    assert "cli" not in cli("collections", "list").output
    cli("collections", "create", "cli", "--group", "BOARD")
    assert "board" in cli("collections", "list").output
