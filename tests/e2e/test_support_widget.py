"""The embeddable support widget in a real headless Chromium (Debian's ``chromium`` through Playwright; never
``playwright install``): a page on another origin embeds ``<script src=…/widget.js data-key=…>`` with a scoped key,
completes one exchange (answer with a citation), and the same page served from an origin outside the CORS
allow-list gets nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from browser import BROWSER_MARKS, chromium
from live_server import LiveServer, run_live_server

from inhouse.testing.fakes import build_fake_engine
from inhouse.types import Actor

pytestmark = BROWSER_MARKS
ANSWER = "Standard delivery takes 3 to 5 working days [1]. <img src=x onerror=alert(1)>"
FAQ = b"# Customer FAQ\n\n## Delivery\n\nStandard delivery within mainland China takes 3 to 5 working days.\n"


@dataclass
class Shop:
    server: LiveServer
    page_port: int
    scoped_key: str


def page_html(server_url: str, key: str) -> bytes:
    return (f"<!doctype html><html><head><title>Shop</title></head><body><h1>Our shop</h1>"
            f'<script src="{server_url}/widget.js" data-key="{key}" data-collections="support" '
            f'data-title="Help"></script></body></html>').encode()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    # The shop's page is served by a second server on another port: a different origin.
    holder: dict[str, bytes] = {}

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = holder.get("html", b"")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    settings = {"kb": {"embedder": "fake", "min_similarity": 0},
                "apps": {"model": "fake-model", "widget_origins": [f"http://127.0.0.1:{port}"]}}
    try:
        with run_live_server(tmp_path_factory.mktemp("widget") / "data", settings=settings,
                             load_engine=lambda spec: build_fake_engine(spec.name, n_ctx=8192, script={
                                 "Context passages:": ANSWER})) as server:
            s = server.services
            record, scoped = s.keys.create_key("shop widget", scopes=["apps:support"])
            assert s.kb is not None
            root = Actor("key_setup", "setup", role="admin")
            s.kb.create_collection(root, "support", keys=[record.id])
            s.kb.add_document(root, "support", FAQ, "customer-faq.md", label="public")
            holder["html"] = page_html(server.url, scoped)
            yield Shop(server, port, scoped)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def test_widget_completes_one_exchange_cross_origin(shop: Shop, browser: Any) -> None:
    page = browser.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(f"http://127.0.0.1:{shop.page_port}/")
        page.click("#ih-support .ih-toggle")
        page.fill("#ih-support input", "How long does delivery take?")
        page.click("#ih-support button[type=submit]")
        reply = page.wait_for_selector("#ih-support [data-role=reply]", timeout=15_000)
        text = reply.text_content() or ""
        assert "3 to 5 working days" in text and "[1] Customer FAQ" in text
        # The model's markup stayed text: no element was created from it and no script ran.
        assert page.query_selector("#ih-support img") is None and dialogs == [] and errors == []
        assert "<img src=x" in text
    finally:
        page.close()
    sessions = shop.server.services.db.query("SELECT owner, messages FROM support_sessions")
    assert len(sessions) == 1 and sessions[0]["owner"].startswith("key:")


def test_an_origin_outside_the_allow_list_gets_nothing(shop: Shop, browser: Any) -> None:
    page = browser.new_page()
    try:
        page.goto(f"http://localhost:{shop.page_port}/")  # same page, another origin string: not allowed
        page.click("#ih-support .ih-toggle")
        page.fill("#ih-support input", "How long does delivery take?")
        page.click("#ih-support button[type=submit]")
        err = page.wait_for_selector("#ih-support [data-role=error]", timeout=15_000)
        assert "Error" in (err.text_content() or "")
        assert page.query_selector("#ih-support [data-role=reply]") is None
    finally:
        page.close()
