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
                    load_engine: Callable[[Any], Any] | None = None) -> Iterator[LiveServer]:
    """Start the whole app on 127.0.0.1:<free port>; stop it and close the services on exit.
    ``load_engine`` replaces the plain fake engine (e.g. one with a scripted reply)."""
    import uvicorn

    from inhouse.api.app import build_app
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
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = build_app(services)
        server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1))
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
