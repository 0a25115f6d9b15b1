"""Parsing in worker processes: a file that crashes, aborts, hangs or floods memory costs that file only, and the
next file is parsed by a new worker. These start real child processes (spawned, ~0.5 s each)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from docfactory import make_docx

from inhouse.errors import DocumentRejected, ParserUnavailable
from inhouse.kb.access import Acl
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.ingest import Ingestor
from inhouse.kb.parse import ParseLimits, parse_file
from inhouse.kb.parse.isolated import IsolatedParser
from inhouse.testing.fake_embedder import FakeEmbedder
from inhouse.testing.hostile_parsers import hostile_parse


@pytest.fixture
def parser() -> Iterator[IsolatedParser]:
    pool = IsolatedParser(ParseLimits(), workers=1, timeout_s=3, memory_mb=1024, idle_s=30, target=hostile_parse)
    yield pool
    pool.close()


def pid_of(parser: IsolatedParser) -> int:
    return int(parser(b"", "pid.txt").text)


def test_a_file_is_parsed_in_a_worker_exactly_as_in_process(parser: IsolatedParser) -> None:
    data = make_docx()
    assert parser(data, "rules.docx") == parse_file(data, "rules.docx")
    first = pid_of(parser)
    assert first != os.getpid() and pid_of(parser) == first  # one worker, kept between files
    with pytest.raises(DocumentRejected, match="above the 0 MB limit"):  # a caller's own limits (the outline's)
        parser(data, "rules.docx", limits=ParseLimits(max_file_bytes=100))


@pytest.mark.parametrize(("name", "how"), [("segfault.pdf", "killed by SIGSEGV"), ("abort.pdf", "killed by SIGABRT")])
def test_a_crashing_parser_costs_the_file_not_the_caller(parser: IsolatedParser, name: str, how: str) -> None:
    before = pid_of(parser)
    with pytest.raises(DocumentRejected) as info:
        parser(b"%PDF-1.4", name)
    assert info.value.reason == f"the parser stopped on this file ({how}); nothing was stored"
    assert parser.crashes == 1
    after = pid_of(parser)  # the next file: a new worker
    assert after != before


def test_a_worker_killed_from_outside_parses_the_file_again_and_twice_is_unavailable(
        parser: IsolatedParser, tmp_path: Path) -> None:
    # SIGKILL comes from the OOM killer or an operator, not from the file (a file that needs too much memory is a
    # MemoryError under the worker's limit): the file was a 400 "the parser stopped on this file" and not retried
    marker = tmp_path / "killed"
    doc = parser(str(marker).encode(), "killedonce.pdf")
    assert marker.exists() and doc.blocks[0].text.isdigit()
    assert parser.crashes == 0 and parser.stops["lost"] == 1
    with pytest.raises(ParserUnavailable, match="killed by SIGKILL twice, from outside"):
        parser(b"", "oomkilled.pdf")
    assert parser.crashes == 0 and parser.stops["lost"] == 3
    assert pid_of(parser) > 0  # and the next file parses


def test_a_hanging_parser_is_stopped_and_the_next_file_parses(parser: IsolatedParser) -> None:
    t0 = time.monotonic()
    with pytest.raises(DocumentRejected) as info:
        parser(b"x", "hang.pdf")
    assert "made no progress for 3 s and was stopped" in info.value.reason
    assert time.monotonic() - t0 < 10
    assert parser(make_docx(), "rules.docx").title == "Travel Rules"


def test_progress_keeps_a_long_file_alive_and_reaches_the_caller(parser: IsolatedParser) -> None:
    seen: list[tuple[int, int]] = []
    doc = parser(b"12", "pages.pdf", lambda done, total: seen.append((done, total)))  # 12 x 0.3 s > the 3 s limit
    assert seen == [(k, 12) for k in range(1, 13)] and doc.title == "pages"


def test_a_file_that_floods_memory_is_refused(parser: IsolatedParser) -> None:
    with pytest.raises(DocumentRejected) as info:
        parser(b"x", "balloon.pdf")
    assert info.value.reason == "the file needs more than 1024 MB to parse"
    assert parser(b"", "pid.txt").title == "pid"


def test_an_idle_worker_exits_and_a_new_one_takes_the_next_file() -> None:
    pool = IsolatedParser(ParseLimits(), workers=1, timeout_s=5, idle_s=0.5, target=hostile_parse)
    try:
        first = pid_of(pool)
        time.sleep(1.5)
        second = pid_of(pool)
        assert second != first and pool.crashes == 0
    finally:
        pool.close()


def test_a_batch_goes_on_past_a_crashing_file(parser: IsolatedParser, tmp_path: Path) -> None:
    store = SqliteIndexStore(tmp_path / "kb.db", dim=384)
    try:
        col = store.create_collection("hr", acl=Acl())
        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "a.docx").write_bytes(make_docx())
        (docs / "segfault.pdf").write_bytes(b"%PDF-1.4")
        (docs / "z.md").write_text("# Notes\n\nKeep every receipt.\n", encoding="utf-8")
        report = Ingestor(store, FakeEmbedder(), paged_parse=parser).ingest_paths(col.id, [docs])
        outcomes = {o.source_path: o for o in report.outcomes}
        assert {path: o.status for path, o in outcomes.items()} == {
            "docs/a.docx": "added", "docs/segfault.pdf": "error", "docs/z.md": "added"}
        assert "the parser stopped on this file (killed by SIGSEGV)" in (outcomes["docs/segfault.pdf"].error or "")
        assert store.counts()["documents"] == 2
    finally:
        store.close()


def test_over_http_a_crashing_upload_is_a_400_counted_in_metrics_and_the_next_upload_works(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from inhouse.api.app import build_app
    from inhouse.testing.services import build_fake_services

    pool = IsolatedParser(ParseLimits(), workers=1, timeout_s=5, target=hostile_parse)
    services = build_fake_services(tmp_path, parser=pool)
    try:
        _, key = services.keys.create_key("admin", role="admin")
        with TestClient(build_app(services), headers={"Authorization": f"Bearer {key}"}) as http:
            col = http.post("/v1/collections", json={"name": "inbox"}).json()["id"]
            r = http.post(f"/v1/collections/{col}/documents", files={"file": ("segfault.pdf", b"%PDF-1.4")})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "document_rejected"
            assert "the parser stopped on this file (killed by SIGSEGV)" in r.json()["error"]["message"]
            assert 'inhouse_parse_worker_stops_total{reason="SIGSEGV"} 1.0' in http.get("/metrics").text
            r = http.post(f"/v1/collections/{col}/documents", files={"file": ("notes.md", b"# Notes\n\nKeep it.")})
            assert r.status_code == 201, r.text
            assert http.get("/ready").status_code == 200
            # killed from outside twice: not the file's fault, so not a 400 that tells the client never to retry
            r = http.post(f"/v1/collections/{col}/documents", files={"file": ("oomkilled.pdf", b"%PDF-1.4")})
            assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
            assert r.json()["error"]["code"] == "parser_unavailable"
            assert 'inhouse_parse_worker_stops_total{reason="lost"} 2.0' in http.get("/metrics").text
    finally:
        services.close()
