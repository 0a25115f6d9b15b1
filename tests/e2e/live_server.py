"""A real server for end-to-end tests: ``bootstrap.build_services`` over FakeBackend engines, served by
uvicorn on a free loopback port in a thread. The wiring is the production one; only the model is fake.

A helper module, not a test module (pytest puts this directory on ``sys.path``: ``from live_server import``);
it lives under tests/ because only api/, web/ and cli/ may import uvicorn.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inhouse.services import Services

FAKE_MODEL = "fake-model"


@dataclass
class LiveServer:
    url: str
    admin_key: str  # the initial admin key, as `inhouse serve` creates it on an empty data directory
    services: Services
    app: Any  # the FastAPI app being served (tests enumerate its routes)


@contextmanager
def run_live_server(data_dir: Path, *, settings: dict[str, Any] | None = None,
                    load_engine: Callable[[Any], Any] | None = None,
                    send_buffer_bytes: int | None = None) -> Iterator[LiveServer]:
    """Start the whole app on 127.0.0.1:<free port>; stop it and close the services on exit.
    ``load_engine`` replaces the plain fake engine (e.g. one with a scripted reply); ``send_buffer_bytes`` shrinks
    the kernel's send buffer of accepted connections (a client that stops reading then blocks the server soon)."""
    import uvicorn

    from inhouse.api.app import build_app
    from inhouse.api.connections import http_protocol
    from inhouse.bootstrap import build_services
    from inhouse.config import Settings
    from inhouse.testing.fakes import build_fake_engine
    from inhouse.testing.gguf_writer import tiny_model_kv, tiny_model_tensors, write_gguf

    cfg = Settings(data_dir=data_dir, **{"models": {"default": FAKE_MODEL}, **(settings or {})})
    services = build_services(cfg, load_engine=load_engine or (lambda spec: build_fake_engine(spec.name)))
    try:
        services.registry.add(write_gguf(data_dir / "fake.gguf", tiny_model_kv(), tiny_model_tensors()),
                              FAKE_MODEL)
        admin_key = services.keys.ensure_admin_key()
        assert admin_key is not None, "the data directory must start empty"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this on Linux; without it h11's separate head/body writes meet the
        # client's delayed ACK and every request takes ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if send_buffer_bytes is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = build_app(services)
        server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1,
                                               http=http_protocol(cfg.server)))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        try:
            yield LiveServer(f"http://127.0.0.1:{port}", admin_key, services, app)
        finally:
            server.should_exit = True
            thread.join(5)
            sock.close()
    finally:
        services.close()


def long_reply_engine(spec: Any) -> Any:
    """An engine (``load_engine``) that answers "long" in ~3 s of 300 words: time for a fault to strike mid-stream."""
    from inhouse.engine.backends.fake import reply_script
    from inhouse.testing.fakes import build_fake_engine

    return build_fake_engine(FAKE_MODEL, n_ctx=8192, script=reply_script({"long": "word " * 300}), delay_s=0.01,
                             max_tokens_cap=4096)


def stream_long_reply(server: LiveServer) -> tuple[threading.Thread, list[str]]:
    """Start streaming the "long" answer in a thread; return once its first line has arrived. The list fills with
    the stream's lines; join the thread for the rest."""
    import httpx

    lines: list[str] = []

    def stream() -> None:
        with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=60,
                          headers={"Authorization": f"Bearer {server.admin_key}"},
                          json={"model": FAKE_MODEL, "stream": True, "max_tokens": 2000,
                                "messages": [{"role": "user", "content": "long"}]}) as r:
            lines.extend(r.iter_lines())

    thread = threading.Thread(target=stream)
    thread.start()
    deadline = time.monotonic() + 30
    while not lines and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    return thread, lines
