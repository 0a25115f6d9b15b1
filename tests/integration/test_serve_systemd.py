"""`inhouse serve` under systemd's notify protocol, with a real datagram socket standing in for systemd: the status
while the model loads, READY=1 once it serves, WATCHDOG=1 from the event loop at the asked pace, STOPPING=1 on
SIGTERM. (The unit itself: tests/unit/deploy/test_systemd.py and tests/e2e/test_service_cli.py.)"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from pathlib import Path

import httpx
import pytest

from inhouse.testing.server_process import ServerProcess

pytestmark = [pytest.mark.integration]


def test_serve_tells_systemd_it_is_ready_alive_and_stopping(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.settimeout(0.2)
    messages: list[tuple[float, str]] = []

    def drain(for_s: float) -> None:
        end = time.monotonic() + for_s
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                messages.append((time.monotonic(), listener.recv(4096).decode()))

    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "900000"}  # WATCHDOG=1 every 0.3 s
    server = ServerProcess(tmp_path / "data", "smollm2-135m", env=env)
    (tmp_path / "data").mkdir()
    try:
        server.start()  # returns once /ready answers 200
        drain(1.5)
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200
    finally:
        stopping_at = time.monotonic()
        server.stop()
    drain(1.0)
    listener.close()
    texts = [m for _, m in messages]
    assert any(t.startswith("STATUS=loading smollm2-135m") for t in texts), texts
    ready = [i for i, t in enumerate(texts) if t.startswith("READY=1")]
    assert len(ready) == 1 and "STATUS=serving smollm2-135m" in texts[ready[0]], texts
    # At the asked pace while it serves; once stopping, systemd's stop timeout applies instead (it stops the watchdog
    # when the unit leaves the running state), and the shutdown's last steps may keep the loop a second.
    pings = [at for at, t in messages if t == "WATCHDOG=1" and at < stopping_at]
    assert len(pings) >= 3 and max(b - a for a, b in itertools.pairwise(pings)) < 0.9, texts
    assert texts[-1].startswith("STOPPING=1") and ready[0] < len(texts) - 1, texts
