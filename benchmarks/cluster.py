"""``python -m benchmarks.cluster``: what cluster mode costs and gains, as ratios measured in one run.

Two simulated machines in one process tree (``inhouse.cluster.local.LocalCluster``), the whole API through Ray
Serve's HTTP proxy, SmolLM2 replicas. Run it under the heavy lock; each ``--part`` takes a few minutes:

* ``decode``: single-stream decode tok/s through the cluster ÷ a direct ``inhouse serve`` on the same machine:
  direct alone, then the cluster alone (Ray's idle background is part of its cost), then direct again, ``--repeats``
  streams each; medians (target ≥ 0.9).
* ``routing``: time to first token (p95) of returning conversations (turn 2+ of conversations whose first turn is
  in some replica's prefix cache) with prefix-affinity routing ÷ random routing, interleaved on two deployments of
  the same model with two replicas each (target ≤ 0.3); then the cold start: time to first token of a request that
  finds its model at zero replicas.
* ``embed``: where e5 runs. The same app deployed with ``cluster.embedder = "ingress"`` (e5 in the ingress
  process), then ``"deployment"`` (the Embedder replica, one hop away), then ``"ingress"`` again to bracket the
  machine's drift: ``--repeats`` query embeddings through ``/v1/embeddings`` (median latency) and one upload of a
  document of ``--chunks`` paragraphs (its chunks per second), each after a warm-up; ratios deployment ÷ ingress.

Results go to ``benchmarks/results/cluster-<part>-<time>.json``; docs/performance.md quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.client import ChatTarget, build_client, percentile, stream_chat
from benchmarks.results import RESULTS_DIR, write_results
from benchmarks.servers import inhouse_spec, running_server

MODEL = "smollm2-135m"
# n_ctx 8192 (SmolLM2's own context): every conversation of a replica must stay in its KV cells, or LRU eviction in
# round-robin order misses every time (a first run with 4096 cells did exactly that).
ENGINE = {"max_running": 4, "n_cache_slots": 8, "n_ctx": 8192}
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm, in many paragraphs."}]


def _prepare(base: Path, aliases: list[str]) -> tuple[list[Path], str]:
    """Data directories of the two machines (the head's with an admin key), each registering ``aliases`` of the
    model (same file, other names: separate deployments with their own routing)."""
    from inhouse.bootstrap import build_services
    from inhouse.config import Settings

    dirs = [base / "head", base / "second"]
    key = ""
    for i, d in enumerate(dirs):
        services = build_services(Settings(data_dir=d, kb={"embedder": "fake"}))
        try:
            path = services.registry.resolve(MODEL, require_present=True).path
            assert path is not None
            for alias in aliases:
                services.registry.add(path, alias)
            if i == 0:
                key = services.keys.ensure_admin_key() or ""
        finally:
            services.close()
    return dirs, key


def _settings(data_dir: Path, port: int, **sections: dict[str, Any]) -> Any:
    from inhouse.config import Settings

    defaults: dict[str, dict[str, Any]] = {"kb": {"embedder": "fake"}, "cluster": {"downscale_delay_s": 2.0}}
    return Settings(data_dir=data_dir, server={"port": port}, **{**defaults, **sections})


def _start(base: Path, deployments: list[Any], aliases: list[str], **sections: dict[str, Any]
           ) -> tuple[Any, ChatTarget]:
    from inhouse.cluster.app import deploy
    from inhouse.cluster.local import LocalCluster, free_port

    dirs, key = _prepare(base, aliases)
    port = free_port()
    local = LocalCluster(dirs).start()
    try:
        deploy(_settings(dirs[0], port, **sections), deployments)
    except BaseException:
        local.stop()
        raise
    return local, ChatTarget(f"http://127.0.0.1:{port}", MODEL, key)


async def _decode_once(target: ChatTarget, tokens: int) -> float:
    async with build_client() as client:
        res = await stream_chat(client, target, STORY, tokens)
    assert res.error is None, res.error
    rate = res.decode_tok_s
    assert rate is not None
    return rate


def _direct_rates(base: Path, repeats: int, tokens: int, label: str) -> list[float]:
    spec = inhouse_spec(MODEL, base / f"direct-{label}", extra_env={"INHOUSE_ENGINE__N_CTX": "8192"})
    with running_server(spec, base / "logs") as server:
        direct = ChatTarget(server.base_url, MODEL)
        asyncio.run(_decode_once(direct, 16))  # warm
        return [asyncio.run(_decode_once(direct, tokens)) for _ in range(repeats)]


def part_decode(base: Path, repeats: int, tokens: int) -> dict[str, Any]:
    """Direct ``inhouse serve`` alone, then the cluster alone (its idle background included: it is part of the
    cost), then direct again: the two direct phases bracket the machine's drift."""
    from inhouse.cluster.app import ModelDeployment

    rates: dict[str, list[float]] = {"direct_before": _direct_rates(base, repeats, tokens, "before")}
    load = {"direct_before": os.getloadavg()[0]}
    one = {"min_replicas": 1, "max_replicas": 1, "initial_replicas": 1}
    local, ray_target = _start(base / "ray", [ModelDeployment(MODEL, engine_overrides=ENGINE, autoscaling=one)], [])
    try:
        asyncio.run(_decode_once(ray_target, 16))  # warm
        rates["cluster"] = [asyncio.run(_decode_once(ray_target, tokens)) for _ in range(repeats)]
        load["cluster"] = os.getloadavg()[0]
    finally:
        local.stop()
    rates["direct_after"] = _direct_rates(base, repeats, tokens, "after")
    load["direct_after"] = os.getloadavg()[0]
    direct = statistics.median(rates["direct_before"] + rates["direct_after"])
    cluster = statistics.median(rates["cluster"])
    return {"decode_tok_s": rates, "median_tok_s": {"direct": direct, "cluster": cluster},
            "ratio_cluster_over_direct": cluster / direct, "target": ">= 0.9", "tokens": tokens, "repeats": repeats,
            "load_avg_1m_after_phase": load}


def _conversation(i: int) -> list[dict[str, str]]:
    # Unique from the first token, so two conversations share no prefix; ~450 tokens of instructions.
    policy = " ".join(f"Rule {j} of team {i}: answer in plain words, cite the handbook section {i}.{j}."
                      for j in range(25))
    return [{"role": "system", "content": f"Conversation {i}. You help team {i}. {policy}"},
            {"role": "user", "content": f"Team {i} asks: how many leave days do we get?"}]


async def _turn(client: Any, target: ChatTarget, messages: list[dict[str, str]]) -> tuple[float, str]:
    res = await stream_chat(client, target, messages, 8)
    assert res.error is None, res.error
    ttft = res.ttft_s
    assert ttft is not None
    return ttft, res.text


def part_routing(base: Path, conversations: int, turns: int, cold_repeats: int) -> dict[str, Any]:
    from inhouse.cluster.app import APP_NAME, ModelDeployment, deployment_name
    from inhouse.cluster.remote import replica_ids

    two = {"min_replicas": 2, "max_replicas": 2, "initial_replicas": 2}
    zero = {"min_replicas": 0, "max_replicas": 1, "initial_replicas": 0}
    aliases = ["smollm2-random", "smollm2-zero"]
    local, target = _start(base / "ray", [
        ModelDeployment(MODEL, engine_overrides=ENGINE, autoscaling=two, routing="affinity"),
        ModelDeployment("smollm2-random", engine_overrides=ENGINE, autoscaling=two, routing="random"),
        ModelDeployment("smollm2-zero", engine_overrides=ENGINE, autoscaling=zero),
    ], aliases)
    try:
        policies = {"affinity": MODEL, "random": "smollm2-random"}
        ttft: dict[str, list[float]] = {p: [] for p in policies}
        first_turn: dict[str, list[float]] = {p: [] for p in policies}

        async def run() -> None:
            async with build_client() as client:
                history = {(p, i): _conversation(i) for p in policies for i in range(conversations)}
                for turn in range(turns + 1):
                    for i in range(conversations):
                        for policy, model in policies.items():
                            messages = history[(policy, i)]
                            seconds, text = await _turn(client, ChatTarget(target.base_url, model, target.api_key),
                                                        messages)
                            (first_turn if turn == 0 else ttft)[policy].append(seconds)
                            messages += [{"role": "assistant", "content": text},
                                         {"role": "user", "content": f"And follow-up question {turn}?"}]

        asyncio.run(run())
        p95 = {p: percentile(v, 95) for p, v in ttft.items()}
        cold: list[float] = []
        zero_target = ChatTarget(target.base_url, "smollm2-zero", target.api_key)
        for _ in range(cold_repeats):
            deadline = time.monotonic() + 120
            while replica_ids(APP_NAME, deployment_name("smollm2-zero")) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert not replica_ids(APP_NAME, deployment_name("smollm2-zero")), "no scale-down to zero"

            async def once() -> float:
                async with build_client() as client:
                    return (await _turn(client, zero_target, STORY))[0]

            cold.append(asyncio.run(once()))
    finally:
        local.stop()
    assert p95["affinity"] is not None and p95["random"] is not None
    return {"returning_ttft_s": ttft, "first_turn_ttft_s": first_turn, "ttft_p95_s": p95,
            "ratio_affinity_over_random_p95": p95["affinity"] / p95["random"], "target": "<= 0.3",
            "conversations": conversations, "returning_turns": turns,
            "cold_start_ttft_s": cold, "cold_start_median_s": statistics.median(cold) if cold else None}


def _embed_phase(target: ChatTarget, repeats: int, chunks: int, tag: str) -> tuple[list[float], float]:
    """Query embedding latencies and one upload's chunks per second, after a warm-up of each."""
    import httpx

    with httpx.Client(base_url=target.base_url, headers=target.headers(), timeout=600) as client:
        def query(i: int) -> float:
            t0 = time.perf_counter()
            r = client.post("/v1/embeddings", json={"model": "multilingual-e5-small:query",
                                                    "input": f"How many days of annual leave do I get ({i})?"})
            assert r.status_code == 200, r.text
            return time.perf_counter() - t0

        def upload(n: int, name: str) -> tuple[int, float]:
            col = client.post("/v1/collections", json={"name": f"{tag}-{name}"}).json()["id"]
            doc = "\n\n".join(f"# Section {i} ({tag})\n\n" + f"Policy paragraph {i} of the {name} handbook. " * 30
                               for i in range(n))
            t0 = time.perf_counter()
            r = client.post(f"/v1/collections/{col}/documents", files={"file": (f"{name}.md", doc.encode())})
            assert r.status_code == 201, r.text
            return int(r.json()["chunk_count"]), time.perf_counter() - t0

        query(-1)
        upload(2, "warm")
        latencies = [query(i) for i in range(repeats)]
        n, seconds = upload(chunks, "big")
    return latencies, n / seconds


def part_embed(base: Path, repeats: int, chunks: int) -> dict[str, Any]:
    from inhouse.cluster.app import ModelDeployment, deploy

    one = {"min_replicas": 1, "max_replicas": 1, "initial_replicas": 1}
    models = [ModelDeployment(MODEL, engine="fake", autoscaling=one)]
    phases = [("ingress_before", "ingress"), ("deployment", "deployment"), ("ingress_after", "ingress")]
    local, target = _start(base / "ray", models, [], kb={"embedder": "e5"}, cluster={"embedder": "ingress"})
    latency: dict[str, list[float]] = {}
    rate: dict[str, float] = {}
    load: dict[str, float] = {}
    try:
        port = int(target.base_url.rsplit(":", 1)[1])
        for label, mode in phases:
            deploy(_settings(base / "ray" / "head", port, kb={"embedder": "e5"}, cluster={"embedder": mode}),
                   models)
            latency[label], rate[label] = _embed_phase(target, repeats, chunks, label)
            load[label] = os.getloadavg()[0]
    finally:
        local.stop()
    ingress_query = statistics.median(latency["ingress_before"] + latency["ingress_after"])
    ingress_rate = statistics.mean([rate["ingress_before"], rate["ingress_after"]])
    return {"query_latency_s": latency, "upload_chunks_per_s": rate,
            "median_query_s": {"ingress": ingress_query, "deployment": statistics.median(latency["deployment"])},
            "ratio_query_deployment_over_ingress": statistics.median(latency["deployment"]) / ingress_query,
            "ratio_upload_rate_deployment_over_ingress": rate["deployment"] / ingress_rate,
            "repeats": repeats, "chunks": chunks, "load_avg_1m_after_phase": load}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("decode", "routing", "embed"), required=True)
    p.add_argument("--repeats", type=int, default=5, help="decode: streams per path; embed: queries per phase")
    p.add_argument("--chunks", type=int, default=64, help="embed: paragraphs of the uploaded document")
    p.add_argument("--tokens", type=int, default=128, help="decode: tokens per stream")
    p.add_argument("--conversations", type=int, default=6, help="routing: conversations per policy")
    p.add_argument("--turns", type=int, default=3, help="routing: returning turns per conversation")
    p.add_argument("--cold", type=int, default=2, help="routing: cold starts from zero replicas")
    args = p.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="inhouse-cluster-bench-") as tmp:
        t0 = time.perf_counter()
        if args.part == "decode":
            result = part_decode(Path(tmp), args.repeats, args.tokens)
        elif args.part == "embed":
            result = part_embed(Path(tmp), args.repeats, args.chunks)
        else:
            result = part_routing(Path(tmp), args.conversations, args.turns, args.cold)
    result.update({"part": args.part, "wall_s": time.perf_counter() - t0, "load_avg_1m_at_start": load,
                   "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.cluster", *sys.argv[1:]])})
    out = write_results(result, RESULTS_DIR / f"cluster-{args.part}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict) or k.startswith(("median", "ttft"))},
                     indent=2, default=str))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
