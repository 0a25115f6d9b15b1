"""The llama.cpp ``Backend``: one model, one context, many sequences decoded in one batch.

llama.cpp is reached through ``_library`` (the only module importing ``llama_cpp``; llama-cpp-python
0.3.36, low-level ctypes API; the high-level ``Llama`` class serialises requests and copies full logits to
numpy every token, which is what we are avoiding). The import is lazy so that importing this module is cheap.

Design notes:

* The KV cache is unified (``kv_unified``): all sequences share ``n_ctx`` cells and any one sequence may
  use up to ``n_ctx`` of them. A prefix copy (``cp``) only tags existing cells with another sequence id.
* Per token, the hot path is: fill one slot of a preallocated ``llama_batch`` (memmove of tokens and
  positions), one ``llama_decode`` for the whole step, one ``llama_sampler_sample`` per sampled item. No
  logits leave C.
* ``llama_sampler_sample`` both samples and accepts the token into the request's chain (llama.h:
  "Sample and accept a token"), so penalties and grammar state advance exactly once per token. Prompt
  tokens are not accepted: penalties apply to generated tokens only.
* Grammar-constrained sampling evaluates the grammar over the whole vocabulary every token, which is slow
  (milliseconds per token for a 50k vocabulary). llama.cpp's ``common_sampler`` avoids it by sampling
  without the grammar first and checking the pick; that optimisation is not done here yet.
"""

from __future__ import annotations

import ctypes
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from inhouse.engine.backends.llama_cpp._library import (
    WEIGHT_BUFFERS,
    address,
    init_process,
    json_object_gbnf,
    json_schema_gbnf,
    load_library,
    load_model,
)
from inhouse.engine.logprobs import LogprobRecorder
from inhouse.engine.params import SamplingParams
from inhouse.engine.protocol import StepLogprobs, StepPlan
from inhouse.errors import EngineFailure, InvalidModelFile, InvalidRequest
from inhouse.hardware.cpu import physical_cores

log = logging.getLogger(__name__)

KV_TYPES = ("f16", "q8_0", "q4_0")
_SCHEMA_CACHE_SIZE = 64


class LlamaCppBackend:
    """Implements ``Backend`` over llama.cpp. Call ``close()`` to free the model; there is no ``__del__``."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int,
        n_slots: int,
        n_batch: int,
        n_ubatch: int = 512,
        n_threads: int = 0,
        n_threads_batch: int = 0,
        flash_attn: bool = False,
        kv_type: str = "f16",
        use_mmap: bool = True,
        weight_buffers: str = "amx",
    ) -> None:
        """``weight_buffers``: where llama.cpp may re-lay the weights out for faster kernels (see
        ``_library.load_model``): ``amx`` (every extra buffer type of this build: llama.cpp's own default),
        ``repack`` (the CPU repack without AMX) or ``plain`` (none). Serving resolves it from the hardware
        probe (``hardware/probe.py``); it is never guessed here."""
        path = Path(model_path)
        if not path.is_file():
            raise InvalidModelFile(f"The model file {path} does not exist.", param="model")
        if kv_type not in KV_TYPES:
            raise InvalidRequest(f"kv_type must be one of {', '.join(KV_TYPES)}, got {kv_type!r}.")
        if kv_type != "f16" and not flash_attn:
            # llama.cpp refuses a quantized V cache without flash attention; say so before it does.
            raise InvalidRequest(f"kv_type={kv_type!r} needs flash_attn=True.")
        if weight_buffers not in WEIGHT_BUFFERS:
            raise InvalidRequest(f"weight_buffers must be one of {', '.join(WEIGHT_BUFFERS)}, got {weight_buffers!r}.")
        if n_ctx < 1 or n_slots < 1 or n_batch < 1 or n_ubatch < 1:
            raise InvalidRequest("n_ctx, n_slots, n_batch and n_ubatch must be positive.")
        L = load_library()
        self._L = L
        self._log = init_process(L)
        if n_slots > L.llama_max_parallel_sequences():
            raise InvalidRequest(f"n_slots={n_slots} is above llama.cpp's limit of "
                                 f"{L.llama_max_parallel_sequences()} sequences.")
        self._path = path
        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        self._samplers: dict[str, Any] = {}  # request id -> llama_sampler chain pointer
        self._logprobs = LogprobRecorder(self.token_piece)  # only requests that ask are registered
        self._closed = False
        self._schema_grammars: dict[str, str] = {}

        mparams = L.llama_model_default_params()
        mparams.n_gpu_layers = 0
        mparams.load_mode = L.LLAMA_LOAD_MODE_MMAP if use_mmap else L.LLAMA_LOAD_MODE_NONE
        mark = self._log.n_errors
        loaded = load_model(L, path, mparams, weight_buffers)
        self._model = loaded.model
        self.weight_buffers = weight_buffers
        self.placed_buffers = loaded.weight_buffers  # buffer type → MiB, as llama.cpp reported the load
        if not self._model:
            raise InvalidModelFile(f"llama.cpp could not load {path}: {self._last_errors(mark)}", param="model")
        try:
            self._vocab = L.llama_model_get_vocab(self._model)
            self._n_vocab = int(L.llama_vocab_n_tokens(self._vocab))
            threads = n_threads or physical_cores()
            cparams = L.llama_context_default_params()
            cparams.n_ctx = n_ctx
            cparams.n_batch = n_batch
            cparams.n_ubatch = min(n_ubatch, n_batch)
            cparams.n_seq_max = n_slots
            cparams.kv_unified = True
            cparams.n_threads = threads
            cparams.n_threads_batch = n_threads_batch or threads
            cparams.flash_attn_type = (
                L.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else L.LLAMA_FLASH_ATTN_TYPE_DISABLED
            )
            ggml_type = {"f16": L.GGML_TYPE_F16, "q8_0": L.GGML_TYPE_Q8_0, "q4_0": L.GGML_TYPE_Q4_0}[kv_type]
            cparams.type_k = ggml_type
            cparams.type_v = ggml_type
            cparams.embeddings = False
            cparams.no_perf = True
            mark = self._log.n_errors
            self._ctx = L.llama_init_from_model(self._model, cparams)
            if not self._ctx:
                raise EngineFailure(f"llama.cpp could not create a context for {path.name} "
                                    f"(n_ctx={n_ctx}, n_slots={n_slots}): {self._last_errors(mark)}")
            self._mem = L.llama_get_memory(self._ctx)
            # llama.cpp may round n_ctx up; with a unified cache one sequence may use all of it.
            self._n_ctx = int(min(L.llama_n_ctx(self._ctx), L.llama_n_ctx_seq(self._ctx)))
            self._n_slots = n_slots
            self._n_batch = int(L.llama_n_batch(self._ctx))
            self._threads = (threads, cparams.n_threads_batch)
            self._batch = L.llama_batch_init(self._n_batch, 0, n_slots)
            self._init_batch_views()
            self._eog = frozenset(t for t in range(self._n_vocab) if L.llama_vocab_is_eog(self._vocab, t))
            self._pieces: dict[int, bytes] = {}
            self._bind_hot_functions()
        except BaseException:
            self.close()
            raise
        log.info("loaded %s (%s, %d params) n_ctx=%d n_slots=%d n_batch=%d threads=%s kv=%s flash_attn=%s "
                 "weight_buffers=%s (%s)", path.name, self.description, self.n_params, self._n_ctx, n_slots,
                 self._n_batch, self._threads, kv_type, flash_attn, weight_buffers,
                 ", ".join(f"{k} {v:.0f} MiB" for k, v in self.placed_buffers.items()))

    # -- read-only facts -----------------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def model_path(self) -> Path:
        return self._path

    @property
    def n_slots(self) -> int:
        return self._n_slots

    @property
    def n_batch(self) -> int:
        return self._n_batch

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def model_size_bytes(self) -> int:
        return int(self._L.llama_model_size(self._model))

    @property
    def n_params(self) -> int:
        return int(self._L.llama_model_n_params(self._model))

    @property
    def n_ctx_train(self) -> int:
        return int(self._L.llama_model_n_ctx_train(self._model))

    @property
    def description(self) -> str:
        buf = ctypes.create_string_buffer(256)
        n = self._L.llama_model_desc(self._model, buf, len(buf))
        return buf.raw[: max(0, min(n, len(buf) - 1))].decode("utf-8", errors="replace")

    @property
    def chat_template(self) -> str | None:
        """The model's default chat template (Jinja) from the GGUF metadata, if any."""
        raw = self._L.llama_model_chat_template(self._model, None)
        return raw.decode("utf-8", errors="replace") if raw else None

    def kv_length(self, slot: int) -> int:
        """Positions held by ``slot`` (max position + 1; 0 when empty). For tests and diagnostics."""
        self._check_open()
        return int(self._L.llama_memory_seq_pos_max(self._mem, slot)) + 1

    # -- vocabulary ----------------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        self._check_open()
        data = text.encode("utf-8")
        size = len(data) + 8  # never more tokens than bytes, plus BOS/EOS
        for _ in range(2):
            buf = (ctypes.c_int32 * size)()
            n = self._L.llama_tokenize(self._vocab, data, len(data), buf, size, add_special, parse_special)
            if n >= 0:
                return buf[:n]
            if n == -(2**31):
                raise InvalidRequest("The text is too long to tokenize.")
            size = -n  # "buffer too small": -n is the number of tokens needed
        raise EngineFailure("llama_tokenize kept asking for a larger buffer.")

    def token_piece(self, token: int) -> bytes:
        """The bytes of ``token``. Control tokens (``<|im_end|>``, BOS, ...) render as ``b""``
        (``special=False``): the engine stops on ``is_eog`` and must never stream template markup."""
        piece = self._pieces.get(token)
        if piece is None:
            self._check_token(token)
            buf = ctypes.create_string_buffer(64)
            n = self._L.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._L.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            piece = buf.raw[:n]
            self._pieces[token] = piece
        return piece

    def is_eog(self, token: int) -> bool:
        return token in self._eog

    # -- requests ------------------------------------------------------------------------------------

    def start_request(self, request_id: str, params: SamplingParams) -> None:
        self._check_open()
        chain = self._build_sampler(params)
        old = self._samplers.pop(request_id, None)
        if old:
            self._L.llama_sampler_free(old)
        self._samplers[request_id] = chain
        self._logprobs.start(request_id, params)

    def end_request(self, request_id: str) -> None:
        self._logprobs.end(request_id)
        smpl = self._samplers.pop(request_id, None)
        if smpl and not self._closed:
            self._L.llama_sampler_free(smpl)

    def execute(self, plan: StepPlan) -> dict[str, int]:
        self._check_open()
        samplers = self._check_plan(plan)  # before any change: a refused plan leaves the cache as it was
        L = self._L
        for op in plan.kv_ops:
            if op.kind == "rm":
                if not L.llama_memory_seq_rm(self._mem, op.slot, op.p0, -1):
                    raise EngineFailure(f"llama.cpp could not remove positions {op.p0}.. of slot {op.slot}.")
            else:
                L.llama_memory_seq_cp(self._mem, op.src, op.slot, 0, op.p1)
        if not plan.items:
            return {}

        to_sample: list[tuple[str, Any, int]] = []  # (request id, sampler, batch index of its last token)
        off = 0
        seq = self._seq_id
        c_int32 = ctypes.c_int32
        memmove = ctypes.memmove
        for item, smpl in zip(plan.items, samplers, strict=True):
            n = len(item.tokens)
            slot = item.slot
            memmove(self._tok_addr + 4 * off, (c_int32 * n)(*item.tokens), 4 * n)
            memmove(self._pos_addr + 4 * off, (c_int32 * n)(*range(item.pos0, item.pos0 + n)), 4 * n)
            for i in range(off, off + n):
                seq[i][0] = slot
            off += n
            if smpl is not None:
                to_sample.append((item.request_id, smpl, off - 1))
        ctypes.memset(self._logits_addr, 0, off)
        logits = self._logits
        for _, _, idx in to_sample:
            logits[idx] = 1
        recording = self._logprobs.active  # False unless a live request asked: then nothing more is done
        if recording:
            self._want_prompt_rows(plan)
        self._batch.n_tokens = off

        rc = self._decode(self._ctx, self._batch)
        if rc != 0:
            raise EngineFailure(self._decode_error(rc))
        sample = self._sample
        ctx = self._ctx
        sampled = {rid: sample(smpl, ctx, idx) for rid, smpl, idx in to_sample}
        if recording:
            self._record_logprobs(plan, sampled)
        return sampled

    def logprobs(self) -> dict[str, StepLogprobs]:
        return self._logprobs.take()

    def _want_prompt_rows(self, plan: StepPlan) -> None:
        """Logits for every token of the items whose request wants prompt log-probabilities."""
        off = 0
        for item in plan.items:
            n = len(item.tokens)
            if self._logprobs.all_rows(item.request_id):
                ctypes.memset(self._logits_addr + off, 1, n)
            off += n

    def _record_logprobs(self, plan: StepPlan, sampled: dict[str, int]) -> None:
        get_row, ctx, n_vocab = self._L.llama_get_logits_ith, self._ctx, self._n_vocab
        off = 0
        for item in plan.items:
            start = off
            off += len(item.tokens)
            if not self._logprobs.wanted(item.request_id):
                continue

            def row(j: int, start: int = start) -> np.ndarray:
                return np.ctypeslib.as_array(get_row(ctx, start + j), shape=(n_vocab,))

            self._logprobs.record(item, row, sampled.get(item.request_id))

    def _check_plan(self, plan: StepPlan) -> list[Any]:
        """Refuse what would corrupt memory or crash llama.cpp; return each item's sampler (or None)."""
        n_slots = self._n_slots
        if plan.n_tokens > self._n_batch:
            raise EngineFailure(f"The batch has {plan.n_tokens} tokens, above n_batch={self._n_batch}.")
        for op in plan.kv_ops:
            if not 0 <= op.slot < n_slots or (op.kind == "cp" and not 0 <= op.src < n_slots):
                raise EngineFailure(f"KV op {op} names a slot out of range (n_slots={n_slots}).")
        samplers: list[Any] = []
        seen: set[int] = set()
        for item in plan.items:
            if not 0 <= item.slot < n_slots or item.slot in seen:
                raise EngineFailure(f"Slot {item.slot} is out of range or appears twice in one batch.")
            seen.add(item.slot)
            if not item.tokens:
                raise EngineFailure(f"Request {item.request_id}: a batch item without tokens.")
            smpl = None
            if item.sample:
                smpl = self._samplers.get(item.request_id)
                if not smpl:
                    raise EngineFailure(
                        f"Request {item.request_id} has no sampler (start_request was not called)."
                    )
            samplers.append(smpl)
        return samplers

    def close(self) -> None:
        """Free samplers, batch, context and model. Idempotent."""
        if self._closed:
            return
        self._closed = True
        L = self._L
        for smpl in self._samplers.values():
            L.llama_sampler_free(smpl)
        self._samplers.clear()
        if self._batch is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            L.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            L.llama_model_free(self._model)
            self._model = None

    # -- internals -----------------------------------------------------------------------------------

    def _init_batch_views(self) -> None:
        b = self._batch
        self._tok_addr = address(b.token)
        self._pos_addr = address(b.pos)
        self._logits_addr = address(b.logits)
        self._logits = b.logits
        self._seq_id = b.seq_id
        # Every token belongs to exactly one sequence: set n_seq_id once for the whole batch.
        ones = (ctypes.c_int32 * self._n_batch)(*([1] * self._n_batch))
        ctypes.memmove(address(b.n_seq_id), ones, 4 * self._n_batch)

    def _bind_hot_functions(self) -> None:
        self._decode = self._L.llama_decode
        self._sample = self._L.llama_sampler_sample

    def _check_open(self) -> None:
        if self._closed:
            raise EngineFailure("The backend is closed.")

    def _check_token(self, token: int) -> None:
        # llama.cpp indexes its vocabulary with .at(): an unknown id would throw through the C API and abort.
        if not 0 <= token < self._n_vocab:
            raise InvalidRequest(f"Token id {token} is not in the model's vocabulary (size {self._n_vocab}).")

    def _last_errors(self, mark: int) -> str:
        return " ".join(self._log.errors_since(mark)) or "no details from llama.cpp"

    def _decode_error(self, rc: int) -> str:
        if rc == 1:
            return (f"No free KV cache slot for this batch: the {self._n_ctx} context cells shared by all "
                    "sequences are full.")
        if rc == 2:
            return "llama_decode was aborted."
        if rc == -1:
            return ("llama_decode refused the batch as invalid (token ids, positions or sequence ids "
                    "inconsistent with the KV cache).")
        return f"llama_decode failed with code {rc}; the KV cache may hold part of the batch."

    def _grammar_for(self, params: SamplingParams) -> str | None:
        if params.grammar is not None:
            return params.grammar
        if params.json_object:
            return json_object_gbnf()
        if params.json_schema is not None:
            cached = self._schema_grammars.get(params.json_schema)
            if cached is not None:
                return cached
            try:
                gbnf = json_schema_gbnf(params.json_schema)
            except Exception as exc:  # the converter raises assorted errors on bad user input
                raise InvalidRequest(f"The JSON schema could not be turned into a grammar: {exc}",
                                     param="response_format") from exc
            if len(self._schema_grammars) >= _SCHEMA_CACHE_SIZE:
                self._schema_grammars.pop(next(iter(self._schema_grammars)))
            self._schema_grammars[params.json_schema] = gbnf
            return gbnf
        return None

    def _build_sampler(self, params: SamplingParams) -> Any:
        L = self._L
        grammar = self._grammar_for(params)
        bias: dict[int, float] = {}
        for tok, value in params.logit_bias:
            if not 0 <= tok < self._n_vocab:
                raise InvalidRequest(f"logit_bias token id {tok} is not in the model's vocabulary "
                                     f"(size {self._n_vocab}).", param="logit_bias")
            bias[tok] = bias.get(tok, 0.0) + value
        if params.ignore_eos and grammar is None:
            # Ban end-of-generation tokens (what llama-server does). Not with a grammar: once the grammar is
            # complete only EOG is allowed, and banning it too would leave nothing to sample.
            bias.update(dict.fromkeys(self._eog, -math.inf))

        cparams = L.llama_sampler_chain_default_params()
        cparams.no_perf = True
        chain = L.llama_sampler_chain_init(cparams)
        try:
            if bias:
                arr = (L.llama_logit_bias * len(bias))(*[L.llama_logit_bias(t, b) for t, b in bias.items()])
                L.llama_sampler_chain_add(
                    chain, L.llama_sampler_init_logit_bias(self._n_vocab, len(bias), arr))
            if params.penalty_last_n and (params.repeat_penalty != 1.0 or params.frequency_penalty
                                          or params.presence_penalty):
                # 0.3.36's binding (and the library it ships) take n_vocab first.
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_penalties(
                    self._n_vocab, params.penalty_last_n, params.repeat_penalty,
                    params.frequency_penalty, params.presence_penalty))
            if grammar is not None:
                mark = self._log.n_errors
                g = L.llama_sampler_init_grammar(self._vocab, grammar.encode("utf-8"), b"root")
                if not g:  # llama.cpp returns NULL when the grammar does not parse
                    raise InvalidRequest(f"The grammar could not be parsed: {self._last_errors(mark)}",
                                         param="grammar" if params.grammar is not None else "response_format")
                L.llama_sampler_chain_add(chain, g)
            if params.temperature <= 0:
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
            else:
                if params.top_k > 0:
                    L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(params.top_k))
                if params.top_p < 1.0:
                    L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(params.top_p, 1))
                if params.min_p > 0.0:
                    L.llama_sampler_chain_add(chain, L.llama_sampler_init_min_p(params.min_p, 1))
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(params.temperature))
                seed = L.LLAMA_DEFAULT_SEED if params.seed is None else params.seed  # default = random
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed))
        except BaseException:
            L.llama_sampler_free(chain)  # frees the samplers already added to the chain
            raise
        return chain
