"""The HTTP API end to end: a real uvicorn server on 127.0.0.1 over real engines on the FakeBackend,
driven with httpx and the official ``openai`` client."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from inhouse.api.app import build_app
from inhouse.config import Settings
from inhouse.engine.backends.fake import EOS_ID, ScriptInput, encode_text
from inhouse.engine.engine import Engine
from inhouse.services import Services
from inhouse.testing.fakes import build_fake_engine
from inhouse.testing.services import build_fake_services

MODEL = "fake-model"
REPLY = "Hello from the fake backend."
MSG: list[Any] = [{"role": "user", "content": "x"}]


def endless(inp: ScriptInput) -> int:
    """A fake model that never stops on its own (the request's max_tokens ends it)."""
    return encode_text("ab")[len(inp.generated) % 2] if len(inp.generated) < 100_000 else EOS_ID


TEMPLATED = "templated-model"
# A model whose GGUF carries its own chat template, writing BOS itself: the prompt must get one BOS only.
BOS_TEMPLATE = "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"


@dataclass
class Server:
    url: str
    key: str
    engine: Engine
    settings: Settings

    def client(self, timeout_s: float = 10.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0, timeout=10)

    def wait_for(self, cond: Callable[[], bool], timeout_s: float = 3.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.01)
        return cond()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    running: list[tuple[uvicorn.Server, threading.Thread, Services]] = []

    def start(*, engine: dict[str, Any] | None = None, fake: dict[str, Any] | None = None,
              server: dict[str, Any] | None = None) -> Server:
        # The production wiring; the models are two tiny GGUF files whose engines run on the FakeBackend.
        services = build_fake_services(
            tmp_path / f"d{len(running)}", settings={"server": server or {}, "engine": engine or {}},
            load_engine=lambda spec: build_fake_engine(spec.name, **(engine or {}), **(fake or {})),
            models={MODEL: None, TEMPLATED: BOS_TEMPLATE})
        settings = services.settings
        secret = services.keys.ensure_admin_key()
        assert secret is not None
        fake_engine = services.registry.get_engine(MODEL)  # preloaded, like `inhouse serve` does
        assert isinstance(fake_engine, Engine)
        app = build_app(services)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
        srv = uvicorn.Server(config)
        thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        running.append((srv, thread, services))
        deadline = time.monotonic() + 5
        while not srv.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return Server(f"http://127.0.0.1:{port}", secret, fake_engine, settings)

    yield start
    for srv, thread, services in running:
        srv.should_exit = True
        thread.join(5)
        services.close()


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    return start_server()


def assert_error_shape(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}
    return body["error"]


def test_openai_client_chat(server: Server) -> None:
    client = server.openai()
    out = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert out.choices[0].message.content == REPLY
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.completion_tokens == len(REPLY) + 1

    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                            stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == REPLY and finish == "stop"
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    comp = client.completions.create(model=MODEL, prompt="Say hi", max_tokens=5)
    assert comp.choices[0].text == REPLY[:5] and comp.choices[0].finish_reason == "length"

    models = client.models.list()
    assert sorted(m.id for m in models.data) == sorted([MODEL, TEMPLATED, "fake-trigram", "fake-trigram:query"])
    assert client.models.retrieve(MODEL).id == MODEL
    entry = next(m for m in models.data if m.id == MODEL).model_dump()
    assert entry["loaded"] is True and entry["present"] is True and entry["quantization"]


def test_auth(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as c:
        err = assert_error_shape(c.get("/v1/models"), 401)
        assert err["type"] == "authentication_error"
        assert_error_shape(c.get("/v1/models", headers={"Authorization": "Bearer ih_nope"}), 401)
        assert c.get("/health").status_code == 200
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-wrong", max_retries=0, timeout=5)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_unknown_model_lists_available(server: Server) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        server.openai().chat.completions.create(model="gpt-4", messages=MSG)
    assert MODEL in str(info.value)


@pytest.mark.parametrize(("what", "body", "status"), [
    ("empty messages", {"model": MODEL, "messages": []}, 400),
    ("negative temperature", {"model": MODEL, "messages": MSG, "temperature": -1}, 400),
    ("NaN temperature", '{"model": "fake-model", "messages": MSG, '
                        '"temperature": NaN}', 400),
    ("max_tokens far above the cap", {"model": MODEL, "messages": MSG,
                                      "max_tokens": 10**12}, 400),
    ("10,000 stop strings", {"model": MODEL, "messages": MSG,
                             "stop": ["s"] * 10_000}, 400),
    ("2 MB body", {"model": MODEL, "messages": [{"role": "user", "content": "x" * 2_000_000}]}, 413),
    ("malformed JSON", '{"model": ', 400),
])
def test_bad_requests_are_refused_in_shape(server: Server, what: str, body: Any, status: int) -> None:
    with server.client() as c:
        content = body if isinstance(body, str) else json.dumps(body)
        resp = c.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
        assert_error_shape(resp, status)
        assert c.get("/health").status_code == 200
        # and still serves real work
        ok = c.post("/v1/chat/completions", json={"model": MODEL, "messages": MSG})
        assert ok.status_code == 200


def test_queue_overflow_is_429_with_retry_after(start_server: Callable[..., Server]) -> None:
    server = start_server(engine={"max_running": 1, "n_cache_slots": 0, "max_waiting": 0},
                          fake={"script": endless, "delay_s": 0.01})
    body = {"model": MODEL, "messages": MSG, "max_tokens": 2000, "stream": True}
    with server.client() as c1, c1.stream("POST", "/v1/chat/completions", json=body) as first:
        assert first.status_code == 200
        lines = first.iter_lines()
        next(lines)  # the stream is running and holds the only slot
        with server.client() as c2:
            resp = c2.post("/v1/chat/completions", json={**body, "stream": False})
            err = assert_error_shape(resp, 429)
            assert err["type"] == "rate_limit_error"
            assert resp.headers["retry-after"] == "2"
            # Streaming requests get a real status too, not a 200 with an error inside.
            assert_error_shape(c2.post("/v1/chat/completions", json=body), 429)
    assert server.engine.stats().rejected_queue_full == 2


def test_client_disconnect_mid_stream_aborts(start_server: Callable[..., Server]) -> None:
    server = start_server(fake={"script": endless, "delay_s": 0.01})
    body = {"model": MODEL, "messages": MSG, "max_tokens": 3000, "stream": True}
    with server.client() as c, c.stream("POST", "/v1/chat/completions", json=body) as resp:
        lines = resp.iter_lines()
        for _ in range(5):
            next(lines)
    # The connection is closed now; the engine must drop the request within a step or so.
    assert server.wait_for(lambda: server.engine.stats().aborted == 1), server.engine.stats()
    stats = server.engine.stats()
    assert stats.running == 0 and stats.generated_tokens < 3000
    with server.client() as c:
        assert 'inhouse_requests_aborted_total{model="fake-model"} 1.0' in c.get("/metrics").text


def test_client_disconnect_non_streaming_aborts(start_server: Callable[..., Server]) -> None:
    server = start_server(fake={"script": endless, "delay_s": 0.01})
    body = {"model": MODEL, "messages": MSG, "max_tokens": 3000}
    with server.client(timeout_s=0.3) as c, pytest.raises(httpx.ReadTimeout):
        c.post("/v1/chat/completions", json=body)
    assert server.wait_for(lambda: server.engine.stats().aborted == 1), server.engine.stats()
    assert server.engine.stats().generated_tokens < 3000


def test_concurrent_streams_share_batches(start_server: Callable[..., Server]) -> None:
    server = start_server(fake={"delay_s": 0.005})
    results: list[str] = []

    def one() -> None:
        try:
            out = server.openai().chat.completions.create(model=MODEL, messages=MSG)
            results.append(out.choices[0].message.content or "")
        except openai.APIError as exc:  # reported by the assertion below, not as a thread crash
            results.append(f"error: {exc}")

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [REPLY] * 4
    with server.client() as c:
        text = c.get("/metrics").text
    assert "inhouse_time_to_first_token_seconds_count" in text
    multi = [ln for ln in text.splitlines() if ln.startswith("inhouse_engine_multi_sequence_steps_total{")]
    assert multi and float(multi[0].rsplit(" ", 1)[1]) > 0


def test_model_template_from_gguf_and_lazy_load(server: Server) -> None:
    with server.client() as c:
        listed = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
        assert listed[TEMPLATED]["loaded"] is False
        out = c.post("/v1/chat/completions", json={"model": TEMPLATED, "messages": MSG}).json()
        assert out["choices"][0]["message"]["content"] == REPLY
        assert out["usage"]["prompt_tokens"] == 2  # "<s>" (one BOS, from the template) + "x"
        listed = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
        assert listed[TEMPLATED]["loaded"] is True
        assert c.get("/ready").json()["status"] == "ready"
