"""``python -m benchmarks.capacity_check [RESULT.json …]``: the capacity model against measured shapes.

For every result of ``benchmarks.shapes`` (default: all ``benchmarks/results/shapes-*.json``), predict
single-stream decode, prefill and the aggregate at each measured client count from the model's bytes and
parameters, the bandwidth measured in that run, the cores it ran on and the calibration in
``inhouse.hardware.capacity`` — and print them next to what was measured (docs/capacity.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from inhouse.hardware.capacity import CALIBRATION, Machine, ModelSize, decode_tok_s, prefill_tok_s, step_s

RESULTS = Path(__file__).resolve().parent / "results"


def model_of(res: dict[str, Any]) -> ModelSize:
    f = res["facts"]
    return ModelSize(label=res["meta"]["shape"], quant=(f["quantization"] or res["meta"]["quant"]).upper(),
                     params=f["n_params"], weight_bytes=f["weight_bytes"], read_bytes=f["read_bytes_per_token"],
                     kv_bytes_per_token=int(f["kv_bytes_per_token_f16"]))


def check(res: dict[str, Any], cores: int = 2) -> list[dict[str, Any]]:
    s = res["summary"]
    model = model_of(res)
    box = Machine(cores=cores, bandwidth_gb_s=s["bandwidth_gb_s"])
    rows = []
    for label, m in s.items():
        if not isinstance(m, dict) or "decode_tok_s" not in m:
            continue
        row: dict[str, Any] = {"model": model.name, "run": label, "bandwidth_gb_s": box.bandwidth_gb_s}
        pairs = [("decode", decode_tok_s(model, box, CALIBRATION, context=64), m.get("decode_tok_s")),
                 ("prefill", prefill_tok_s(model, box, CALIBRATION), m.get("prefill_tok_s"))]
        for n, measured in (m.get("aggregate_by_clients") or {}).items():
            b = int(n)
            pairs.append((f"aggregate@{b}", b / step_s(model, box, CALIBRATION, b, context=64), measured))
        for name, predicted, measured in pairs:
            row[name] = {"predicted": predicted, "measured": measured,
                         "error": (predicted / measured - 1) if measured else None}
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = argv if argv is not None else sys.argv[1:]
    paths = [Path(a) for a in args] or sorted(RESULTS.glob("shapes-*.json"))
    out = []
    for path in paths:
        res = json.loads(path.read_text())
        if "summary" not in res:
            continue
        for row in check(res):
            out.append(row)
            cells = [f"{k} {v['predicted']:.2f}/{v['measured'] or 0:.2f} ({(v['error'] or 0):+.0%})"
                     for k, v in row.items() if isinstance(v, dict)]
            print(f"{row['model']:>22} {row['run']:>8} @ {row['bandwidth_gb_s']:.1f} GB/s: " + "; ".join(cells))
    return out


if __name__ == "__main__":
    main()
