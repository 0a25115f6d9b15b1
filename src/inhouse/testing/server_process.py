"""``inhouse serve`` as a real child process on a free loopback port, for crash, load and soak runs.

Only 127.0.0.1; the caller owns the data directory. ``kill()`` is SIGKILL (a crash), ``stop()`` SIGTERM with a
SIGKILL fallback. ``sample()`` reads the process's RSS, open files and threads from /proc.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from inhouse.testing.crash import inhouse_argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_admin_key(data_dir: Path, name: str = "tests") -> str:
    env = {**os.environ, "INHOUSE_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    made = subprocess.run(inhouse_argv("keys", "create", "--name", name, "--role", "admin"), env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    key = made.stdout.strip().splitlines()[-1].strip()
    if not key.startswith("ih_"):
        raise RuntimeError(f"no key in the output of `inhouse keys create`: {made.stdout!r}")
    return key


@dataclass
class ProcSample:
    t_s: float
    rss_mb: float
    open_files: int
    threads: int
    processes: int = 1  # the server and its engine processes counted in the figures


def sample_process(pid: int, t_s: float = 0.0) -> ProcSample:
    """RSS (MB), open file descriptors and threads of ``pid`` and its descendants (the engines' child processes,
    which hold the models), from /proc (Linux). A descendant that ends while it is read is left out."""
    from inhouse.hardware.cpu import descendant_pids

    rss_kb = threads = fds = counted = 0
    for n, proc in enumerate([pid, *descendant_pids(pid)]):
        try:
            status = Path(f"/proc/{proc}/status").read_text()
            proc_fds = len(os.listdir(f"/proc/{proc}/fd"))
        except OSError:
            if n == 0:
                raise
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss_kb += int(line.split()[1])
            elif line.startswith("Threads:"):
                threads += int(line.split()[1])
        fds += proc_fds
        counted += 1
    return ProcSample(t_s, rss_kb / 1024, fds, threads, counted)


@dataclass
class ServerProcess:
    data_dir: Path
    model: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, ready_timeout_s: float = 180.0) -> ServerProcess:
        self.port = free_port()
        env = {**os.environ, "INHOUSE_DATA_DIR": str(self.data_dir), **self.env}
        self.log_path = self.data_dir / f"serve-{self.port}.log"
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                inhouse_argv("serve", "--host", "127.0.0.1", "--port", str(self.port), "--model", self.model,
                             "--log-level", "warning"), env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"inhouse serve exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"inhouse serve did not become ready: {self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path and self.log_path.exists() else ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def sample(self, t_s: float = 0.0) -> ProcSample:
        return sample_process(self.pid, t_s)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed, no shutdown code."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
