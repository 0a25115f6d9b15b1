"""``python -m benchmarks.capacity_check [RESULT.json …]``: the capacity model against measured shapes.

For every result of ``benchmarks.shapes`` (default: all ``benchmarks/results/shapes-*.json``), predict
single-stream decode, prefill and the per-stream rate at each measured client count (1 / the decode step
time, against 1 / the measured inter-token p50: the aggregates also hold the clients' prefills), and decode and
prefill of the same file in-process (row ``in-process``: llama.cpp without the server), from the
model's bytes and
parameters, the bandwidth measured in that run, the cores it ran on and the calibration in
``inhouse.hardware.capacity`` — and print them next to what was measured (docs/capacity.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from inhouse.hardware.capacity import (
    CALIBRATION,
    MACHINE_CLASSES,
    REFERENCE_MODELS,
    Machine,
    ModelSize,
    capacity_row,
    decode_tok_s,
    prefill_tok_s,
    step_s,
)

RESULTS = Path(__file__).resolve().parent / "results"


def model_of(res: dict[str, Any]) -> ModelSize:
    f = res["facts"]
    return ModelSize(label=res["meta"]["shape"], quant=(f["quantization"] or res["meta"]["quant"]).upper(),
                     params=f["n_params"], weight_bytes=f["weight_bytes"], read_bytes=f["read_bytes_per_token"],
                     kv_bytes_per_token=int(f["kv_bytes_per_token_f16"]))


def check(res: dict[str, Any], cores: int = 2, bandwidth_gb_s: float | None = None) -> list[dict[str, Any]]:
    s = res["summary"]
    model = model_of(res)
    box = Machine(cores=cores, bandwidth_gb_s=bandwidth_gb_s or s["bandwidth_gb_s"])
    rows = []
    for label, m in s.items():
        if not isinstance(m, dict) or "decode_tok_s" not in m:
            continue
        row: dict[str, Any] = {"model": model.name, "run": label, "bandwidth_gb_s": box.bandwidth_gb_s}
        pairs = [("decode", decode_tok_s(model, box, CALIBRATION, context=64), m.get("decode_tok_s")),
                 ("prefill", prefill_tok_s(model, box, CALIBRATION), m.get("prefill_tok_s"))]
        for n, itl in (m.get("itl_p50_by_clients") or {}).items():
            b = int(n)
            pairs.append((f"per-stream@{b}", 1 / step_s(model, box, CALIBRATION, b, context=64),
                          1 / itl if itl else None))
        for name, predicted, measured in pairs:
            row[name] = {"predicted": predicted, "measured": measured,
                         "error": (predicted / measured - 1) if measured else None}
        rows.append(row)
    if s.get("inproc_decode_tok_s"):  # the same file in llama-cpp-python in-process: llama.cpp's own speed
        row = {"model": model.name, "run": "in-process", "bandwidth_gb_s": box.bandwidth_gb_s}
        for name, predicted, measured in (
                ("decode", decode_tok_s(model, box, CALIBRATION, context=64), s["inproc_decode_tok_s"]),
                ("prefill", prefill_tok_s(model, box, CALIBRATION), s.get("inproc_prefill_tok_s"))):
            row[name] = {"predicted": predicted, "measured": measured,
                         "error": (predicted / measured - 1) if measured else None}
        rows.append(row)
    return rows


def table() -> str:
    """docs/capacity.md's table: every reference model on every machine class."""
    lines = ["| model | RAM (n_ctx 8192) | " + " | ".join(m.label for m in MACHINE_CLASSES) + " |",
             "|---|---|" + "---|" * len(MACHINE_CLASSES)]
    for model in REFERENCE_MODELS:
        cells = []
        for m in MACHINE_CLASSES:
            row = capacity_row(model, m, CALIBRATION)
            cells.append(f"{row.decode_tok_s:.1f} tok/s · {row.users} users · {row.prefill_tok_s:.0f} pp")
        ram = capacity_row(model, MACHINE_CLASSES[0], CALIBRATION).ram_bytes / 1e9
        lines.append(f"| {model.name} | {ram:.1f} GB | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = argv if argv is not None else sys.argv[1:]
    if args == ["--table"]:
        print(table())
        return []
    bandwidth = None
    if args[:1] == ["--bandwidth"]:  # for a run whose own bandwidth measurement ran under foreign load
        bandwidth, args = float(args[1]), args[2:]
    paths = [Path(a) for a in args] or sorted(RESULTS.glob("shapes-*.json"))
    out = []
    for path in paths:
        res = json.loads(path.read_text())
        if "summary" not in res:
            continue
        for row in check(res, bandwidth_gb_s=bandwidth):
            out.append(row)
            cells = [f"{k} {v['predicted']:.2f}/{v['measured']:.2f} ({v['error']:+.0%})"  # steps not run: left out
                     for k, v in row.items() if isinstance(v, dict) and v["measured"]]
            print(f"{row['model']:>22} {row['run']:>8} @ {row['bandwidth_gb_s']:.1f} GB/s: " + "; ".join(cells))
    return out


if __name__ == "__main__":
    main()
