"""The baseline: llama-cpp-python's high-level ``Llama`` decoding in-process.

Run as its own subprocess (``python -m benchmarks.inproc``) so its threads never compete with a server,
and so the harness process never loads llama.cpp itself. Reads a JSON job on stdin, prints one JSON line.

Jobs:
  {"op": "info", "model_path": P, "texts": {name: text}}
      -> {"eos_ids": [...], "token_counts": {name: n}}  (vocab only, fast)
  {"op": "decode", "model_path": P, "messages": [...], "max_tokens": N, "repeats": R,
   "n_ctx": C, "n_threads": T, "logit_bias": {id: bias} | null}
      -> {"runs": [{"n_tokens", "decode_tok_s", "ttft_s", "text_head"}], "load_s": s}
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

# Special tokens that end a chat turn in the catalog's model families (ChatML, Llama 3, plain EOS).
_END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>")


def _info(job: dict[str, Any]) -> dict[str, Any]:
    from llama_cpp import Llama

    llm = Llama(job["model_path"], vocab_only=True, verbose=False)
    eos = {llm.token_eos()}
    for marker in _END_MARKERS:
        toks = llm.tokenize(marker.encode(), add_bos=False, special=True)
        if len(toks) == 1:
            eos.add(toks[0])
    counts = {
        name: len(llm.tokenize(text.encode(), add_bos=False, special=False))
        for name, text in (job.get("texts") or {}).items()
    }
    return {"eos_ids": sorted(t for t in eos if t >= 0), "token_counts": counts}


def _decode(job: dict[str, Any]) -> dict[str, Any]:
    from llama_cpp import Llama

    t0 = time.perf_counter()
    threads = int(job.get("n_threads", 2))
    llm = Llama(
        job["model_path"],
        n_threads=threads,
        n_threads_batch=threads,
        n_ctx=int(job.get("n_ctx", 4096)),
        verbose=False,
    )
    load_s = time.perf_counter() - t0
    bias = {int(k): float(v) for k, v in (job.get("logit_bias") or {}).items()} or None
    runs = []
    # One untimed short run: pages the mmapped weights in, as the servers' warm-up request does.
    for _ in llm.create_chat_completion(job["messages"], max_tokens=4, temperature=0.0, stream=True):
        pass
    for _ in range(int(job["repeats"])):
        llm.reset()  # no prompt reuse between repeats: each run prefills the same way
        sent = time.perf_counter()
        times: list[float] = []
        pieces: list[str] = []
        stream = llm.create_chat_completion(
            job["messages"],
            max_tokens=int(job["max_tokens"]),
            temperature=0.0,
            top_p=1.0,
            repeat_penalty=1.0,
            stream=True,
            logit_bias=bias,
        )
        for chunk in stream:
            content = chunk["choices"][0]["delta"].get("content")  # type: ignore[index,union-attr]
            if content:
                times.append(time.perf_counter())
                pieces.append(str(content))
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None
        runs.append(
            {
                "n_tokens": len(times),
                "decode_tok_s": rate,
                "ttft_s": times[0] - sent if times else None,
                "text_head": "".join(pieces)[:200],
            }
        )
    return {"runs": runs, "load_s": load_s}


def main() -> None:
    job = json.loads(sys.stdin.read())
    ops = {"info": _info, "decode": _decode}
    out = ops[job["op"]](job)
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
