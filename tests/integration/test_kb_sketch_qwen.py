"""The code sketch on the real packaged coder model: a question naming a goal comes back as code whose names are the
feature's (checked, never prose). Questions here are not from the manual benchmark's set."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from inhouse.bootstrap import build_services
from inhouse.config import Settings
from inhouse.kb.evaluate import link_default_models
from inhouse.kb.sketch import CodeSketcher, sketch_names
from inhouse.services import Services

pytestmark = pytest.mark.integration
MODEL = "qwen2.5-coder-1.5b"


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    data_dir = tmp_path_factory.mktemp("sketch")
    link_default_models(data_dir)  # the pulled model files, linked read-only (as `inhouse kb eval` does)
    s = build_services(Settings(data_dir=data_dir, models={"default": MODEL}, kb={"embedder": "fake"},
                                engine={"n_ctx": 2048, "max_running": 1}))
    if not s.registry.resolve(MODEL).present:
        s.close()
        pytest.skip(f"{MODEL} is not installed")
    yield s
    s.close()


def test_a_goal_comes_back_as_code_with_the_features_name(services: Services) -> None:
    sk = CodeSketcher(services.chat)
    code = asyncio.run(sk.sketch("put a list of people in order of their age, oldest first", model=MODEL,
                                 subject="The Python 3 documentation"))
    assert code is not None and "\n\n" not in code
    names = [n.lower() for n in sketch_names(code)]
    assert any(n.split(".")[-1] in ("sort", "sorted", "itemgetter", "attrgetter") for n in names), code
    sql = asyncio.run(sk.sketch("show which sessions are connected to the database right now", model=MODEL,
                                subject="PostgreSQL 16 manual"))
    assert sql is not None and any("pg_stat_activity" in n.lower() for n in sketch_names(sql)), sql


def test_a_collection_marked_for_sketches_gets_them_through_grounded_answers(services: Services) -> None:
    """The product path: ``sketch_questions`` on a collection (not the install-wide setting) makes grounding ask the
    real model for a sketch written for the collection's description; a collection without it gets none."""
    from inhouse.kb.evaluate import EVAL_ACTOR
    from inhouse.kb.ingest import FileSource

    kb = services.kb
    assert kb is not None and not services.settings.kb.sketch_questions
    manual = kb.create_collection(EVAL_ACTOR, "py-docs", description="The Python 3 documentation",
                                  sketch_questions=True)
    hr = kb.create_collection(EVAL_ACTOR, "handbook", description="Staff handbook")
    pages = {"tarfile.md": "# tarfile: read and write tar archive files\n\n## tarfile.open(name, mode)\n\n"
                           "Return a TarFile object for the pathname name; mode 'w:gz' writes gzip compression.\n",
             "glob.md": "# glob: Unix style pathname pattern expansion\n\n## glob.glob(pathname)\n\n"
                        "Return a list of path names that match pathname, which may contain shell-style wildcards.\n"}
    kb.ingestor.ingest(manual.id, [FileSource(name, data.encode, name) for name, data in pages.items()])
    leave = b"# Leave\n\nStaff get 18 days of annual leave.\n"
    kb.ingestor.ingest(hr.id, [FileSource("leave.md", lambda: leave, "leave.md")])
    g = asyncio.run(kb.answerer.ground_async(EVAL_ACTOR, "pack a folder into one compressed file to mail it",
                                             model=MODEL, top_k=2))
    assert g.sketch is not None and any("tarfile" in n or "zipfile" in n or "make_archive" in n
                                        for n in sketch_names(g.sketch)), g.sketch
    plain = asyncio.run(kb.answerer.ground_async(EVAL_ACTOR, "how many days of leave do staff get", ["handbook"],
                                                 model=MODEL, top_k=2))
    assert plain.sketch is None and plain.retrieved[0].chunk.source_path.endswith("leave.md")
