"""``inhouse tune``: detect the hardware, sweep the settings that matter on it, pick by a stated objective,
write a tuned profile and a before/after report.

The search is coordinate descent, not a cartesian grid: axes are swept one at a time in order of expected
effect (weight format first: on two cores it decides whether batching pays at all), each keeping the best
value found so far for the others. A change is kept only when it beats the incumbent by ``min_gain`` (3 %),
so noise on a shared machine does not wander the settings away from the defaults for nothing.

**Objective** (default): the highest aggregate tokens/s at the expected concurrency, among settings whose
single-stream inter-token latency p95 stays under a bound (``--itl-p95-bound-ms``; by default 1.5 × the
p95 of the default settings, so tuning for throughput never makes one user's stream much choppier) and that
lose no more than ``max_loss`` (5 %) of the default's single-stream decode or prefill tokens/s: aggregate is
never bought with what one user waits for (a prompt's first token, a stream's pace). 5 % is above the
run-to-run noise of best-of-two measurements here (2-4 %) and below any change worth having.

**Weight paths** come first: every path the hardware probe proved (``amx`` where AMX executes, ``repack``,
``plain``; see docs/hardware.md) is measured, starting from the one ``auto`` resolves to, and the profile
records which won and why (``reason``).

The final before/after figures are measured again at the end, default and tuned alternately, so both sides
see the same machine state.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from inhouse.config import EngineSettings
from inhouse.errors import InvalidRequest
from inhouse.hardware.cpu import Bandwidth, CpuInfo
from inhouse.models.registry import MAX_NAME, ModelRegistry
from inhouse.models.spec import ModelSpec
from inhouse.models.tuning.measure import Measure, Measurement, Workload
from inhouse.models.tuning.profile import ProfileStore, TunedProfile, WeightsVariant

# Formats offered by default: as precise as any packaged model's weights (Q4_x → Q8_0 loses nothing that
# the source still had), and often faster per token in a batch. Lower-precision formats are opt-in.
DEFAULT_FORMATS: tuple[str, ...] = ("q8_0",)


@dataclass(frozen=True)
class TuneOptions:
    concurrency: int = 8
    budget_s: float = 600.0
    itl_p95_bound_ms: float | None = None  # None: 1.5 × the default settings' single-stream p95
    formats: tuple[str, ...] = DEFAULT_FORMATS
    repeats: int = 2
    min_gain: float = 0.03
    max_loss: float = 0.05  # of the default's decode or prefill tok/s a candidate may lose
    weight_paths: tuple[str, ...] = ()  # the weight paths the probe proved (empty: keep the default's)

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 64:
            raise InvalidRequest(f"--concurrency must be between 1 and 64, got {self.concurrency}.")
        if self.budget_s <= 0:
            raise InvalidRequest("--budget-s must be positive.")
        if self.itl_p95_bound_ms is not None and self.itl_p95_bound_ms <= 0:
            raise InvalidRequest("--itl-p95-bound-ms must be positive.")


@dataclass(frozen=True)
class Candidate:
    engine: dict[str, Any]  # EngineSettings overrides (every ENGINE_KEYS value, explicit)
    weights: str | None = None  # a requantized format, or None for the model's own file

    def label(self) -> str:
        w = self.weights or "original"
        e = self.engine
        buffers = f"buffers={e['weight_buffers']} " if "weight_buffers" in e else ""
        return (f"{buffers}weights={w} threads={e['n_threads']}/{e['n_threads_batch']} "
                f"batch={e['step_token_budget']}/{e['n_ubatch']} chunk={e['prefill_chunk']} "
                f"running={e['max_running']} fa={'on' if e['flash_attn'] else 'off'} kv={e['kv_type']}")


@dataclass(frozen=True)
class Trial:
    axis: str
    candidate: Candidate
    measurement: Measurement
    score: float
    kept: bool
    elapsed_s: float
    refused: str = ""  # why a candidate was not allowed (ITL bound, decode or prefill loss)


@dataclass
class TuneResult:
    spec: ModelSpec
    cpu: CpuInfo
    bandwidth: Bandwidth
    options: TuneOptions
    itl_bound_ms: float
    default: Measurement
    tuned: Measurement
    chosen: Candidate
    profile: TunedProfile
    trials: list[Trial] = field(default_factory=list)
    budget_exhausted: bool = False
    elapsed_s: float = 0.0
    profile_path: Path | None = None
    report_paths: tuple[Path, ...] = ()


Progress = Callable[[str, Trial | None], None]


def _quiet(message: str, trial: Trial | None) -> None:
    pass


def default_candidate(settings: EngineSettings, physical_cores: int) -> Candidate:
    return Candidate(engine={
        "n_threads": settings.n_threads or physical_cores,
        "n_threads_batch": settings.n_threads_batch or physical_cores,
        "step_token_budget": settings.step_token_budget,
        "n_ubatch": min(settings.n_ubatch, settings.step_token_budget),
        "prefill_chunk": settings.prefill_chunk,
        "max_running": settings.max_running,
        "flash_attn": settings.flash_attn,
        "kv_type": settings.kv_type,
        "weight_buffers": settings.weight_buffers,
    })


def axes(cpu: CpuInfo, options: TuneOptions, base: Candidate) -> list[tuple[str, list[dict[str, Any]]]]:
    """The sweep, in order. Each value is a partial override of the candidate (``weights`` included)."""
    threads = list(range(1, cpu.physical_cores + 1))
    if cpu.smt:
        threads.append(cpu.logical_cpus)  # measured, not assumed: SMT rarely helps matrix kernels
    c = options.concurrency
    paths = [p for p in options.weight_paths if p != base.engine.get("weight_buffers")]
    return [
        ("weight buffers", [{"weight_buffers": p} for p in paths]),
        ("weights", [{"weights": None}] + [{"weights": f} for f in options.formats]),
        ("decode threads", [{"n_threads": t} for t in threads]),
        ("prefill threads", [{"n_threads_batch": t} for t in threads]),
        ("attention / KV cache", [{"flash_attn": False, "kv_type": "f16"}, {"flash_attn": True, "kv_type": "f16"},
                                  {"flash_attn": True, "kv_type": "q8_0"}]),
        ("batch / ubatch", [{"step_token_budget": b, "n_ubatch": u}
                            for b, u in ((256, 256), (512, 512), (512, 128), (1024, 512))]),
        ("prefill chunk", [{"prefill_chunk": n} for n in (32, 64, 128, 256)]),
        ("parallel sequences", [{"max_running": n}
                                for n in sorted({max(1, c // 2), c, base.engine["max_running"]})]),
    ]


def _with(candidate: Candidate, change: dict[str, Any]) -> Candidate:
    change = dict(change)
    weights = change.pop("weights", candidate.weights)
    return Candidate(engine={**candidate.engine, **change}, weights=weights)


def score(m: Measurement, itl_bound_ms: float) -> float:
    """The objective: aggregate tokens/s, or -inf when one stream's p95 gap breaks the bound."""
    if not math.isfinite(m.itl_p95_ms) or m.itl_p95_ms > itl_bound_ms:
        return -math.inf
    return m.aggregate_tok_s


def guard(m: Measurement, default: Measurement, itl_bound_ms: float, max_loss: float) -> str:
    """Why ``m`` may not be chosen over the default ('' when it may): the ITL bound, or single-stream
    decode or prefill more than ``max_loss`` below the default's."""
    if not math.isfinite(m.itl_p95_ms) or m.itl_p95_ms > itl_bound_ms:
        return f"ITL p95 {m.itl_p95_ms:.1f} ms > {itl_bound_ms:.1f} ms"
    for label, got, ref in (("decode", m.decode_tok_s, default.decode_tok_s),
                            ("prefill", m.prefill_tok_s, default.prefill_tok_s)):
        if ref > 0 and got < (1 - max_loss) * ref:
            return f"{label} {got / ref:.2f}× the default (more than {max_loss:.0%} lost)"
    return ""


def roofline_fraction(weight_bytes: int, decode_tok_s: float, bandwidth_gb_s: float) -> float:
    """Share of the memory bandwidth one decoding stream uses (each token reads every weight once)."""
    return weight_bytes * decode_tok_s / (bandwidth_gb_s * 1e9) if bandwidth_gb_s > 0 else math.nan


def variant_name(model: str, fmt: str) -> str:
    """``model@fmt``: the name a re-quantized variant is registered under. A model name too long for that keeps its
    first characters and a short digest of the whole name (two long names sharing a prefix stay apart)."""
    name = f"{model}@{fmt}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(model.encode()).hexdigest()[:8]
    return f"{model[:MAX_NAME - len(fmt) - len(digest) - 2]}-{digest}@{fmt}"


class Tuner:
    """Runs the sweep for one model. ``measure`` is the seam: tests pass a synthetic machine."""

    def __init__(self, registry: ModelRegistry, profiles: ProfileStore, settings: EngineSettings, *,
                 measure: Measure, quantize: Callable[[Path, Path, str], None],
                 clock: Callable[[], float] = time.monotonic,
                 wait_quiet: Callable[[], float] = lambda: 0.0) -> None:
        self._registry = registry
        self._profiles = profiles
        self._settings = settings
        self._measure = measure
        self._quantize = quantize
        self._clock = clock
        self._wait_quiet = wait_quiet  # before each measurement: other work on a shared machine skews it
        self._variants: dict[str, tuple[ModelSpec, Path]] = {}

    def variant(self, spec: ModelSpec, fmt: str, progress: Progress = _quiet) -> tuple[ModelSpec, Path]:
        """The model re-quantized to ``fmt``: a new file in the model cache named by the source's sha256,
        registered as ``name@fmt`` with its own sha256 (made once, reused by later runs of the same weights)."""
        if fmt in self._variants:
            return self._variants[fmt]
        name = variant_name(spec.name, fmt)
        assert spec.path is not None
        dst = (self._registry.cache_dir / "variants" / f"{spec.sha256 or spec.name}.{fmt}.gguf").resolve()
        if name in self._registry.names():
            vspec = self._registry.resolve(name)
            # Reused only if made from these weights: after `name` is re-added with other weights, the old
            # variant (named by the old sha256) would be measured and pinned in the new weights' profile.
            if vspec.present and vspec.path == dst:
                self._variants[fmt] = (vspec, dst)
                return self._variants[fmt]
            self._registry.remove(name)  # its file is gone, or made from other weights: make it again
            self._drop_variant_file(vspec.path, keep=dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        progress(f"re-quantizing {spec.name} to {fmt}", None)
        self._quantize(spec.path, dst, fmt)
        vspec = self._registry.add(dst, name, description=f"{spec.name} re-quantized to {fmt} by inhouse tune.")
        assert vspec.path is not None
        self._variants[fmt] = (vspec, vspec.path)
        return self._variants[fmt]

    def _drop_variant_file(self, path: Path | None, *, keep: Path) -> None:
        """Delete a variant file this tuner made (under ``variants/``) that no registered model uses any more: the
        old weights' variant is as large as a model, and nothing would ever delete it."""
        if path is None or path == keep or path.parent != keep.parent or not path.is_file():
            return
        if any(self._registry.resolve(n).path == path for n in self._registry.names()):
            return  # the old weights are still registered under another name, with this variant
        with contextlib.suppress(OSError):  # best effort: the new variant matters, not the old file
            path.unlink()

    def _n_ctx(self, spec: ModelSpec) -> int:
        n_ctx = self._settings.n_ctx
        return min(n_ctx, spec.context_length) if spec.context_length else n_ctx

    def _run(self, spec: ModelSpec, cand: Candidate, work: Workload, progress: Progress) -> Measurement:
        path = spec.path
        name = spec.name
        if cand.weights is not None:
            vspec, path = self.variant(spec, cand.weights, progress)
            name = vspec.name
        assert path is not None
        es = EngineSettings.model_validate({**self._settings.model_dump(), **cand.engine})
        self._wait_quiet()
        return self._measure(name, path, es, self._n_ctx(spec), work)

    def tune(self, name: str, cpu: CpuInfo, bandwidth: Bandwidth, options: TuneOptions,
             progress: Progress = _quiet) -> TuneResult:
        spec = self._registry.resolve(name, require_present=True)
        if spec.sha256 is None or spec.path is None:
            raise InvalidRequest(f"Model '{name}' has no pinned sha256; re-add it before tuning.")
        start = self._clock()
        work = Workload(concurrency=options.concurrency, repeats=options.repeats)
        base = default_candidate(self._settings, cpu.physical_cores)
        progress(f"measuring the default settings ({base.label()})", None)
        default_m = self._run(spec, base, work, progress)
        bound = options.itl_p95_bound_ms or 1.5 * default_m.itl_p95_ms
        best, best_m, best_score = base, default_m, score(default_m, bound)
        trials = [Trial("default", base, default_m, best_score, True, self._clock() - start)]
        reasons: list[str] = []
        progress("default", trials[0])
        exhausted = False
        for axis, values in axes(cpu, options, base):
            for change in values:
                cand = _with(best, change)
                if cand == best or any(t.candidate == cand for t in trials):
                    continue
                # Keep room for the two confirmation runs at the end (about two trials' time).
                elapsed = self._clock() - start
                if elapsed + 2 * elapsed / len(trials) > options.budget_s:
                    exhausted = True
                    break
                m = self._run(spec, cand, work, progress)
                refused = guard(m, default_m, bound, options.max_loss)
                s = -math.inf if refused else score(m, bound)
                kept = s > best_score * (1 + options.min_gain) if math.isfinite(best_score) else s > best_score
                trial = Trial(axis, cand, m, s, kept, self._clock() - start, refused)
                trials.append(trial)
                progress(axis, trial)
                if kept:
                    reasons.append(_why(axis, change, m, best_m, default_m))
                    best, best_m, best_score = cand, m, s
            if exhausted:
                progress(f"budget of {options.budget_s:.0f} s used up; keeping the best found so far", None)
                break
        # Before/after, measured back to back (default, tuned, default, tuned) on the same machine state.
        progress("confirming: default and tuned measured alternately", None)
        final_default, final_tuned = default_m, best_m
        if best != base:
            a1 = self._run(spec, base, work, progress)
            b1 = self._run(spec, best, work, progress)
            final_default, final_tuned = _best_of(a1, default_m), _best_of(b1, best_m)
            refused = guard(final_tuned, final_default, bound, options.max_loss)
            if refused:  # the back-to-back confirmation overrules the sweep: keep the default
                reasons = [f"the sweep's best ({best.label()}) was refused on confirmation: {refused}"]
                best, final_tuned = base, final_default
        if not reasons:
            reasons = ["no candidate beat the default by the minimum gain without losing decode or prefill"]
        if options.weight_paths:
            reasons.append(f"weight paths the hardware probe proved: {', '.join(options.weight_paths)}")
        profile = self._profile(spec, cpu, options, bound, best, final_default, final_tuned, "; ".join(reasons))
        return TuneResult(spec=spec, cpu=cpu, bandwidth=bandwidth, options=options, itl_bound_ms=bound,
                          default=final_default, tuned=final_tuned, chosen=best, profile=profile, trials=trials,
                          budget_exhausted=exhausted, elapsed_s=self._clock() - start)

    def _profile(self, spec: ModelSpec, cpu: CpuInfo, options: TuneOptions, bound: float, best: Candidate,
                 default_m: Measurement, tuned_m: Measurement, reason: str = "") -> TunedProfile:
        weights = None
        if best.weights is not None:
            vspec, _ = self._variants[best.weights]
            assert vspec.sha256 is not None
            weights = WeightsVariant(name=vspec.name, sha256=vspec.sha256, format=best.weights)
        assert spec.sha256 is not None
        return TunedProfile(
            model=spec.name, model_sha256=spec.sha256, cpu_signature=cpu.signature, cpu=cpu.summary(),
            created_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            engine=dict(best.engine), weights=weights,
            objective=(f"max aggregate tok/s at concurrency {options.concurrency} with single-stream "
                       f"ITL p95 <= {bound:.1f} ms and decode, prefill >= {1 - options.max_loss:.2f}x the default"),
            measured={"default": default_m.to_dict(), "tuned": tuned_m.to_dict()}, reason=reason,
        )

    def save(self, result: TuneResult) -> TuneResult:
        """Write the profile (and, when a variant won, a copy keyed by the variant's digest so that serving
        ``name@fmt`` directly is tuned too) plus the report as Markdown and JSON next to it."""
        path = self._profiles.save(result.profile)
        if result.profile.weights is not None:
            w = result.profile.weights
            self._profiles.save(replace(result.profile, model=w.name, model_sha256=w.sha256, weights=None))
        stem = path.with_suffix("")
        md, js = stem.with_name(stem.name + ".report.md"), stem.with_name(stem.name + ".report.json")
        data = report_dict(result, self._weight_bytes(result))
        js.write_text(json.dumps(data, indent=2), encoding="utf-8")
        md.write_text(report_markdown(data), encoding="utf-8")
        result.profile_path, result.report_paths = path, (md, js)
        return result

    def _weight_bytes(self, result: TuneResult) -> tuple[int, int]:
        default_bytes = result.spec.size_bytes
        tuned_bytes = default_bytes
        if result.chosen.weights is not None:
            _, vpath = self._variants[result.chosen.weights]
            tuned_bytes = vpath.stat().st_size
        return default_bytes, tuned_bytes


def _why(axis: str, change: dict[str, Any], m: Measurement, incumbent: Measurement, default: Measurement) -> str:
    what = ", ".join(f"{k}={v}" for k, v in change.items())
    return (f"{axis}: {what} (aggregate {m.aggregate_tok_s / incumbent.aggregate_tok_s:.2f}x the incumbent; "
            f"decode {_ratio(m.decode_tok_s, default.decode_tok_s)}, prefill "
            f"{_ratio(m.prefill_tok_s, default.prefill_tok_s)} the default)")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _best_of(a: Measurement, b: Measurement) -> Measurement:
    return Measurement(
        decode_tok_s=max(a.decode_tok_s, b.decode_tok_s), prefill_tok_s=max(a.prefill_tok_s, b.prefill_tok_s),
        aggregate_tok_s=max(a.aggregate_tok_s, b.aggregate_tok_s), itl_p95_ms=min(a.itl_p95_ms, b.itl_p95_ms),
        aggregate_itl_p95_ms=min(a.aggregate_itl_p95_ms, b.aggregate_itl_p95_ms), load_s=min(a.load_s, b.load_s),
        concurrency=a.concurrency, foreign_load_cores=max(a.foreign_load_cores, b.foreign_load_cores),
    )


def report_dict(result: TuneResult, weight_bytes: tuple[int, int]) -> dict[str, Any]:
    bw = result.bandwidth.gb_s

    def side(m: Measurement, nbytes: int) -> dict[str, Any]:
        return {**m.to_dict(), "weight_bytes": nbytes,
                "roofline_fraction": roofline_fraction(nbytes, m.decode_tok_s, bw)}

    d, t = side(result.default, weight_bytes[0]), side(result.tuned, weight_bytes[1])
    ratios = {k: (t[k] / d[k] if d[k] else math.nan)
              for k in ("decode_tok_s", "prefill_tok_s", "aggregate_tok_s")}
    return {
        "model": result.spec.name, "model_sha256": result.spec.sha256, "cpu": result.cpu.to_dict(),
        "bandwidth_gb_s": bw, "concurrency": result.options.concurrency, "itl_p95_bound_ms": result.itl_bound_ms,
        "objective": result.profile.objective, "chosen": result.chosen.label(), "reason": result.profile.reason,
        "profile_engine": result.profile.engine,
        "weights_variant": result.profile.weights.name if result.profile.weights else None,
        "default": d, "tuned": t, "tuned_over_default": ratios,
        "budget_exhausted": result.budget_exhausted, "elapsed_s": result.elapsed_s,
        "trials": [{"axis": tr.axis, "candidate": tr.candidate.label(), "score": tr.score if
                    math.isfinite(tr.score) else None, "kept": tr.kept, "refused": tr.refused,
                    "elapsed_s": tr.elapsed_s,
                    **tr.measurement.to_dict()} for tr in result.trials],
    }


def report_markdown(data: dict[str, Any]) -> str:
    d, t, r = data["default"], data["tuned"], data["tuned_over_default"]
    c = data["concurrency"]
    rows = [
        ("decode tok/s (1 stream)", "decode_tok_s", "{:.1f}"),
        ("prefill tok/s", "prefill_tok_s", "{:.1f}"),
        (f"aggregate tok/s ({c} streams)", "aggregate_tok_s", "{:.1f}"),
        ("ITL p95, 1 stream (ms)", "itl_p95_ms", "{:.1f}"),
        (f"ITL p95, {c} streams (ms)", "aggregate_itl_p95_ms", "{:.1f}"),
        ("roofline fraction (decode)", "roofline_fraction", "{:.2f}"),
        ("weights (MB)", "weight_bytes", "{:.0f}"),
    ]
    lines = [
        f"# Tuning report: {data['model']}", "",
        f"- CPU: {data['cpu']['model_name']} (signature `{data['cpu']['signature']}`), "
        f"{data['cpu']['physical_cores']} cores, flags: {', '.join(data['cpu']['flags']) or 'none'}",
        f"- Memory read bandwidth: {data['bandwidth_gb_s']:.1f} GB/s",
        f"- Objective: {data['objective']}",
        f"- Chosen: {data['chosen']}",
        f"- Why: {data.get('reason', '')}",
        f"- Sweep: {len(data['trials'])} settings measured in {data['elapsed_s']:.0f} s"
        + (" (budget used up)" if data["budget_exhausted"] else ""), "",
        "| | default | tuned | tuned ÷ default |", "|---|---:|---:|---:|",
    ]
    for label, key, fmt in rows:
        dv, tv = d[key], t[key]
        if key == "weight_bytes":
            dv, tv = dv / 1e6, tv / 1e6
        ratio = f"{r[key]:.2f}×" if key in r and math.isfinite(r[key]) else ""
        lines.append(f"| {label} | {fmt.format(dv)} | {fmt.format(tv)} | {ratio} |")
    lines += ["", "## Sweep", "",
              "| axis | settings | aggregate tok/s | decode tok/s | prefill tok/s | ITL p95 ms | "
              "foreign load (cores) | kept |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    for tr in data["trials"]:
        kept = "yes" if tr["kept"] else (f"refused: {tr['refused']}" if tr.get("refused") else "")
        lines.append(f"| {tr['axis']} | {tr['candidate']} | {tr['aggregate_tok_s']:.1f} | "
                     f"{tr['decode_tok_s']:.1f} | {tr['prefill_tok_s']:.1f} | {tr['itl_p95_ms']:.1f} | "
                     f"{tr['foreign_load_cores']:.2f} | {kept} |")
    lines += ["", "Figures are the best of short repeated runs on a machine that may be shared; the default "
              "and tuned columns were re-measured back to back at the end of the sweep. Foreign load is the CPU "
              "other processes used during a measurement: above ~0.3 cores on a 2-core machine the figures of "
              "that row are unreliable (llama.cpp's threads wait for each other at every layer)."]
    return "\n".join(lines) + "\n"
