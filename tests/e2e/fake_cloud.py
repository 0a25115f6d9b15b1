"""A stand-in for a cloud provider: an OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1 (a real HTTP server)
that records every request byte for byte, so a test can check what would have left the machine."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*_\d+>")


@dataclass
class FakeCloud:
    """An OpenAI-compatible /chat/completions on 127.0.0.1 that records every request byte for byte."""

    url: str
    received: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def calls(self) -> int:
        with self.lock:
            return len(self.received)

    def all_bytes(self) -> bytes:
        with self.lock:
            return b"\n".join(self.received)


STREAM_USAGE = {"prompt_tokens": 11, "completion_tokens": 13, "total_tokens": 24}  # a streamed answer's usage chunk


def answer_for(body: dict[str, Any]) -> str:
    """Echo the placeholders the provider saw (in order, once each), so restoring can be checked."""
    seen: list[str] = []
    for m in body.get("messages", []):
        for p in PLACEHOLDER.findall(json.dumps(m, ensure_ascii=False)):
            if p not in seen:
                seen.append(p)
    return "Noted: " + (" ".join(seen) if seen else "nothing") + "."


@contextmanager
def run_fake_cloud(key: str) -> Iterator[FakeCloud]:
    """The server, answering requests that carry ``Bearer <key>``; 401 to anything else."""
    state: dict[str, FakeCloud] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            fake = state["cloud"]
            with fake.lock:
                fake.received.append(str(self.requestline).encode() + b"\n" + bytes(self.headers) + raw)
            if self.path != "/v1/chat/completions" or self.headers.get("authorization") != f"Bearer {key}":
                self.send_response(401)
                self.end_headers()
                return
            body = json.loads(raw)
            text = answer_for(body)
            base = {"id": "chatcmpl-fake", "created": 1, "model": body["model"]}
            if not body.get("stream"):
                out = json.dumps({**base, "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            # 3-character chunks: placeholders arrive split across chunk boundaries.
            pieces = [text[i:i + 3] for i in range(0, len(text), 3)]
            # As OpenAI: with stream_options.include_usage, "usage": null on each chunk, then a usage chunk.
            with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            for i, piece in enumerate(pieces):
                chunk = {**base, "object": "chat.completion.chunk", "choices": [
                    {"index": 0, "delta": {"content": piece}, "finish_reason": "stop" if i == len(pieces) - 1
                     else None}], **({"usage": None} if with_usage else {})}
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if with_usage:
                last = {**base, "object": "chat.completion.chunk", "choices": [], "usage": STREAM_USAGE}
                self.wfile.write(b"data: " + json.dumps(last).encode() + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["cloud"] = FakeCloud(f"http://127.0.0.1:{server.server_address[1]}/v1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["cloud"]
    server.shutdown()
    server.server_close()


@contextmanager
def key_in_env(name: str, key: str) -> Iterator[None]:
    """The provider's API key in the environment variable the policy names (``api_key_env``), restored after."""
    old = os.environ.get(name)
    os.environ[name] = key
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def provider_toml(name: str, url: str, key_env: str, model: str, **limits: str) -> str:
    """A ``[[providers]]`` table of the policy file serving ``model`` at the fake cloud's ``url``."""
    lines = [f'name = "{name}"', f'base_url = "{url}"', f'api_key_env = "{key_env}"', f'models = ["{model}"]']
    lines += [f'{key} = "{value}"' for key, value in limits.items()]
    return "[[providers]]\n" + "\n".join(lines) + "\n"


def finance_canaries(corpus: Path) -> tuple[list[str], str]:
    """The ``CANARY-FIN-…`` strings of the evaluation corpus's finance documents, and those documents' text."""
    docs = sorted((corpus / "finance").glob("*.md"))
    assert docs, f"no finance documents in {corpus}"
    text = "\n".join(d.read_text(encoding="utf-8") for d in docs)
    found = sorted(set(re.findall(r"CANARY-FIN-[A-Z0-9]+(?:-[A-Z0-9]+)*", text)))
    assert found, "no canaries in the finance documents"
    return found, text
