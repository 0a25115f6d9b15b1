"""``benchmarks.kb_sync``'s revision: the same folder name in both revisions, pages edited in one paragraph of their
text, moved unchanged or edited, or removed, the rest byte for byte; the same seed gives the same revision. Its chart
draws."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.kb_sync import chart, make_revisions

RESULTS = Path(__file__).parents[3] / "benchmarks" / "results"
RESULT = RESULTS / "kb-sync-20261206-112447.json"
POSTGRES_RESULT = RESULTS / "kb-sync-20261206-195901.json"  # also counts the chunk rows written anew
PARAGRAPH = "<p>" + "The hotel limit in Shanghai is 1,200 CNY per night for every grade of staff. " * 4 + "</p>"


def _pages(root: Path, n: int) -> None:
    for i in range(n):
        (root / "library" if i % 2 else root).mkdir(parents=True, exist_ok=True)
        page = root / ("library" if i % 2 else "") / f"page{i}.html"
        page.write_text(f"<html><body><h1>Page {i}</h1>{PARAGRAPH}{PARAGRAPH}</body></html>")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.html")}


def test_a_revision_edits_moves_and_removes_pages_the_same_way_each_time(tmp_path: Path) -> None:
    _pages(tmp_path / "manual", 60)
    kw = {"sample": 1, "edit": 0.2, "remove": 0.1, "move": 0.1, "move_edit": 0.1, "seed": 3}
    counts = make_revisions(tmp_path / "manual", tmp_path / "a", **kw)  # type: ignore[arg-type]
    again = make_revisions(tmp_path / "manual", tmp_path / "b", **kw)  # type: ignore[arg-type]
    assert counts == again and counts["pages"] == 60
    assert min(counts["edited"], counts["moved"], counts["moved_edited"], counts["removed"]) > 0
    r1, r2 = _files(tmp_path / "a" / "r1" / "manual"), _files(tmp_path / "a" / "r2" / "manual")
    assert r1 == _files(tmp_path / "manual") and r2 == _files(tmp_path / "b" / "r2" / "manual")
    moved = {k.removeprefix("moved/"): v for k, v in r2.items() if k.startswith("moved/")}
    assert len(moved) == counts["moved"] + counts["moved_edited"]
    assert sum(r1[k] == v for k, v in moved.items()) == counts["moved"]
    kept = {k: v for k, v in r2.items() if not k.startswith("moved/")}
    edited = [k for k, v in kept.items() if v != r1[k]]
    assert len(edited) == counts["edited"] and len(r1) - len(r2) == counts["removed"]
    for k, v in [(k, kept[k]) for k in edited] + [(k, v) for k, v in moved.items() if r1[k] != v]:
        assert len(v) > len(r1[k]) and v.count(b"Changed in revision 2") == 1  # one sentence added in one paragraph


def test_the_chart_of_a_run_draws(tmp_path: Path) -> None:
    for i, result in enumerate((RESULT, POSTGRES_RESULT)):
        out = chart(json.loads(result.read_text()), tmp_path / f"kb-sync-{i}.png")
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
