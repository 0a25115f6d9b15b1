"""The audit log end to end: the services built by ``build_services`` behind a real uvicorn server, driven
over HTTP, then checked with the ``inhouse audit`` commands (verify, export, report)."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from inhouse.api.app import build_app
from inhouse.bootstrap import build_services
from inhouse.cli.main import app as cli
from inhouse.config import Settings
from inhouse.services import Services
from inhouse.testing.fakes import build_fake_engine
from inhouse.testing.gguf_writer import tiny_model_kv, tiny_model_tensors, write_gguf

MODEL = "fake-model"
MSG = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Services, str, str]]:
    settings = Settings(data_dir=tmp_path / "data", models={"default": MODEL})
    services = build_services(settings, load_engine=lambda spec: build_fake_engine(spec.name))
    services.registry.add(write_gguf(tmp_path / "m.gguf", tiny_model_kv(), tiny_model_tensors()), MODEL)
    secret = services.keys.ensure_admin_key()
    assert secret is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(build_app(services), lifespan="off", log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not srv.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield services, f"http://127.0.0.1:{sock.getsockname()[1]}", secret
    srv.should_exit = True
    thread.join(5)
    services.close()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_requests_and_security_actions_leave_exactly_their_records(served: tuple[Services, str, str],
                                                                   tmp_path: Path) -> None:
    services, url, secret = served
    n_chat, n_users = 4, 3
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=10) as c:
        for i in range(n_chat):
            body = {"model": MODEL, "messages": MSG, "stream": i % 2 == 1}
            assert c.post("/v1/chat/completions", json=body).status_code == 200
        for i in range(n_users):
            assert c.post("/v1/admin/users", json={"name": f"u{i}"}).status_code == 201
        assert c.get("/health").status_code == 200
    records = services.audit.records()
    loads = [r for r in records if r.action == "model.loaded"]
    assert len(loads) == 1 and loads[0].outcome == "success" and loads[0].model == MODEL
    assert [r.action for r in records if r.kind == "security" and r.action != "model.loaded"] == \
        ["key.created"] + ["user.created"] * n_users  # the initial admin key, then the users
    chats = [r for r in records if r.action == "chat:create"]
    assert [r.outcome for r in chats].count("started") == n_chat
    assert [r.outcome for r in chats].count("success") == n_chat
    assert len([r for r in records if r.action == "users:manage"]) == n_users
    # The admin key, 1 load, 2 per chat, 2 per user (the security event and the request), nothing else.
    assert len(records) == 1 + 1 + 2 * n_chat + 2 * n_users

    data_dir = str(services.settings.data_dir)
    code, out = run("audit", "verify", "--data-dir", data_dir)
    assert code == 0 and "ok" in out
    code, _ = run("audit", "export", "--since", "1d", "-o", str(tmp_path / "x.jsonl"), "--data-dir", data_dir)
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    assert code == 0 and [json.loads(x)["seq"] for x in lines] == [r.seq for r in records]
    code, out = run("audit", "report", "--since", "7d", "--json", "--data-dir", data_dir)
    report = json.loads(out)
    assert code == 0 and report["confidential_sent_out"]["count"] == 0
    assert report["requests"]["by_destination"] == {"local": n_chat}
    code, out = run("audit", "report", "--data-dir", data_dir)
    assert code == 0 and "Confidential or restricted items sent out: 0" in out
    # An investigation of one document: only the records that name it.
    for docs in (["doc_1a"], ["doc_1ab"], ["doc_2", "doc_1a"]):
        services.audit.record_request(action="kb:read", outcome="success", documents=docs)
    code, _ = run("audit", "export", "--document", "doc_1a", "-o", str(tmp_path / "d.jsonl"), "--data-dir", data_dir)
    named = [json.loads(x)["documents"] for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert code == 0 and named == [["doc_1a"], ["doc_2", "doc_1a"]]

    # Tamper through raw sqlite3: `audit verify` exits 1 and names the first broken record.
    conn = sqlite3.connect(services.settings.data_dir / "audit.db")
    conn.execute("DROP TRIGGER audit_records_no_update")
    conn.execute("UPDATE audit_records SET outcome = 'forged' WHERE seq = 2")
    conn.commit()
    conn.close()
    code, out = run("audit", "verify", "--data-dir", data_dir)
    assert code == 1 and "modified" in out and "record 2" in out
    code, out = run("audit", "verify", "--json", "--data-dir", data_dir)
    assert code == 1 and json.loads(out)["first_broken_seq"] == 2
