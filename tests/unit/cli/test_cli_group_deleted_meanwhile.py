"""`inhouse collections create --group G` and `inhouse ingest --group G` check G, then write lists naming it: a
deletion of G over HTTP in between (the directory and the index may be two databases) must not leave the name on
those lists, or a group created later under it would read them. The groups are checked again once the lists are
written (``UserDirectory.recheck_groups``), as the HTTP routes do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from inhouse.cli.common import services_for
from inhouse.cli.main import app
from inhouse.governance.directory import UserDirectory


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    monkeypatch.setenv("COLUMNS", "400")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "plan.md").write_text("# Plan\n\nThe acquisition target is ACME.\n")
    return tmp_path


def cli(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def delete_after_checking(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The group is deleted (as an admin would over HTTP) right after the command has checked it."""
    resolve = UserDirectory.resolve_groups

    def resolved_then_deleted(self: UserDirectory, names: Any, **kwargs: Any) -> Any:
        found = resolve(self, names, **kwargs)
        for g in found:
            if g.name == name:
                self.delete_group(g.id)
        return found

    monkeypatch.setattr(UserDirectory, "resolve_groups", resolved_then_deleted)


def test_a_new_collection_does_not_keep_a_group_deleted_meanwhile(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("groups", "add", "deals")
    cli("groups", "add", "staff")
    with monkeypatch.context() as m:
        delete_after_checking(m, "deals")
        cli("collections", "create", "mna", "--group", "deals", "--group", "staff")
    listed = cli("collections", "list").output
    assert "staff" in listed and "deals" not in listed


def test_ingested_documents_do_not_keep_a_group_deleted_meanwhile(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("groups", "add", "deals")
    cli("groups", "add", "staff")
    cli("collections", "create", "mna", "--group", "staff", "--group", "deals")
    with monkeypatch.context() as m:
        delete_after_checking(m, "deals")
        cli("ingest", str(env / "docs"), "--collection", "mna", "--group", "deals", "--group", "staff")
    cli("groups", "add", "deals")  # a new group of the old name starts with nothing
    assert "deals" not in cli("collections", "list").output
    with services_for(None) as services:
        col = services.kb.store.get_collection("mna")
        (doc,) = services.kb.store.list_documents(col.id, limit=10)
    assert doc.acl is not None and doc.acl.groups == frozenset({"staff"}), doc.acl
