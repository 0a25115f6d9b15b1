"""Several ingress replicas over one PostgreSQL store (``cluster.ingress_replicas = 2``): requests reach both
replicas, concurrent requests through both write one audit chain that ``inhouse audit verify`` accepts, and a key's
requests/minute limit holds across both (the windows are shared in PostgreSQL), /metrics, whichever replica
answers it, counts the requests of both, a replica killed mid-stream is replaced by one that closes its open
request, and one killed after a PostgreSQL outage leaves what it kept meanwhile to the next. One simulated machine
(``LocalCluster``) with a fake-engine model replica, over a PostgreSQL of the module's own: under a minute on a
quiet 2-core box."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from inhouse.cli.main import app as cli
from inhouse.cluster.app import ModelDeployment, deploy
from inhouse.cluster.local import LocalCluster, free_port
from inhouse.governance.audit import INTERRUPTED, STARTED
from inhouse.governance.process import process_tag
from inhouse.store.build import open_audit_log
from inhouse.testing.postgres import local_postgres, skip_without_postgres
from inhouse.testing.services import build_fake_services, fake_settings

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(300)]

FAKE = "fake-i"
RPM = 5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    skip_without_postgres()
    head = tmp_path_factory.mktemp("ingress") / "head"
    head.mkdir()
    with local_postgres() as postgres:  # its own: a test stops and starts it
        url = postgres.create_database()
        store = {"store": {"url": url}}
        services = build_fake_services(head, settings=store, models={FAKE: None})
        try:
            admin = services.keys.ensure_admin_key()
            _, limited = services.keys.create_key("limited", rpm_limit=RPM)
            outage_key, outage = services.keys.create_key("outage")
        finally:
            services.close()
        port = free_port()
        settings = fake_settings(head, {**store, "server": {"port": port}, "cluster": {"ingress_replicas": 2}})
        local = LocalCluster([head]).start()
        try:
            deploy(settings, [ModelDeployment(FAKE, engine="fake", fake_delay_s=0.02, fake_reply="word " * 400,
                                              engine_overrides={"max_running": 8},
                                              autoscaling={"min_replicas": 1, "max_replicas": 1})])
            yield {"url": f"http://127.0.0.1:{port}", "admin": admin, "limited": limited, "outage": outage,
                   "outage_key_id": outage_key.id, "settings": settings, "data_dir": head, "store": store,
                   "store_url": url, "postgres": postgres, "answered": Counter()}
        finally:
            local.stop()


async def _burst(cluster: dict[str, Any], key: str, n: int, tag: str) -> list[httpx.Response]:
    async def one(i: int) -> httpx.Response:
        body = {"model": FAKE, "messages": [{"role": "user", "content": f"{tag} {i}"}], "max_tokens": 8,
                "stream": i % 2 == 1}
        return await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})

    async with httpx.AsyncClient(base_url=cluster["url"], timeout=120) as client:
        responses = list(await asyncio.gather(*[one(i) for i in range(n)]))
    cluster["answered"].update(r.status_code for r in responses)  # every chat request of the module, by status
    return responses


def started_by_node(cluster: dict[str, Any], key_id: str | None = None) -> Counter[str]:
    """The ingress that wrote each request's ``started`` record (its node name carries its replica)."""
    log = open_audit_log(cluster["settings"])
    assert log is not None
    try:
        return Counter(str(r.details.get("node")) for r in log.iter_records()
                       if r.outcome == STARTED and (key_id is None or r.actor_key_id == key_id))
    finally:
        log.close()


def test_both_replicas_write_one_chain_that_verifies(cluster: dict[str, Any]) -> None:
    nodes: Counter[str] = Counter()
    for round_ in range(5):  # Serve's proxy spreads concurrent requests; a few bursts reach both replicas
        responses = asyncio.run(_burst(cluster, cluster["admin"], 12, f"round {round_}"))
        assert [r.status_code for r in responses] == [200] * 12, [r.text[:200] for r in responses]
        nodes = started_by_node(cluster)
        if len(nodes) == 2:
            break
    assert len(nodes) == 2 and all("/ingress-" in n for n in nodes), nodes
    assert sum(nodes.values()) >= 12
    code, out = _cli("audit", "verify", "--data-dir", str(cluster["data_dir"]),
                     env={"INHOUSE_STORE__URL": cluster["store_url"]})
    assert code == 0 and "ok:" in out, out


def test_a_keys_rpm_limit_holds_across_both_replicas(cluster: dict[str, Any]) -> None:
    responses = asyncio.run(_burst(cluster, cluster["limited"], 4 * RPM, "limited"))
    codes = Counter(r.status_code for r in responses)
    assert codes == {200: RPM, 429: 3 * RPM}, codes
    refused = [r for r in responses if r.status_code == 429]
    assert all(r.json()["error"]["code"] == "rate_limit_exceeded" and r.headers.get("retry-after")
               for r in refused), refused[0].text
    code, out = _cli("audit", "verify", "--data-dir", str(cluster["data_dir"]),
                     env={"INHOUSE_STORE__URL": cluster["store_url"]})
    assert code == 0, out


def test_metrics_count_the_requests_of_both_replicas(cluster: dict[str, Any]) -> None:
    before = started_by_node(cluster)
    for round_ in range(5):  # requests until both replicas took some of this test's
        responses = asyncio.run(_burst(cluster, cluster["admin"], 12, f"metrics {round_}"))
        assert {r.status_code for r in responses} == {200}
        taken = started_by_node(cluster) - before
        if len(taken) == 2:
            break
    assert len(taken) == 2, taken
    expected = cluster["answered"]  # this module's chat requests so far: more than either replica served

    async def scrapes() -> list[str]:  # concurrent, so Serve's proxy spreads them over the replicas
        async with httpx.AsyncClient(base_url=cluster["url"], timeout=60,
                                     headers={"Authorization": f"Bearer {cluster['admin']}"}) as client:
            return [r.text for r in await asyncio.gather(*[client.get("/metrics") for _ in range(6)])]

    def counted(text: str, status: int) -> float:
        found = re.search(rf'^inhouse_requests_total\{{route="/v1/chat/completions",status="{status}"\}} (\S+)$',
                          text, re.M)
        return float(found[1]) if found else 0.0

    deadline, seen = time.monotonic() + 30, []
    while time.monotonic() < deadline:  # the other replica's counts reach the board within a second or two
        texts = asyncio.run(scrapes())
        seen = [(counted(t, 200), counted(t, 429)) for t in texts]
        if all(s == (expected[200], expected[429]) for s in seen):
            break
        time.sleep(0.5)
    assert all(s == (expected[200], expected[429]) for s in seen), (seen, expected)
    assert all(re.search(r"^inhouse_ingress_replicas_reporting 2\.0$", t, re.M) for t in texts)


def test_a_killed_replicas_running_requests_are_closed_by_the_replica_that_replaces_it(
        cluster: dict[str, Any]) -> None:
    """SIGKILL to the ingress replica serving a stream: Ray Serve starts another (another node name), which closes
    the dead one's open request as interrupted, naming its process; the chain still verifies. It replaces a
    replica, as the next test does."""
    body = {"model": FAKE, "messages": [{"role": "user", "content": "a stream whose ingress dies"}],
            "max_tokens": 1500, "stream": True}
    victim: dict[str, Any] = {}
    with contextlib.suppress(httpx.HTTPError), httpx.stream(  # the connection may just end when the replica dies
            "POST", cluster["url"] + "/v1/chat/completions", json=body, timeout=60,
            headers={"Authorization": f"Bearer {cluster['admin']}"}) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and not victim:  # streaming: its started record is written
                (victim,) = [{"request_id": rec.request_id, **rec.details["process"]} for rec in _unfinished(cluster)]
                os.kill(victim["pid"], signal.SIGKILL)
    assert victim, "the stream never started"
    deadline, closed = time.monotonic() + 120, None
    while time.monotonic() < deadline and closed is None:  # until Serve's replacement replica is up
        time.sleep(1)
        log = open_audit_log(cluster["settings"])
        assert log is not None
        try:
            closed = next((rec for rec in log.iter_records() if rec.request_id == victim["request_id"]
                           and rec.outcome == INTERRUPTED), None)
        finally:
            log.close()
    assert closed is not None, "the replacement replica did not close the dead replica's request"
    assert closed.reason == f"the server's process ({victim['pid']}) stopped before the request finished"
    assert _unfinished(cluster) == []
    assert asyncio.run(_burst(cluster, cluster["admin"], 2, "after"))[0].status_code == 200
    code, out = _cli("audit", "verify", "--data-dir", str(cluster["data_dir"]),
                     env={"INHOUSE_STORE__URL": cluster["store_url"]})
    assert code == 0, out


def _unfinished(cluster: dict[str, Any]) -> list[Any]:
    log = open_audit_log(cluster["settings"])
    assert log is not None
    try:
        return log.unfinished()
    finally:
        log.close()


def _cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


def test_a_replica_that_dies_after_an_outage_leaves_what_it_kept_to_the_next_replica(cluster: dict[str, Any]) -> None:
    """PostgreSQL stops while a replica streams: the stream ends all the same, and the replica keeps the request's
    final record and its token charge in spool files named by its process. It is killed before it could write them
    (PostgreSQL is back, but no request of its came); the replica Ray starts in its place takes both files over: the
    request ends ``success`` (not ``interrupted``), the key is charged once, and no spool file is left."""
    body = {"model": FAKE, "messages": [{"role": "user", "content": "a stream that outlives the database"}],
            "max_tokens": 300, "stream": True}
    victim: dict[str, Any] = {}
    chunks, done = 0, False
    with httpx.stream("POST", cluster["url"] + "/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {cluster['outage']}"}) as r:
        for line in r.iter_lines():
            done = done or line == "data: [DONE]"
            if line.startswith("data: {"):
                chunks += 1
                if not victim:  # streaming: its started record is written; now the database goes
                    (victim,) = [{"request_id": rec.request_id, **rec.details["process"]}
                                 for rec in _unfinished(cluster)]
                    cluster["postgres"].stop()
    assert done and chunks > 10  # the answer needs no database once it has started
    data_dir, tag = cluster["data_dir"], process_tag(victim)
    try:
        kept = {name: data_dir / f"{name}.waiting.{tag}.jsonl" for name in ("audit", "usage")}
        deadline = time.monotonic() + 30  # the final record is kept once the store refuses it (the pool gives up)
        while time.monotonic() < deadline and not all(p.exists() for p in kept.values()):
            time.sleep(0.2)
        assert all(p.exists() for p in kept.values()), sorted(p.name for p in data_dir.iterdir())
    finally:
        cluster["postgres"].start()
    # Whichever replica answers the scrape, the kept writes are counted (summed over the replicas' series).
    deadline, texts = time.monotonic() + 30, []
    while time.monotonic() < deadline:
        texts = asyncio.run(_scrapes(cluster, 6))
        if all(_waiting(t) == (1.0, 1.0) for t in texts):
            break
        time.sleep(0.5)
    assert [_waiting(t) for t in texts] == [(1.0, 1.0)] * 6
    os.kill(victim["pid"], signal.SIGKILL)
    deadline, final = time.monotonic() + 120, None
    while time.monotonic() < deadline and final is None:  # until Serve's replacement replica is up
        time.sleep(1)
        final = next((rec for rec in _records(cluster) if rec.request_id == victim["request_id"]
                      and rec.outcome != STARTED), None)
    assert final is not None, "the replacement replica did not write the dead replica's kept record"
    assert final.outcome == "success", final
    assert _unfinished(cluster) == []
    services = build_fake_services(data_dir, settings=cluster["store"], models={})
    try:
        used = services.quotas.status(cluster["outage_key_id"])
    finally:
        services.close()
    assert used.requests_today == 1 and used.tokens_used_today >= chunks, used  # charged, and once
    assert not list(data_dir.glob("*.waiting*")), sorted(p.name for p in data_dir.iterdir())
    code, out = _cli("audit", "verify", "--data-dir", str(data_dir), env={"INHOUSE_STORE__URL": cluster["store_url"]})
    assert code == 0, out


async def _scrapes(cluster: dict[str, Any], n: int) -> list[str]:
    """``n`` concurrent scrapes of /metrics, which Serve's proxy spreads over the replicas."""
    async with httpx.AsyncClient(base_url=cluster["url"], timeout=60,
                                 headers={"Authorization": f"Bearer {cluster['admin']}"}) as client:
        responses = await asyncio.gather(*[client.get("/metrics") for _ in range(n)])
    assert [r.status_code for r in responses] == [200] * n, [r.text[:200] for r in responses]
    return [r.text for r in responses]


def _waiting(text: str) -> tuple[float, float]:
    """``inhouse_writes_waiting`` for audit records and for token charges (0 when a kind is not there)."""
    def one(kind: str) -> float:
        found = re.search(rf'^inhouse_writes_waiting\{{kind="{kind}"\}} (\S+)$', text, re.M)
        return float(found[1]) if found else 0.0
    return one("audit"), one("usage")


def _records(cluster: dict[str, Any]) -> list[Any]:
    log = open_audit_log(cluster["settings"])
    assert log is not None
    try:
        return list(log.iter_records())
    finally:
        log.close()
