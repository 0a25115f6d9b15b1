"""The baseline: llama-cpp-python's high-level ``Llama`` decoding in-process.

Run as its own subprocess (``python -m benchmarks.inproc``) so its threads never compete with a server,
and so the harness process never loads llama.cpp itself. Reads a JSON job on stdin, prints one JSON line.

Jobs:
  {"op": "info", "model_path": P, "texts": {name: text}}
      -> {"eos_ids": [...], "token_counts": {name: n}}  (vocab only, fast)
  {"op": "decode", "model_path": P, "messages": [...], "max_tokens": N, "repeats": R,
   "n_ctx": C, "n_threads": T, "logit_bias": {id: bias} | null}
      -> {"runs": [{"n_tokens", "n_chunks", "decode_tok_s", "ttft_s", "text_head"}], "load_s": s,
          "rss_peak_bytes": n}   (tokens: evaluated between the first and the last content chunk, see token_rate)
  {"op": "prefill", "model_path": P, "messages": [...], "n_ctx": C, "n_threads": T}
      -> {"ttft_s": s, "prompt_tokens": n, "load_s": s, "rss_peak_bytes": n}   (after a short warm-up)
  {"op": "memory", "model_path": P, "n_ctx": C, "kv_types": ["f16", "q8_0"]}
      -> {"f16": {"kv_mib": x, "compute_mib": y}, ...}   (llama.cpp's own accounting, flash attention on)
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import time
from pathlib import Path
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
        evaluated: list[int] = []  # tokens llama.cpp had evaluated when each content chunk arrived
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
                evaluated.append(llm.n_tokens)
                pieces.append(str(content))
        runs.append(
            {
                "n_tokens": evaluated[-1] - evaluated[0] + 1 if evaluated else 0,
                "n_chunks": len(times),
                "tokens_source": "evaluated",
                "decode_tok_s": token_rate(times, evaluated),
                "ttft_s": times[0] - sent if times else None,
                "text_head": "".join(pieces)[:200],
            }
        )
    return {"runs": runs, "load_s": load_s, "rss_peak_bytes": _rss_peak()}


def token_rate(times: list[float], evaluated: list[int]) -> float | None:
    """Tokens per second between the first content chunk and the last, counted from the tokens llama.cpp
    evaluated in between (``Llama.n_tokens`` at each chunk), not from the chunks: ``Llama`` streams text, not
    tokens, and holds some back (a tail that may start a stop string, a partial UTF-8 character), so a run of
    64 tokens may arrive as 62 chunks, the last 40 of them at once at the end (Qwen2.5-7B's shape). Counting
    chunks undercounts the tokens by those merged; counting from the first chunk to the last assumes nothing
    about when the chunks in between arrive. The servers' rate counts usage tokens the same way."""
    if len(times) < 2 or times[-1] <= times[0] or evaluated[-1] <= evaluated[0]:
        return None
    return (evaluated[-1] - evaluated[0]) / (times[-1] - times[0])


def _rss_peak() -> int:
    """Peak resident memory of this process (VmHWM), bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _prefill(job: dict[str, Any]) -> dict[str, Any]:
    from llama_cpp import Llama

    threads = int(job.get("n_threads", 2))
    t0 = time.perf_counter()
    llm = Llama(job["model_path"], n_threads=threads, n_threads_batch=threads, n_ctx=int(job.get("n_ctx", 4096)),
                verbose=False)
    load_s = time.perf_counter() - t0
    llm.create_chat_completion([{"role": "user", "content": "Say hello."}], max_tokens=2, temperature=0.0)
    llm.reset()
    sent = time.perf_counter()
    out = llm.create_chat_completion(job["messages"], max_tokens=1, temperature=0.0)
    ttft = time.perf_counter() - sent
    return {"ttft_s": ttft, "prompt_tokens": out["usage"]["prompt_tokens"], "load_s": load_s,  # type: ignore[index]
            "rss_peak_bytes": _rss_peak()}


def _memory(job: dict[str, Any]) -> dict[str, Any]:
    """KV cache and compute buffer sizes as llama.cpp itself reports them when a context is created."""
    import llama_cpp
    from llama_cpp import Llama

    out: dict[str, Any] = {}
    for kv in job.get("kv_types", ["f16", "q8_0"]):
        ggml_type = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0}[kv]
        log = io.StringIO()
        with contextlib.redirect_stderr(log):
            llm = Llama(job["model_path"], n_ctx=int(job["n_ctx"]), n_threads=1, flash_attn=True,
                        type_k=ggml_type, type_v=ggml_type, verbose=True)
            del llm
        text = log.getvalue()
        kv_mib = re.findall(r"llama_kv_cache: size = *([\d.]+) MiB", text)
        compute = re.findall(r"CPU compute buffer size = *([\d.]+) MiB", text)
        out[kv] = {"kv_mib": float(kv_mib[0]) if kv_mib else None,
                   "compute_mib": float(compute[0]) if compute else None}
    return out


def main() -> None:
    job = json.loads(sys.stdin.read())
    ops = {"info": _info, "decode": _decode, "prefill": _prefill, "memory": _memory}
    out = ops[job["op"]](job)
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
