"""The audit benchmark's chain is a valid chain with a served log's mix, and its child reports both timings."""

from __future__ import annotations

from pathlib import Path

from benchmarks.audit import _child, build_chain


def test_the_chain_verifies_and_has_the_mix_of_a_served_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    build_chain(path, 301)
    res = _child(path)
    assert res["verified"] is True and res["report_s"] > 0 and res["verify_s"] > 0
    report = res["report"]
    assert report["records"] == 301 and report["integrity"]["records"] == 301
    assert report["records_by_kind"] == {"request": 296, "security": 5}
    assert set(report["by_action"]) == {"chat:create", "kb:search", "egress.decision"}
    assert report["by_action"]["chat:create"]["started"] == 100
    assert report["requests"]["by_destination"]["cloud"] == 3 and report["requests"]["unfinished"] == 0
    assert report["confidential_sent_out"]["count"] == 0  # the confidential egress decisions were denied
