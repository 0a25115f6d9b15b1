"""``python -m benchmarks.logprobs``: what log-probabilities cost per decoded token, in the same run.

One in-process engine over llama.cpp (``engine/build.py``, the engine ``inhouse serve`` runs); one stream decodes
``--tokens`` tokens (``ignore_eos``, greedy) without log-probabilities, with ``logprobs=0`` and with
``top_logprobs=20``, alternating, ``--repeats`` times each; the table shows decode tokens/s (after the first token)
and the ratio to the plain runs. A request that does not ask is the plain run: the backend skips
``engine/logprobs.py`` entirely for it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import replace

from benchmarks.engine_process import served_settings
from inhouse.engine.build import build_llama_engine
from inhouse.engine.params import GenerationRequest, SamplingParams


async def _decode(engine: object, prompt: list[int], params: SamplingParams, rid: str) -> float:
    first: float | None = None
    n = 0
    async for delta in engine.generate(GenerationRequest(rid, prompt, params)):  # type: ignore[attr-defined]
        if delta.token_ids:
            n += len(delta.token_ids)
            if first is None:
                first = time.perf_counter()
                n = 0
    assert first is not None
    return n / (time.perf_counter() - first)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    from inhouse.cli.common import open_services, settings_from

    services = open_services(settings_from(None))
    try:
        spec = services.registry.resolve(args.model)
    finally:
        services.close()
    engine = build_llama_engine(args.model, spec.path, served_settings(), n_ctx=2048)  # type: ignore[arg-type]
    prompt = engine.tokenize("Write a long story about a lighthouse keeper.", add_special=True)
    base = SamplingParams(max_tokens=args.tokens, temperature=0.0, ignore_eos=True, top_k=0, top_p=1.0, min_p=0.0)
    variants = {"none": base, "logprobs=0": replace(base, logprobs=0), "top_logprobs=20": replace(base, logprobs=20)}
    rates: dict[str, list[float]] = {k: [] for k in variants}
    try:
        for r in range(args.repeats + 1):
            for name, params in variants.items():
                rate = asyncio.run(_decode(engine, prompt, params, f"req_bench_{r}_{name}"))
                if r:  # the first round warms up
                    rates[name].append(rate)
    finally:
        engine.close()
    plain = statistics.median(rates["none"])
    print(f"model {args.model}, {args.tokens} tokens, median of {args.repeats} alternating runs, one stream")
    print(f"{'variant':<18}{'decode tok/s':>14}{'vs none':>10}")
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"{name:<18}{med:>14.1f}{med / plain:>10.3f}   runs: {', '.join(f'{v:.1f}' for v in values)}")


if __name__ == "__main__":
    main()
