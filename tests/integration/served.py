"""``inhouse serve`` as a subprocess for integration tests (a helper module: pytest puts this directory on
``sys.path``, so tests ``from served import serve``)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest

BIN = Path(sys.executable).parent / "inhouse"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(env: dict[str, str], model: str, *, ready_s: float = 120) -> Iterator[str]:
    """Start ``inhouse serve --model model`` on a free loopback port; yield its URL once /ready; stop it after."""
    with serving(env, model, ready_s=ready_s) as (_, url):
        yield url


@contextmanager
def serving(env: dict[str, str], model: str, *, ready_s: float = 120, log: IO[str] | None = None
            ) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``serve`` that also yields the server process; its output goes to ``log`` (a file: a crash prints stacks
    that a pipe nobody reads would block on) or to a pipe read when the server dies before it is ready."""
    port = free_port()
    out: IO[str] | int = log if log is not None else subprocess.PIPE
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(port), "--model", model], env=env,
                            stdout=out, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                died = proc.stdout.read() if proc.stdout else Path(getattr(log, "name", "")).read_text()
                pytest.fail(f"server died before it was ready:\n{died}")
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("server did not become ready")
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
