"""`inhouse users|groups|keys` against a real data directory: one line per error, non-zero exits."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app
from inhouse.governance.directory import UserDirectory
from inhouse.governance.events import NullAuditSink
from inhouse.governance.identity import KeyStore
from inhouse.store.sqlite.database import Database
from inhouse.store.sqlite.governance import SqliteGovernanceStore


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    monkeypatch.setenv("INHOUSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("INHOUSE_KB__EMBEDDER", "fake")
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.output

    return invoke


def test_users_groups_and_keys(run: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    assert run("users", "add", "alice", "--display-name", "Alice Li")[0] == 0
    assert run("users", "add", "bob", "--role", "admin")[0] == 0
    assert run("groups", "add", "finance")[0] == 0
    assert run("groups", "add-member", "finance", "alice")[0] == 0
    code, out = run("keys", "create", "--name", "laptop", "--user", "alice", "--rpm", "5")
    assert code == 0 and "ih_" in out
    secret = next(w for w in out.split() if w.startswith("ih_") and w.count("_") >= 2)
    assert run("users", "set-role", "alice", "admin")[0] == 0
    assert run("users", "disable", "bob")[0] == 0
    code, out = run("users", "list")
    assert code == 0 and "alice" in out and "finance" in out
    code, out = run("groups", "list")
    assert code == 0 and "alice" in out

    db = Database(tmp_path / "inhouse.db")
    try:
        store = SqliteGovernanceStore(db)
        keys, directory = KeyStore(store), UserDirectory(store, audit=NullAuditSink())
        actor = keys.authenticate(secret)
        # The key was created as a member key (alice's role then); promoting alice does not widen it.
        assert (actor.role, actor.groups) == ("member", frozenset({"finance"}))
        assert directory.find_user("bob").disabled
        assert keys.get(actor.key_id).rpm_limit == 5
        assert run("groups", "remove-member", "finance", "alice")[0] == 0
        assert keys.authenticate(secret).groups == frozenset()
        assert run("users", "remove", "alice", "--yes")[0] == 0
        assert keys.get(actor.key_id).revoked_at is not None
    finally:
        db.close()


def test_errors_exit_non_zero_with_one_line(run: Callable[..., tuple[int, str]]) -> None:
    run("users", "add", "alice")
    for args, code in [(("users", "add", "alice"), 1), (("users", "add", "bad name"), 2),
                       (("users", "set-role", "nobody", "admin"), 3), (("groups", "remove", "nope"), 3),
                       (("keys", "create", "--name", "k", "--user", "ghost"), 3),
                       (("groups", "remove-member", "nope", "alice"), 3)]:
        got, out = run(*args)
        assert got == code, (args, got, out)
        assert out.startswith("error:") and "Traceback" not in out


def test_keys_list_shows_when_each_key_was_last_used_and_its_limits(
        run: Callable[..., tuple[int, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # one row a line
    code, out = run("keys", "create", "--name", "used", "--rpm", "5", "--tokens-per-day", "0")
    secret = next(w for w in out.split() if w.startswith("ih_") and w.count("_") >= 2)
    assert run("keys", "create", "--name", "idle")[0] == 0
    assert run("search", "anything", "--key", secret)[0] == 0  # a use of the key: last_used_at is written

    code, out = run("keys", "list")
    assert code == 0 and "last used" in out and "limits" in out, out
    used = next(line for line in out.splitlines() if "│ used │" in line)
    idle = next(line for line in out.splitlines() if "│ idle │" in line)
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d", used)) == 2, used  # created, and last used
    assert "5 rpm, unlimited tokens/day" in used, used
    assert "never" in idle and "default" in idle, idle
