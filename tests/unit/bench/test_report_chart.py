"""The benchmark chart of a run of some scenarios only (`benchmarks.run --only decode`) is drawn, not a traceback at
the end of the run (the empty panels had a log scale over no data)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.report import write_chart

DECODE_ONLY = Path(__file__).parents[3] / "benchmarks" / "results" / "smollm2-135m-20261206-090937.json"


def test_a_decode_only_run_gets_its_chart(tmp_path: Path) -> None:
    res = json.loads(DECODE_ONLY.read_text())
    assert res.get("decode") and not res.get("concurrency") and not res.get("prefill")
    out = tmp_path / "chart.png"
    write_chart(res, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
