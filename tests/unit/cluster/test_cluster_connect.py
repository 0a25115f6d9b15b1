"""Connecting a driver (``cluster status``, ``serve --cluster``): a head that does not answer fails within seconds,
not after Ray's 14 minutes of retries; a token file that cannot be read, or a token the cluster refuses, is one clear
line and its exit code, never Ray's traceback; node.json keeps the token file's absolute path. No Ray node here."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app
from inhouse.cluster import nodes
from inhouse.errors import AuthenticationFailed

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.2 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def keep_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_USAGE_STATS_ENABLED"):  # connect() sets them
        monkeypatch.setenv(name, os.environ.get(name, ""))


def status(tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["cluster", "status", "--data-dir", str(tmp_path), *args])


def test_an_unreachable_head_fails_within_seconds(tmp_path: Path, closed_port: int) -> None:
    token = tmp_path / "token"
    token.write_text("x")
    t0 = time.monotonic()
    result = status(tmp_path, "--address", f"127.0.0.2:{closed_port}", "--token-file", str(token))
    assert time.monotonic() - t0 < nodes.REACH_TIMEOUT_S + 5
    assert result.exit_code == 5, result.output
    assert "Cannot reach the cluster" in result.output and result.exception.__class__.__name__ == "SystemExit"


def test_a_missing_token_file_is_named_with_exit_3(tmp_path: Path, listening: int) -> None:
    result = status(tmp_path, "--address", f"127.0.0.2:{listening}")  # no token in this data dir
    assert result.exit_code == 3, result.output
    assert "auth_token" in result.output and "Traceback" not in result.output


def test_a_refused_token_is_authentication_failed(tmp_path: Path, listening: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import ray
    from ray.exceptions import AuthenticationError

    def refuse(**kwargs: Any) -> None:
        raise AuthenticationError("RAY_AUTH_TOKEN_PATH is set but file cannot be opened")

    monkeypatch.setattr(ray, "init", refuse)
    token = tmp_path / "token"
    token.write_text("x")
    with pytest.raises(AuthenticationFailed, match="refused"):
        nodes.connect(f"127.0.0.2:{listening}", token_file=token)
    result = status(tmp_path, "--address", f"127.0.0.2:{listening}", "--token-file", str(token))
    assert result.exit_code == 4, result.output


def test_node_json_keeps_the_token_file_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    nodes.cluster_dir(tmp_path).mkdir()
    record = nodes._record(tmp_path, os.getpid(), head=False, address="127.0.0.2:6379", port=6379,
                           node_ip="127.0.0.1", token_file=Path("auth_token"), log_file="x")
    assert record.token_file == str(tmp_path / "auth_token")
    assert nodes.read_record(tmp_path) == record
