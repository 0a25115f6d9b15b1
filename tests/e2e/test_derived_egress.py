"""Confidential text pasted into an internal page keeps its label, so it stays on the machine.

The evaluation corpus's salary bands sit in a finance collection (confidential: unlabelled documents are, and its
title says so). Someone pastes the bands, without the title, into a team wiki page and uploads it as ``internal``,
the wiki's label. The policy lets ``internal`` go to a cloud model after PII redaction. inhouse (production wiring,
real e5 embeddings, fake local model) runs in front of a REAL local HTTP server standing in for the cloud provider,
which records every byte it receives.

With derived labels (the default) the page is stored as confidential, naming the document its text came from, a
grounded question over the wiki is answered locally, and no canary reaches the provider. The control, with
``kb.derived_labels = false``, shows the same question sending the canary out: the check can fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_cloud import FakeCloud, finance_canaries, key_in_env, provider_toml, run_fake_cloud
from live_server import run_live_server

from inhouse.testing.network_guard import deny_external_connections

CLOUD_MODEL = "cloud-model"
KEY_ENV = "INHOUSE_TEST_DERIVED_CLOUD_KEY"
CLOUD_KEY = "sk-test-derived-0123456789abcdef"
QUESTION = "What is the reference code of the 2027 salary bands, and what is the merit budget?"


@dataclass
class World:
    http: httpx.Client
    cloud: FakeCloud
    wiki: str  # collection id
    bands: dict[str, Any]  # the finance document as uploaded
    page: dict[str, Any]  # the wiki page as uploaded


@pytest.fixture(scope="module", params=[True, False], ids=["derived-labels", "control-without-derived-labels"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          eval_corpus: Path) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("derived")
    source = eval_corpus / "finance" / "salary-bands-2027.md"
    pasted = "# Team notes, week 49\n\nFrom the HR call on Tuesday:\n\n" + source.read_text().split("\n", 1)[1]
    assert "CONFIDENTIAL" not in pasted.upper()  # no marking of its own: only its text says where it came from
    with run_fake_cloud(CLOUD_KEY) as cloud, key_in_env(KEY_ENV, CLOUD_KEY), deny_external_connections() as attempts:
        policy = data_dir.parent / f"{data_dir.name}-policy.toml"
        policy.write_text(f"""
[defaults]
conversation_label = "public"
pii_label = "internal"

{provider_toml("fakecloud", cloud.url, KEY_ENV, CLOUD_MODEL, max_label="public",
               max_label_after_redaction="internal", on_refusal="local")}
""")
        settings = {"governance": {"policy_file": policy}, "kb": {"derived_labels": request.param}}
        with run_live_server(data_dir, settings=settings) as server, \
                httpx.Client(base_url=server.url, timeout=60,
                             headers={"Authorization": f"Bearer {server.admin_key}"}) as http:
            ids = {}
            for name in ("finance", "wiki"):
                http.post("/v1/admin/groups", json={"name": name}).raise_for_status()  # lists name existing groups
                r = http.post("/v1/collections", json={"name": name, "access": {"groups": [name]}})
                assert r.status_code == 201, r.text
                ids[name] = r.json()["id"]
            bands = http.post(f"/v1/collections/{ids['finance']}/documents",
                              files={"file": (source.name, source.read_bytes(), "text/markdown")})
            page = http.post(f"/v1/collections/{ids['wiki']}/documents", data={"label": "internal"},
                             files={"file": ("team-notes.md", pasted.encode(), "text/markdown")})
            assert bands.status_code == 201 and page.status_code == 201, (bands.text, page.text)
            yield World(http, cloud, ids["wiki"], bands.json(), page.json())
        assert attempts == [], f"something tried to leave the machine: {attempts}"


def test_pasted_confidential_text_never_reaches_the_cloud(world: World, eval_corpus: Path,
                                                          request: pytest.FixtureRequest) -> None:
    derived = "control" not in request.node.callspec.id
    assert world.bands["label"] == "confidential"
    if derived:
        assert world.page["label"] == "confidential", world.page
        assert world.page["metadata"]["derived_from"] == world.bands["id"]
        assert world.page["metadata"]["derived_label"] == "confidential"
    else:
        assert world.page["label"] == "internal" and "derived_from" not in world.page["metadata"]

    before = world.cloud.calls
    r = world.http.post("/v1/chat/completions", json={
        "model": CLOUD_MODEL, "messages": [{"role": "user", "content": QUESTION}],
        "knowledge": {"collections": [world.wiki]}})
    assert r.status_code == 200, r.text
    sent = world.cloud.all_bytes().decode("utf-8", errors="replace")
    leaked = [c for c in finance_canaries(eval_corpus)[0] if c in sent]
    if derived:
        assert r.headers["x-inhouse-destination"] == "local" and r.json()["inhouse"]["egress"] == "kept_local", r.text
        assert world.cloud.calls == before and leaked == []
    else:  # the control: the same page, labelled as given, sends the salary bands' reference code out
        assert r.json()["inhouse"]["egress"] == "sent_redacted", r.text
        assert world.cloud.calls == before + 1 and leaked, "the control should have shown the leak"


def test_the_upload_record_names_the_source(world: World, request: pytest.FixtureRequest) -> None:
    found = world.http.get("/v1/admin/audit", params={"document": world.page["id"], "limit": 100}).json()["data"]
    (upload,) = [r for r in found if r["resource"] == f"POST /v1/collections/{world.wiki}/documents"]
    if "control" in request.node.callspec.id:
        assert upload["label"] == "internal" and upload["details"].get("derived_from") is None
    else:
        assert upload["label"] == "confidential" and upload["details"]["derived_from"] == world.bands["id"]
        assert upload["details"]["marking"].startswith("its text repeats")
