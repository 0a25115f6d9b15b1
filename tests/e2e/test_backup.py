"""`inhouse backup` while the server serves and writes, and `inhouse restore` into a fresh data directory: the
audit chain verifies, the knowledge index is consistent, nothing is newer than its audit record, and a backup of
a quiet server restores equal to the source (same rows, same search results)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import FAKE_MODEL, LiveServer, run_live_server

from inhouse.bootstrap import Services, build_services
from inhouse.config import Settings
from inhouse.store.backup import backup_data_dir, read_manifest, restore_data_dir
from inhouse.testing.crash import check_admin_state
from inhouse.types import Actor

ADMIN = Actor(key_id="key_cli", name="test", role="admin")
QUERIES = ["leave policy", "budget travel", "server contract", "年假", "invoice release audit"]
WORDS = ("leave", "travel", "budget", "server", "contract", "invoice", "policy", "holiday", "release", "audit", "年假")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with run_live_server(tmp_path / "live", settings={"kb": {"embedder": "fake"}}) as live:
        yield live


def open_restored(path: Path) -> Services:
    return build_services(Settings(data_dir=path, kb={"embedder": "fake"}))


def doc(i: int) -> bytes:
    return (f"# Memo {i}\n\n" + " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(80))).encode()


def searches(http: httpx.Client) -> list[list[tuple[str, float]]]:
    out = []
    for q in QUERIES:
        hits = http.post("/v1/search", json={"query": q, "top_k": 5}).json()["data"]
        out.append([(h["chunk_id"], round(h["score"], 6)) for h in hits])
    return out


def test_backup_under_write_load_and_restore_into_a_fresh_dir(server: LiveServer, tmp_path: Path) -> None:
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}, timeout=30)
    col = http.post("/v1/collections", json={"name": "memos"}).json()["id"]
    for i in range(20):
        assert http.post(f"/v1/collections/{col}/documents", files={"file": (f"m{i}.md", doc(i))}).status_code == 201
    stop = threading.Event()
    errors: list[str] = []
    done: dict[str, int] = {"users": 0, "docs": 0, "chats": 0}

    def writer(kind: str) -> None:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"},
                          timeout=30) as c:
            i = 0
            while not stop.is_set():
                i += 1
                if kind == "users":
                    r = c.post("/v1/admin/users", json={"name": f"load{i}"})
                elif kind == "docs":
                    r = c.post(f"/v1/collections/{col}/documents", files={"file": (f"load{i}.md", doc(1000 + i))})
                else:
                    r = c.post("/v1/chat/completions", json={"model": FAKE_MODEL, "max_tokens": 8,
                                                             "messages": [{"role": "user", "content": "hi"}]})
                if r.status_code >= 300:
                    errors.append(f"{kind}: {r.status_code} {r.text[:200]}")
                done[kind] += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in done]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        loaded = backup_data_dir(server.services.settings.data_dir, tmp_path / "under-load")
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:5]
    assert all(n > 0 for n in done.values()), done  # the server really was writing during the backup
    manifest = read_manifest(tmp_path / "under-load")  # every hash checks
    assert {f["path"] for f in manifest["files"]} >= {"inhouse.db", "kb.db", "audit.db", "audit.head", "audit.key"}
    assert loaded.audit_head is not None

    restore_data_dir(tmp_path / "under-load", tmp_path / "restored")
    assert check_admin_state(tmp_path / "restored") == []  # audit verifies, nothing unaudited, kb consistent
    restored = open_restored(tmp_path / "restored")
    try:
        assert restored.audit.count() == loaded.audit_head["seq"]
        users = {u.name for u in restored.directory.list_users()}
        live_users = {u.name for u in server.services.directory.list_users()}
        assert users <= live_users and len(users) >= 1
    finally:
        restored.close()

    # A quiet server: the restore equals the source, row for row and search for search.
    before = searches(http)  # (each search is itself an audited request: asked before the backup)
    quiet = backup_data_dir(server.services.settings.data_dir, tmp_path / "quiet")
    live_counts = server.services.kb.store.counts() if server.services.kb else {}
    live_audit = [r.hash for r in server.services.audit.records()]
    restore_data_dir(tmp_path / "quiet", tmp_path / "restored-quiet")
    again = open_restored(tmp_path / "restored-quiet")
    try:
        assert again.audit.verify().ok and [r.hash for r in again.audit.records()] == live_audit
        assert again.kb is not None and again.kb.store.counts() == live_counts
        assert {u.id for u in again.directory.list_users()} == {u.id for u in server.services.directory.list_users()}
        hits = [[(h.chunk.id, round(h.score, 6)) for h in again.kb.search(ADMIN, q, top_k=5)] for q in QUERIES]
    finally:
        again.close()
    assert hits == before and any(before), (hits, before)
    assert quiet.audit_head is not None and quiet.audit_head["seq"] == len(live_audit)


def test_restore_refuses_a_damaged_backup_or_a_used_data_dir(server: LiveServer, tmp_path: Path) -> None:
    from inhouse.errors import Conflict, InvalidRequest

    backup_data_dir(server.services.settings.data_dir, tmp_path / "b")
    with pytest.raises(Conflict):
        restore_data_dir(tmp_path / "b", server.services.settings.data_dir)
    with pytest.raises(Conflict):
        backup_data_dir(server.services.settings.data_dir, tmp_path / "b")  # never over an existing backup
    db = tmp_path / "b" / "inhouse.db"
    data = bytearray(db.read_bytes())
    data[-1] ^= 0xFF
    db.write_bytes(bytes(data))
    with pytest.raises(InvalidRequest, match="does not match its hash"):
        restore_data_dir(tmp_path / "b", tmp_path / "fresh")
    assert not (tmp_path / "fresh" / "inhouse.db").exists()


