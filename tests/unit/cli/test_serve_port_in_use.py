"""`inhouse serve` on a port that is taken, or an address that is not this machine's: one red line and exit 5 (busy)
or 2 (bad input) before the hardware probe, the services or the model load, and no "Serving … at" line. (Before,
the model loaded, "Serving" was printed, then uvicorn's `[Errno 98]` and its exit code 3, which means "not found".)"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from inhouse import bootstrap
from inhouse.cli.main import app
from inhouse.cli.serve import bind_port


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.fixture(autouse=True)
def no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    def probed(*args: object, **kwargs: object) -> None:
        raise AssertionError("the hardware was probed (the model would load next) before the port was checked")

    monkeypatch.setattr(bootstrap, "build_probe", probed)


def serve(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "data"), *args], env={"COLUMNS": "400"})


def one_error(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Serving" not in result.output and "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    return line


def test_a_port_in_use_fails_before_anything_loads(taken_port: int, tmp_path: Path) -> None:
    line = one_error(serve(tmp_path, "--port", str(taken_port)), 5)
    assert f"Port {taken_port} on 127.0.0.1 is in use" in line


def test_an_address_not_of_this_machine_is_bad_input(tmp_path: Path) -> None:
    line = one_error(serve(tmp_path, "--host", "192.0.2.1", "--port", "18790"), 2)  # TEST-NET-1: nobody's
    assert "Cannot listen on 192.0.2.1:18790" in line


def test_the_bound_socket_is_not_listening_yet() -> None:
    sock = bind_port("127.0.0.1", 0)
    try:
        with socket.socket() as client:  # bound, not listening: a client is refused until uvicorn serves it
            assert client.connect_ex(sock.getsockname()) != 0
    finally:
        sock.close()
