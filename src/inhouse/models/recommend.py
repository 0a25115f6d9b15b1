"""``models.default = "auto"``: the best packaged model this machine runs well, chosen from the probe.

A new user's first answer should come from a model whose answers read as answers. The packaged models, best
answers first, are tried in turn; the first that fits both tests is served:

* **memory**: the machine's memory (or its cgroup limit) holds the weights 1.5 times over (extra-buffer
  copies, KV cache and compute buffers grow with the model) plus 2 GiB for the server, the embedding model
  and the OS. The report's figure is the one read now: ``HardwareProbe.cached`` reads memory again, because a
  container's limit is not part of the probe's cache key;
* **speed**: the predicted single-stream decode is at least ``MIN_DECODE_TOK_S``. Decoding reads every
  weight once per token, so it is bounded by read bandwidth ÷ weight bytes; inhouse reaches 0.81 of that
  bound on Qwen 1.5B here (docs/performance.md), 0.7 is used to stay on the safe side.

Without a probe answer (a command run before any ``serve`` or ``doctor`` on this machine), SmolLM2 — the
model every machine runs — is chosen, and the reason says so. Tests and CI name their model explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from inhouse.hardware.probe import ProbeReport
from inhouse.models.catalog import CATALOG, CatalogEntry

PREFERENCE: tuple[str, ...] = ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m")
FALLBACK = "smollm2-135m"
MIN_DECODE_TOK_S = 10.0  # about three times reading speed
DECODE_EFFICIENCY = 0.7
HEADROOM_BYTES = 2 * 2**30


@dataclass(frozen=True)
class ModelRecommendation:
    name: str
    reason: str
    predicted_decode_tok_s: float | None = None


def predicted_decode_tok_s(size_bytes: int, bandwidth_gb_s: float) -> float:
    return DECODE_EFFICIENCY * bandwidth_gb_s * 1e9 / size_bytes if size_bytes else 0.0


def memory_needed_bytes(size_bytes: int) -> int:
    return int(size_bytes * 1.5) + HEADROOM_BYTES


def recommend_model(report: ProbeReport | None,
                    catalog: tuple[CatalogEntry, ...] = CATALOG) -> ModelRecommendation:
    if report is None:
        return ModelRecommendation(FALLBACK, "no hardware probe answer yet (run `inhouse doctor`); "
                                             f"{FALLBACK} runs anywhere")
    entries = {e.name: e for e in catalog}
    mem_gb, bw = report.memory_total_bytes / 1e9, report.bandwidth_gb_s
    refused: list[str] = []
    for name in PREFERENCE:
        entry = entries.get(name)
        if entry is None:
            continue
        speed = predicted_decode_tok_s(entry.size_bytes, bw)
        need = memory_needed_bytes(entry.size_bytes)
        if report.memory_total_bytes < need:
            refused.append(f"{name} needs {need / 1e9:.1f} GB of memory, this machine has {mem_gb:.1f} GB")
        elif speed < MIN_DECODE_TOK_S and name != FALLBACK:
            refused.append(f"{name} would decode at ~{speed:.0f} tok/s (below {MIN_DECODE_TOK_S:.0f}) at "
                           f"{bw:.0f} GB/s")
        else:
            why = (f"the best packaged model this machine runs well: {mem_gb:.0f} GB memory, {bw:.0f} GB/s read "
                   f"bandwidth → ~{speed:.0f} tok/s predicted decode")
            if refused:
                why += "; " + "; ".join(refused)
            return ModelRecommendation(name, why, speed)
    return ModelRecommendation(FALLBACK, "; ".join(refused) or "no packaged model fits", None)
