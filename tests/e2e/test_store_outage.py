"""The PostgreSQL server stops under a running inhouse and comes back: meanwhile every request that needs it gets 503
``store_unavailable`` with Retry-After in the one error shape within seconds (never a 500, never the server's
address), /ready says so and /health does not, /metrics still answers a key verified before; a stream already
running finishes, and its final audit record is written once the server is back; then the very first requests
succeed without restarting inhouse, nothing was half-written and the audit chain verifies."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from live_server import FAKE_MODEL, LiveServer, long_reply_engine, run_live_server, stream_long_reply

from inhouse.store.postgres.local import LocalPostgres
from inhouse.testing.postgres import local_postgres, skip_without_postgres

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def own_postgres() -> Iterator[LocalPostgres]:
    """A PostgreSQL of this test's own, so stopping it disturbs no other test."""
    skip_without_postgres()
    with local_postgres() as server:
        yield server


def requests(live: LiveServer, col: str) -> dict[str, Callable[[], httpx.Response]]:
    auth = {"Authorization": f"Bearer {live.admin_key}"}

    def post(path: str, **kw: object) -> Callable[[], httpx.Response]:
        return lambda: httpx.post(live.url + path, headers=auth, timeout=30, **kw)  # type: ignore[arg-type]

    return {
        "chat": post("/v1/chat/completions", json={"model": FAKE_MODEL,
                                                   "messages": [{"role": "user", "content": "hi"}]}),
        "models": lambda: httpx.get(live.url + "/v1/models", headers=auth, timeout=30),
        "search": post("/v1/search", json={"query": "leave days", "collections": [col]}),
        "upload": post(f"/v1/collections/{col}/documents",
                       files={"file": ("travel.md", b"# Travel\n\nTrains under four hours.\n", "text/markdown")}),
        "new key": post("/v1/admin/keys", json={"name": "ops"}),
    }


def test_requests_get_503_while_postgres_is_away_and_succeed_once_it_is_back(tmp_path: Path,
                                                                              own_postgres: LocalPostgres) -> None:
    url = own_postgres.create_database()

    with run_live_server(tmp_path, settings={"store": {"url": url}}, load_engine=long_reply_engine) as live:
        auth = {"Authorization": f"Bearer {live.admin_key}"}
        col = httpx.post(live.url + "/v1/collections", headers=auth, json={"name": "handbook"}, timeout=30).json()["id"]
        up = httpx.post(live.url + f"/v1/collections/{col}/documents", headers=auth, timeout=30,
                        files={"file": ("leave.md", b"# Leave\n\nTwenty leave days a year.\n", "text/markdown")})
        assert up.status_code == 201, up.text
        calls = requests(live, col)
        for name, call in calls.items():
            assert call().status_code in (200, 201), name

        streaming, streamed = stream_long_reply(live)  # the database stops while it streams
        own_postgres.stop()
        streaming.join(60)
        assert "data: [DONE]" in streamed  # the answer needs no database once it has started
        for name, call in calls.items():
            t = time.monotonic()
            r = call()
            assert time.monotonic() - t < 10, name  # told at once, not after the pool's reconnect attempts
            assert r.status_code == 503, (name, r.text)
            error = r.json()["error"]
            assert set(error) == {"message", "type", "code", "param"} and error["code"] == "store_unavailable", name
            assert int(r.headers["retry-after"]) >= 1, name
            assert "inhouse-pg-" not in r.text and "PGSQL" not in r.text, name  # no server address or socket path
        ready = httpx.get(live.url + "/ready", timeout=30)
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "store_unavailable"
        # The scrape goes on with a key verified before the outage (the operator needs the metrics now); a key the
        # server cannot check is not let in.
        scrape = httpx.get(live.url + "/metrics", headers=auth, timeout=30)
        assert scrape.status_code == 200 and "inhouse_requests_total" in scrape.text
        unknown = {"Authorization": "Bearer ih_0123456789abcdef_" + "A" * 43}
        refused = httpx.get(live.url + "/metrics", headers=unknown, timeout=30)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_unavailable"
        assert httpx.get(live.url + "/health", timeout=30).status_code == 200

        own_postgres.start()
        for name, call in calls.items():  # the first request after the restart included: no stale connection
            r = call()
            assert r.status_code in (200, 201), (name, r.text)
        assert httpx.get(live.url + "/ready", timeout=30).status_code == 200
        docs = httpx.get(live.url + f"/v1/collections/{col}/documents", headers=auth, timeout=30).json()["data"]
        assert sorted(d["filename"] for d in docs) == ["leave.md", "travel.md"]  # once each: nothing half-written
        audit = live.services.audit
        assert audit.verify().ok and audit.waiting == 0
        assert not audit.unfinished()  # the stream's final record, kept meanwhile, is in the chain
