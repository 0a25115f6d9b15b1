"""Turn the raw results of a run into targets (ratio + pass/fail), a printed table, JSON and a PNG chart."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from benchmarks.client import median
from benchmarks.results import write_results

OURS, THEIRS = "ours", "theirs"
CONTENDED_CORES = 0.15  # foreign load above which a step's numbers are flagged


def _med(runs: list[dict[str, Any]] | None, key: str = "decode_tok_s") -> float | None:
    return median([r[key] for r in runs or [] if r.get(key)])


def _best(runs: list[dict[str, Any]] | None, key: str = "decode_tok_s") -> float | None:
    """Best of N, the same rule for every side: on a shared 2-core machine the noise is interference,
    which only ever slows a run down."""
    values = [r[key] for r in runs or [] if r.get(key)]
    return max(values) if values else None


def _target(
    name: str,
    value: float | None,
    op: str,
    goal: float,
    unit: str = "×",
    note: str = "",
    floor: float | None = None,
) -> dict[str, Any]:
    if value is None:
        verdict = "n/a"
    elif op == ">=":
        verdict = "PASS" if value >= goal else "FAIL"
    else:
        verdict = "PASS" if value <= goal else "FAIL"
    if floor is not None and value is not None and value < floor:
        note = (note + "; " if note else "") + f"below the hard floor {floor}"
    return {
        "name": name,
        "value": value,
        "op": op,
        "goal": goal,
        "unit": unit,
        "verdict": verdict,
        "note": note,
    }


def _at_load(loads: list[dict[str, Any]] | None, clients: int) -> dict[str, Any] | None:
    for load in loads or []:
        if load["clients"] == clients:
            return load
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def compute_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    dec = res.get("decode")
    if dec:
        ours, inproc = _best(dec.get("ours_runs")), _best(dec.get("inproc_runs"))
        bw = max((b["best_gb_s"] for b in res.get("bandwidth", [])), default=None)
        size = res["meta"]["model_bytes"]
        dec["ours_tok_s"], dec["inproc_tok_s"], dec["theirs_tok_s"] = ours, inproc, _best(dec.get("theirs_runs"))
        for side in ("ours", "inproc", "theirs"):
            dec[f"{side}_tok_s_median"] = _med(dec.get(f"{side}_runs"))
        dec["bandwidth_gb_s_used"] = bw
        dec["roofline_tok_s"] = bw * 1e9 / size if bw else None
        targets.append(_target("decode: ours ÷ in-process Llama", _ratio(ours, inproc), ">=", 0.95))
        frac = ours * size / (bw * 1e9) if ours and bw else None
        dec["inproc_roofline_fraction"] = inproc * size / (bw * 1e9) if inproc and bw else None
        targets.append(
            _target(
                "decode: ours ÷ roofline (bytes×tok/s÷GB/s)",
                frac,
                ">=",
                0.70,
                note=f"in-process Llama reaches {dec['inproc_roofline_fraction'] or 0:.2f}",
            )
        )
        overhead = (1 / ours - 1 / inproc) * 1000 if ours and inproc else None
        targets.append(_target("decode: server overhead per token", overhead, "<=", 1.5, unit="ms"))
    conc = res.get("concurrency")
    if conc and conc.get(OURS):
        ours_loads = conc[OURS]
        k = 8 if _at_load(ours_loads, 8) else max(load["clients"] for load in ours_loads)
        one, many = _at_load(ours_loads, 1), _at_load(ours_loads, k)
        scaling = _ratio(many["aggregate_tok_s"] if many else None, one["aggregate_tok_s"] if one else None)
        targets.append(_target(f"concurrency: ours {k} clients ÷ 1 client (aggregate)", scaling, ">=", 1.25, floor=1.0))
        theirs = _at_load(conc.get(THEIRS), k)
        if theirs and many:
            targets.append(
                _target(
                    f"concurrency: TTFT p95 at {k} clients ours ÷ theirs",
                    _ratio(many["ttft_p95_s"], theirs["ttft_p95_s"]),
                    "<=",
                    0.25,
                )
            )
            targets.append(
                _target(
                    f"concurrency: aggregate at {k} clients ours ÷ theirs",
                    _ratio(many["aggregate_tok_s"], theirs["aggregate_tok_s"]),
                    ">=",
                    1.2,
                )
            )
    pre = res.get("prefill")
    if pre and pre.get(OURS):
        ours_pre = pre[OURS]
        note = "" if ours_pre.get("a_overlapped_b_prefill") else "stream A ended before B's first token"
        theirs_pre = pre.get(THEIRS) or {}
        if theirs_pre.get("b_ttft_s") is not None:
            note = (note + "; " if note else "") + f"theirs: B waited {theirs_pre['b_ttft_s']:.2f} s for its 1st token"
        targets.append(
            _target(
                "chunked prefill: longest gap of stream A",
                ours_pre.get("a_max_gap_during_b_prefill_s"),
                "<=",
                1.5,
                unit="s",
                note=note,
            )
        )
    pfx = res.get("prefix")
    if pfx and pfx.get(OURS):
        p = pfx[OURS]
        hit = p.get("hit_rate")
        note = f"hit rate {hit:.0%} ({p.get('hit_rate_basis')})" if hit is not None else "no prefix-cache metric"
        targets.append(_target("prefix cache: cold TTFT ÷ warm TTFT", p.get("cold_over_warm"), ">=", 40.0, note=note))
        if "1.5b" in res["meta"]["model"].lower():
            targets.append(
                _target("prefix cache: warm TTFT (Qwen 1.5B)", p.get("warm_ttft_median_s"), "<=", 0.35, unit="s")
            )
    _flag_contention(targets, res.get("contention", []))
    return targets


_STEP_OF_TARGET = {
    "decode": "decode",
    "concurrency": "concurrency",
    "chunked prefill": "prefill",
    "prefix cache": "prefix",
}


def _flag_contention(targets: list[dict[str, Any]], contention: list[dict[str, Any]]) -> None:
    """A target measured while other processes took CPU gets a note: its verdict may be the machine's."""
    for t in targets:
        step = _STEP_OF_TARGET.get(t["name"].split(":", 1)[0])
        loads = [c["foreign_cores"] for c in contention if step and c["step"].startswith(step) and c.get("kept", True)]
        if loads and max(loads) > CONTENDED_CORES:
            msg = f"CONTENDED: other processes took up to {max(loads):.2f} cores"
            t["note"] = f"{msg}; {t['note']}" if t["note"] else msg
            t["contended"] = True


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def render_table(res: dict[str, Any]) -> str:
    lines: list[str] = []
    meta = res["meta"]
    lines.append(
        f"inhouse benchmark — {meta['model']} ({meta['model_bytes'] / 1e6:.0f} MB) on {meta['cpu']}, "
        f"{meta['cores']} cores, {'quick' if meta['quick'] else 'full'} run"
    )
    for b in res.get("bandwidth", []):
        lines.append(
            f"  read bandwidth ({b['when']}): {b['multi_thread_gb_s']:.1f} GB/s with {b['threads']} threads, "
            f"{b['single_thread_gb_s']:.1f} GB/s with 1"
        )
    dec = res.get("decode")
    if dec:
        lines.append("")
        lines.append("single-stream decode tok/s             in-process Llama | inhouse | llama_cpp.server | roofline")
        for label, suffix in (("best of N", ""), ("median", "_median")):
            lines.append(
                f"  {label:38s}{_fmt(dec.get('inproc_tok_s' + suffix), 1):>16s} | "
                f"{_fmt(dec.get('ours_tok_s' + suffix), 1):>7s} | "
                f"{_fmt(dec.get('theirs_tok_s' + suffix), 1):>16s} | {_fmt(dec.get('roofline_tok_s'), 0):>8s}"
            )
    conc = res.get("concurrency")
    if conc:
        lines.append("")
        lines.append("concurrency   server            clients  agg tok/s  TTFT p50  TTFT p95  ITL p50  ITL p95 errors")
        for side, label in ((OURS, "inhouse"), (THEIRS, "llama_cpp.server")):
            for load in conc.get(side) or []:
                lines.append(
                    " " * 14 + f"{label:17s} {load['clients']:>7d}  {_fmt(load['aggregate_tok_s'], 1):>9s}"
                    f"  {_fmt(load['ttft_p50_s']):>8s}  {_fmt(load['ttft_p95_s']):>8s}"
                    f"  {_fmt(load['itl_p50_s'], 3):>7s}  {_fmt(load['itl_p95_s'], 3):>7s}"
                    f" {len(load['errors']):>6d}"
                )
    pre = res.get("prefill")
    if pre:
        lines.append("")
        lines.append("chunked prefill   server            B prompt  B TTFT  A gap before  A max gap during B prefill")
        for side, label in ((OURS, "inhouse"), (THEIRS, "llama_cpp.server")):
            p = pre.get(side)
            if p:
                n_prompt = p["b_prompt_tokens"] or p.get("b_prompt_tokens_text")
                no_overlap = "" if p["a_overlapped_b_prefill"] else "  (A ended before B's 1st token)"
                lines.append(
                    " " * 18 + f"{label:17s} {_fmt(n_prompt):>8s}  {_fmt(p['b_ttft_s']):>6s}"
                    f"  {_fmt(p['a_gap_before_b_median_s'], 3):>12s}  "
                    f"{_fmt(p['a_max_gap_during_b_prefill_s'], 3):>10s}{no_overlap}"
                )
    pfx = res.get("prefix")
    if pfx:
        lines.append("")
        lines.append("prefix cache   server            prompt  cold TTFT  warm TTFT  cold÷warm  hit rate")
        for side, label in ((OURS, "inhouse"), (THEIRS, "llama_cpp.server")):
            p = pfx.get(side)
            if p:
                hr = p.get("hit_rate")
                lines.append(
                    " " * 15 + f"{label:17s} {_fmt(p['prompt_tokens']):>6s}  {_fmt(p['cold_ttft_s'], 3):>9s}"
                    f"  {_fmt(p['warm_ttft_median_s'], 3):>9s}  {_fmt(p['cold_over_warm'], 1):>9s}"
                    f"  {'—' if hr is None else f'{hr:.0%}':>8s}"
                )
    busy = [c for c in res.get("contention", []) if c["foreign_cores"] > CONTENDED_CORES and c.get("kept", True)]
    if busy:
        lines.append("")
        lines.append(f"contention: other processes used > {CONTENDED_CORES} cores during (numbers suspect):")
        for c in busy:
            lines.append(f"  {c['step']}: {c['foreign_cores']:.2f} cores over {c['wall_s']:.0f} s")
    lines.append("")
    lines.append("targets")
    for t in res.get("targets", []):
        lines.append(
            f"  [{t['verdict']:4s}] {t['name']}: {_fmt(t['value'], 3)} {t['unit']} "
            f"(goal {t['op']} {t['goal']}){'  — ' + t['note'] if t['note'] else ''}"
        )
    for err in res.get("errors", []):
        lines.append(f"  [ERROR] {err}")
    return "\n".join(lines)


def write_json(res: dict[str, Any], path: Path) -> None:
    write_results(res, path)


def pyplot() -> Any:
    """matplotlib's pyplot drawing into files (the Agg backend: servers have no display), imported on first use:
    the charts' library is in the optional bench extra."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, *, dpi: int = 110) -> Path:
    """Lay ``fig`` out, write it to ``path`` (its folder made) and free it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def write_chart(res: dict[str, Any], path: Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    fig.suptitle(f"inhouse vs llama-cpp-python — {res['meta']['model']} — {res['meta']['started']}")
    colors = {OURS: "tab:blue", THEIRS: "tab:orange"}
    labels = {OURS: "inhouse", THEIRS: "llama_cpp.server"}

    ax = axes[0][0]
    dec = res.get("decode") or {}
    names = ["in-process Llama", "inhouse", "llama_cpp.server"]
    vals = [dec.get("inproc_tok_s") or 0, dec.get("ours_tok_s") or 0, dec.get("theirs_tok_s") or 0]
    ax.bar(names, vals, color=["tab:gray", colors[OURS], colors[THEIRS]])
    if dec.get("roofline_tok_s"):
        ax.axhline(dec["roofline_tok_s"] * 0.7, color="red", ls="--", label="70% of roofline")
        ax.legend()
    ax.set_title("single-stream decode")
    ax.set_ylabel("tok/s")

    conc = res.get("concurrency") or {}
    for side in (OURS, THEIRS):
        loads = conc.get(side) or []
        xs = [load["clients"] for load in loads]
        axes[0][1].plot(
            xs, [load["aggregate_tok_s"] or 0 for load in loads], "o-", color=colors[side], label=labels[side]
        )
        axes[0][2].plot(
            xs,
            [load["ttft_p95_s"] or 0 for load in loads],
            "o-",
            color=colors[side],
            label=f"{labels[side]} p95",
        )
        axes[0][2].plot(
            xs,
            [load["ttft_p50_s"] or 0 for load in loads],
            "o--",
            color=colors[side],
            alpha=0.5,
            label=f"{labels[side]} p50",
        )
        axes[1][0].plot(
            xs,
            [(load["itl_p95_s"] or 0) * 1000 for load in loads],
            "o-",
            color=colors[side],
            label=f"{labels[side]} p95",
        )
        axes[1][0].plot(
            xs,
            [(load["itl_p50_s"] or 0) * 1000 for load in loads],
            "o--",
            color=colors[side],
            alpha=0.5,
            label=f"{labels[side]} p50",
        )
    for ax, title, ylabel in (
        (axes[0][1], "aggregate generated tok/s", "tok/s"),
        (axes[0][2], "time to first token", "s"),
        (axes[1][0], "inter-token latency", "ms"),
    ):
        ax.set_title(title)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(ylabel)
        if any(conc.get(side) for side in (OURS, THEIRS)):  # a run of some scenarios only (--only decode) leaves
            ax.set_xscale("log", base=2)  # the others empty, and a log scale over no data fails the whole chart
            ax.legend(fontsize=8)
    if any(conc.get(side) for side in (OURS, THEIRS)):
        axes[0][2].set_yscale("log")

    ax = axes[1][1]
    pre = res.get("prefill") or {}
    for side in (OURS, THEIRS):
        p = pre.get(side)
        if not p:
            continue
        t = p["a_token_times_s"]
        ax.plot(
            t[1:],
            [(b - a) * 1000 for a, b in itertools.pairwise(t)],
            ".-",
            color=colors[side],
            label=f"{labels[side]}: stream A gaps",
        )
        ax.axvline(p["b_sent_rel_s"], color=colors[side], ls=":")
        ax.axvline(p["b_first_rel_s"], color=colors[side], ls="--")
    ax.set_title("stream A while a ~1.5k-token prompt arrives (: sent, -- 1st token)")
    ax.set_xlabel("s since A was sent")
    ax.set_ylabel("gap to previous token (ms)")
    if any(pre.get(side) for side in (OURS, THEIRS)):
        ax.set_yscale("log")
        ax.legend(fontsize=8)

    ax = axes[1][2]
    pfx = res.get("prefix") or {}
    xs_labels, cold, warm = [], [], []
    for side in (OURS, THEIRS):
        p = pfx.get(side)
        if p:
            xs_labels.append(labels[side])
            cold.append(p["cold_ttft_s"] or 0)
            warm.append(p["warm_ttft_median_s"] or 0)
    if xs_labels:
        idx = range(len(xs_labels))
        ax.bar([i - 0.2 for i in idx], cold, width=0.4, label="cold", color="tab:red")
        ax.bar([i + 0.2 for i in idx], warm, width=0.4, label="warm (same prefix)", color="tab:green")
        ax.set_xticks(list(idx), xs_labels)
        ax.set_yscale("log")
        ax.legend(fontsize=8, loc="upper center")
    ax.set_title("prefix cache: TTFT of a RAG request")
    ax.set_ylabel("s")

    save_figure(fig, path, dpi=90)


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.report RESULT.json``: recompute the targets, print the table, redraw the PNG."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__)
    p.add_argument("result", type=Path)
    args = p.parse_args(argv)
    res = json.loads(args.result.read_text())
    res["targets"] = compute_targets(res)
    write_json(res, args.result)
    write_chart(res, args.result.parent / (args.result.name.removesuffix(".json") + ".png"))
    print(render_table(res))


if __name__ == "__main__":
    main()
