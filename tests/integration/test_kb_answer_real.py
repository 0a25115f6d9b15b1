"""Smoke test on real models: e5 retrieval + a grounded answer from SmolLM2 through /v1/chat/completions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inhouse.api.app import build_app
from inhouse.bootstrap import build_services
from inhouse.config import Settings
from inhouse.kb.answer import NOT_COVERED
from inhouse.services import Services
from inhouse.types import Actor

pytestmark = pytest.mark.integration
MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, eval_corpus: Path) -> Iterator[Services]:
    s = build_services(Settings(data_dir=tmp_path_factory.mktemp("kbreal"), models={"default": MODEL},
                                engine={"n_ctx": 4096, "max_running": 2}))
    if not s.registry.resolve(MODEL).present:
        s.close()
        pytest.skip(f"{MODEL} is not installed")
    yield s
    s.close()


def test_grounded_chat_with_real_models(services: Services, eval_corpus: Path) -> None:
    kb = services.kb
    assert kb is not None
    admin = Actor("key_admin", "admin", role="admin")
    kb.create_collection(admin, "hr")
    assert kb.ingest_paths(admin, "hr", [eval_corpus / "hr" / "leave-policy.md"]).count("added") == 1
    _, key = services.keys.create_key("admin", role="admin")
    with TestClient(build_app(services), headers={"Authorization": f"Bearer {key}"}) as c:
        r = c.post("/v1/chat/completions", json={
            "model": MODEL, "max_tokens": 40, "knowledge": {"collections": ["hr"]},
            "messages": [{"role": "user", "content": "How many days of paid sick leave do employees receive?"}]})
        body = r.json()
        assert r.status_code == 200, body
        assert body["choices"][0]["message"]["content"].strip() and isinstance(body["citations"], list)
        assert body["usage"]["prompt_tokens"] > 100  # the passages went into the prompt
        far = c.post("/v1/chat/completions", json={
            "model": MODEL, "knowledge": {}, "messages": [{"role": "user", "content": "Best pizza in Naples?"}]})
        assert far.json()["choices"][0]["message"]["content"] == NOT_COVERED
