"""Questions in the other language on the real packaged model and the real e5 embedder, with translation on: an
English question about a Chinese handbook is answered from it, and a near miss stays "not covered" (each coverage
check asked in one language; docs/knowledge.md "Questions in the other language")."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from inhouse.bootstrap import build_services
from inhouse.config import Settings
from inhouse.kb.answer import NOT_COVERED
from inhouse.kb.evaluate import EVAL_ACTOR, key_fact_present, link_default_models
from inhouse.kb.ingest import FileSource
from inhouse.services import Services

pytestmark = pytest.mark.integration
MODEL = "qwen2.5-coder-1.5b"


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, eval_corpus: Path) -> Iterator[Services]:
    data_dir = tmp_path_factory.mktemp("translate")
    link_default_models(data_dir)
    s = build_services(Settings(data_dir=data_dir, models={"default": MODEL}, kb={"translate_questions": True},
                                engine={"n_ctx": 4096, "max_running": 1}))
    if not s.registry.resolve(MODEL).present:
        s.close()
        pytest.skip(f"{MODEL} is not installed")
    kb = s.kb
    assert kb is not None
    for folder in ("zh", "hr", "finance"):  # a Chinese handbook; English policies; salary bands (the near miss)
        col = kb.create_collection(EVAL_ACTOR, folder)
        paths = sorted(p for p in (eval_corpus / folder).iterdir() if p.is_file())
        kb.ingestor.ingest(col.id, [FileSource(f"{folder}/{p.name}", p.read_bytes, p.name) for p in paths])
    yield s
    s.close()


def test_an_english_question_is_answered_from_the_chinese_handbook(services: Services) -> None:
    kb = services.kb
    assert kb is not None
    ans = asyncio.run(kb.answerer.answer(
        EVAL_ACTOR, "How much money can each employee spend per year on courses run by outside trainers?",
        model=MODEL))
    assert ans.grounding.translation and key_fact_present(ans.text, ["3000", "3,000"]), (ans.text, ans.grounding)
    assert any(c.source_path == "zh/employee-handbook.pdf" for c in ans.citations), ans.citations


def test_a_near_miss_stays_not_covered_with_the_other_languages_passages(services: Services) -> None:
    kb = services.kb
    assert kb is not None
    ans = asyncio.run(kb.answerer.answer(EVAL_ACTOR, "How many stock options does a new engineer receive?",
                                         model=MODEL))
    assert ans.grounding.translation and ans.text == NOT_COVERED and ans.citations == [], ans.text
