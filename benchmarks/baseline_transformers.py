"""The untuned baseline: the same GGUF run the way a user without inhouse would — Hugging Face
``transformers`` on PyTorch, FP32, on the CPU, greedy generation.

Runs in its own virtualenv (torch is never an inhouse dependency; see the ``bench-torch`` extra)::

    python3.11 -m venv .venv-bench && .venv-bench/bin/pip install torch==2.13.0 transformers gguf accelerate
    .venv-bench/bin/python -m benchmarks.baseline_transformers < job.json

Reads one JSON job on stdin and prints one JSON line. It imports nothing from inhouse, so the two sides share
only the prompts (texts) the job carries. transformers dequantizes the GGUF to FP32 on load (needs ``gguf``);
no network is touched (``HF_HUB_OFFLINE``).

Job: {"gguf": PATH, "decode_prompt": TEXT, "decode_tokens": N, "prefill_prompt": TEXT,
      "aggregate_prompts": [TEXT, ...], "aggregate_tokens": N, "repeats": R, "threads": T (0: torch default)}
Out: {"decode_tok_s", "prefill_tok_s", "aggregate_tok_s", "prefill_tokens", "load_s", "threads", "torch", ...}
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _Clock:
    """A generation streamer that only records when each new token arrives (the first ``put`` is the
    prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def run(job: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    threads = int(job.get("threads") or 0)
    if threads:
        torch.set_num_threads(threads)
    path = Path(job["gguf"])
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, torch_dtype=torch.float32)
    model.eval()
    load_s = time.perf_counter() - t0
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # batched decoder-only generation pads on the left
    greedy = {"do_sample": False, "pad_token_id": tok.pad_token_id}
    repeats = max(1, int(job.get("repeats", 2)))

    def generate(inputs: Any, n: int, streamer: Any = None) -> Any:
        with torch.inference_mode():
            return model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, streamer=streamer, **greedy)

    generate(tok("warm up", return_tensors="pt"), 2)
    decode, prefill, aggregate = 0.0, 0.0, 0.0
    n_prefill = 0
    for _ in range(repeats):
        clock = _Clock()
        generate(tok(job["decode_prompt"], return_tensors="pt"), int(job["decode_tokens"]), clock)
        if len(clock.times) > 1:
            decode = max(decode, (len(clock.times) - 1) / (clock.times[-1] - clock.times[0]))

        inputs = tok(job["prefill_prompt"], return_tensors="pt")
        n_prefill = int(inputs["input_ids"].shape[1])
        start = time.perf_counter()
        generate(inputs, 1)
        prefill = max(prefill, n_prefill / (time.perf_counter() - start))

        batch = tok(job["aggregate_prompts"], return_tensors="pt", padding=True)
        n_new = int(job["aggregate_tokens"])
        start = time.perf_counter()
        out = generate(batch, n_new)
        wall = time.perf_counter() - start
        generated = (out.shape[1] - batch["input_ids"].shape[1]) * out.shape[0]
        aggregate = max(aggregate, generated / wall)
    return {"decode_tok_s": decode, "prefill_tok_s": prefill, "aggregate_tok_s": aggregate,
            "prefill_tokens": n_prefill, "load_s": load_s, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "dtype": str(model.dtype), "concurrency": len(job["aggregate_prompts"])}


def main() -> None:
    job = json.loads(sys.stdin.read())
    print(json.dumps(run(job)), flush=True)


if __name__ == "__main__":
    main()
