"""`inhouse run`, `inhouse chat` and `inhouse status` with `--url`: no server there, a URL without http://, https
spoken to a plain HTTP server. One red line in the same words for all three, exit 5 (unavailable) or 2 (bad URL),
never httpx's traceback."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app

COMMANDS = [["run", "hi"], ["chat"], ["status"]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def plain_http() -> Iterator[int]:
    """A plain HTTP server (no TLS) on a free port."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def one_error(command: list[str], url: str, tmp_path: Path, code: int) -> str:
    result = CliRunner().invoke(app, [*command, "--url", url, "--api-key", "x", "--data-dir", str(tmp_path)],
                                input="hello\n", env={"COLUMNS": "400"})
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # nothing escaped
    # (chat's prompt "you> " precedes it here: the typed line is not echoed)
    errors = [line.removeprefix("you> ") for line in result.output.splitlines() if "error:" in line]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_no_server_at_the_url_is_unavailable(command: list[str], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert one_error(command, url, tmp_path, 5).startswith(f"error: Cannot reach {url}: ")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("url", ["127.0.0.1:8000", "http://[::1"])
def test_a_url_that_is_no_servers_is_bad_input(command: list[str], url: str, tmp_path: Path) -> None:
    assert one_error(command, url, tmp_path, 2).startswith(f"error: --url {url!r} is not a server's URL")


@pytest.mark.parametrize("command", COMMANDS)
def test_https_to_a_plain_http_server_is_unavailable(command: list[str], plain_http: int, tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{plain_http}"
    line = one_error(command, url, tmp_path, 5)
    assert line.startswith(f"error: Cannot reach {url}: ") and "SSL" in line, line
