"""Start and stop the servers under test as subprocesses on free loopback ports.

``running_server(spec)`` is a context manager: the process is started in its own session (so the whole
process group can be signalled by its id), readiness is polled on ``GET /v1/models``, and the group is
always terminated in ``finally`` — SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class ServerStartError(RuntimeError):
    """The server exited or never became ready; the message carries the tail of its log."""


@dataclass
class ServerSpec:
    label: str  # "inhouse" or "llama_cpp.server"
    argv: list[str]  # without the port; ``{port}`` in an element is replaced
    model: str  # the `model` field sent in requests
    api_key: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 600.0


@dataclass
class RunningServer:
    spec: ServerSpec
    port: int
    pid: int
    log_path: Path
    startup_s: float

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SRC_DIR = Path(__file__).resolve().parent.parent / "src"


def inhouse_env() -> dict[str, str]:
    """Environment additions for running ``inhouse`` from a checkout that is not pip-installed."""
    import importlib.util

    if importlib.util.find_spec("inhouse") is not None or not (SRC_DIR / "inhouse").is_dir():
        return {}
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(SRC_DIR), os.environ.get("PYTHONPATH", "")) if p)}


def inhouse_spec(model: str, data_dir: Path, *, extra_env: dict[str, str] | None = None) -> ServerSpec:
    argv = [
        sys.executable,
        "-m",
        "inhouse.cli.main",
        "serve",
        "--model",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--data-dir",
        str(data_dir),
        "--allow-unauthenticated",
        "--log-level",
        "warning",
    ]
    return ServerSpec(label="inhouse", argv=argv, model=model, env={**inhouse_env(), **(extra_env or {})})


def llama_cpp_server_spec(model_path: Path, *, n_threads: int = 2, n_ctx: int = 8192) -> ServerSpec:
    argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path),
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--n_threads",
        str(n_threads),
        "--n_threads_batch",
        str(n_threads),
        "--n_ctx",
        str(n_ctx),
        "--interrupt_requests",
        "False",
    ]
    return ServerSpec(label="llama_cpp.server", argv=argv, model=model_path.stem)


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    # The child leads its own session, so its pid is its process group id: this reaches only what we started.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def running_server(spec: ServerSpec, log_dir: Path) -> Iterator[RunningServer]:
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in spec.argv]
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec.label.replace('.', '_')}-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
    t0 = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            server = RunningServer(spec=spec, port=port, pid=proc.pid, log_path=log_path, startup_s=0.0)
            _wait_ready(proc, server, spec.ready_timeout_s)
            server.startup_s = time.perf_counter() - t0
            yield server
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], server: RunningServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    headers = {"Authorization": f"Bearer {server.spec.api_key}"} if server.spec.api_key else {}
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerStartError(
                    f"{server.spec.label} exited with code {proc.returncode} before it was ready:\n"
                    f"{_tail(server.log_path)}"
                )
            try:
                if client.get(f"{server.base_url}/v1/models", headers=headers).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    raise ServerStartError(f"{server.spec.label} not ready after {timeout_s:.0f} s:\n{_tail(server.log_path)}")


def process_cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process and its threads (Linux /proc), 0.0 if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    # After the ")" the fields start at index 2 of proc(5): utime is field 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / ticks


def idle_cpu_pct(pid: int, window_s: float = 2.0) -> float:
    """CPU % an idle server burns; a busy-polling step loop would steal cycles from the baseline."""
    a = process_cpu_s(pid)
    time.sleep(window_s)
    return 100.0 * (process_cpu_s(pid) - a) / window_s
