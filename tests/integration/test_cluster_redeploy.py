"""Deploying the cluster app again and machines that join later (``cluster/app.py``, ``cluster/ingress.py``), on Ray
itself: an app whose model wants 2 replicas deployed while only the head is up (the reboot order: the head deploys
before the workers rejoin) is served at once and gets its second replica when a machine joins; deploying the same
settings again restarts no replica; deploying other settings replaces the ingress, and a stream running through the
old one ends with its final SSE error event and its final audit record instead of being cut; a client that leaves
(Serve's proxy cancels the ingress's request) is recorded aborted, not as a server error. About 40 s."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from inhouse.cluster.app import APP_NAME, EMBEDDER_DEPLOYMENT, INGRESS_DEPLOYMENT, ModelDeployment, deploy
from inhouse.cluster.local import LocalCluster, free_port, node_args
from inhouse.cluster.remote import replica_ids
from inhouse.cluster.status import read_status
from inhouse.governance.audit import STARTED
from inhouse.store.build import open_audit_log
from inhouse.testing.services import build_fake_services, fake_settings

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(300)]

FAKE = "fake-r"
MODELS = [ModelDeployment(FAKE, engine="fake", fake_delay_s=0.05, fake_reply="word " * 400)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("redeploy")
    head, second = base / "head", base / "second"
    head.mkdir()
    second.mkdir()
    services = build_fake_services(head, models={FAKE: None})
    key = services.keys.ensure_admin_key()
    services.close()
    port = free_port()
    overrides = {"server": {"port": port}, "cluster": {"min_replicas": 2, "initial_replicas": 2}}
    local = LocalCluster([head]).start()  # only the head: the second machine joins later
    try:
        t0 = time.monotonic()
        deploy(fake_settings(head, overrides), MODELS)
        yield {"url": f"http://127.0.0.1:{port}", "headers": {"Authorization": f"Bearer {key}"}, "local": local,
               "head": head, "second": second, "overrides": overrides, "deploy_s": time.monotonic() - t0}
    finally:
        local.stop()


def replicas() -> dict[str, list[str]]:
    return {d: replica_ids(APP_NAME, d) for d in (INGRESS_DEPLOYMENT, f"model-{FAKE}", EMBEDDER_DEPLOYMENT)}


def test_the_app_serves_before_the_machines_its_replicas_want_are_up(cluster: dict[str, Any]) -> None:
    assert cluster["deploy_s"] < 120  # not blocked until a second machine joins
    view = read_status()
    (model,) = view.models
    assert view.machines == 1
    assert model.replicas.get("RUNNING") == 1 and model.waiting_for_machines(view.machines) == 1, model.replicas
    r = httpx.post(cluster["url"] + "/v1/chat/completions", headers=cluster["headers"], timeout=60,
                   json={"model": FAKE, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 200, r.text


def test_a_client_that_leaves_is_recorded_aborted(cluster: dict[str, Any]) -> None:
    body = {"model": FAKE, "messages": [{"role": "user", "content": "a story I will not finish"}],
            "max_tokens": 1500, "stream": True}
    leaving: set[str] = set()
    with httpx.stream("POST", cluster["url"] + "/v1/chat/completions", json=body, timeout=60,
                      headers=cluster["headers"]) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                leaving.add(json.loads(line.removeprefix("data: "))["id"])
                break  # the connection is closed here
    deadline, final = time.monotonic() + 20, []
    while time.monotonic() < deadline and not final:
        time.sleep(0.5)
        log = open_audit_log(fake_settings(cluster["head"]))
        assert log is not None
        try:
            final = [r for r in log.iter_records() if r.action == "chat:create" and r.outcome != STARTED
                     and r.request_id in leaving]
        finally:
            log.close()
    assert final, "no final record"
    assert (final[-1].outcome, final[-1].details["status"]) == ("aborted", 499)


def test_deploying_the_same_settings_again_restarts_nothing(cluster: dict[str, Any]) -> None:
    before = replicas()
    assert all(before.values()), before
    port = cluster["overrides"]["server"]["port"]
    assert deploy(fake_settings(cluster["head"], cluster["overrides"]), MODELS)[1] == port
    time.sleep(3)  # what a restart would have begun by now
    assert replicas() == before
    # Serve's proxy keeps the address it started with: the deploy says where it serves, not what was asked
    elsewhere = {**cluster["overrides"], "server": {"port": free_port()}}
    assert deploy(fake_settings(cluster["head"], elsewhere), MODELS)[1] == port


def test_a_stream_through_a_replaced_ingress_ends_with_its_error_event_and_record(cluster: dict[str, Any]) -> None:
    lines: list[str] = []
    started = threading.Event()

    def stream() -> None:
        body = {"model": FAKE, "messages": [{"role": "user", "content": "a long story"}], "max_tokens": 1500,
                "stream": True}
        with httpx.stream("POST", cluster["url"] + "/v1/chat/completions", json=body, timeout=60,
                          headers=cluster["headers"]) as r:
            for line in r.iter_lines():
                lines.append(line)
                started.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert started.wait(30), "the stream never started"
    old_ingress = replicas()[INGRESS_DEPLOYMENT]
    changed = {**cluster["overrides"], "cluster": {**cluster["overrides"]["cluster"], "call_timeout_s": 200.0}}
    deploy(fake_settings(cluster["head"], changed), MODELS)  # another ingress version: its replica is replaced
    reader.join(60)
    assert not reader.is_alive()
    assert replicas()[INGRESS_DEPLOYMENT] != old_ingress
    events = [json.loads(x.removeprefix("data: ")) for x in lines if x.startswith("data: {")]
    assert events[-1]["error"]["code"] == "shutting_down", lines[-3:]  # its final event, not a cut connection
    log = open_audit_log(fake_settings(cluster["head"]))
    assert log is not None
    try:
        final = [r for r in log.iter_records() if r.action == "chat:create" and r.outcome != STARTED]
        assert log.unfinished() == []
    finally:
        log.close()
    assert (final[-1].outcome, final[-1].reason) == ("error", "shutting_down")
    r = httpx.post(cluster["url"] + "/v1/chat/completions", headers=cluster["headers"], timeout=60,
                   json={"model": FAKE, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 200, r.text  # the new ingress serves


def test_a_machine_that_joins_later_gets_the_replicas_wanted(cluster: dict[str, Any]) -> None:
    local = cluster["local"]
    local.nodes.append(local._cluster.add_node(**node_args(cluster["second"], head=False, object_store_mb=80)))
    deadline, view = time.monotonic() + 90, None
    while time.monotonic() < deadline:
        view = read_status()
        if view.models and view.models[0].replicas == {"RUNNING": 2}:
            break
        time.sleep(1)
    assert view is not None and view.machines == 2
    (model,) = view.models
    assert model.replicas == {"RUNNING": 2}, model.replicas
    assert len({r["node_id"] for r in model.per_replica}) == 2  # one per machine
