"""A scripted, deterministic ``Backend`` for tests: no model, no llama_cpp.

The fake is strict where llama.cpp is strict and stricter where llama.cpp would silently produce garbage,
so that scheduler and engine bugs fail loudly in unit tests:

* the KV cache is modelled per slot, with cells shared between slots after a ``cp`` (as in llama.cpp's
  unified cache); every item must start exactly at the current KV length of its slot;
* the number of live cells never exceeds ``n_ctx`` (llama_decode's "no KV slot" error);
* a ``cp`` into a slot that still holds tokens is refused (llama.cpp would store duplicate positions).

Vocabulary: byte-level. Token ``BYTE_OFFSET + b`` is the byte ``b``; ``BOS_ID``/``EOS_ID`` are special and
render as no text, like control tokens of the real backend. A ``Script`` picks the next token from what
the "model" sees; the default replies ``DEFAULT_REPLY`` and then EOS.

Logits, for the requests that ask for log-probabilities: a sampled position scores the script's token 10 and every
other token 0, plus the request's logit bias; a prompt position scores every token 0 (a uniform guess). So the
numbers are deterministic and easy to check: the chosen token has ``10 - log(e**10 + N_VOCAB - 1)``.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inhouse.engine.logprobs import LogprobRecorder
from inhouse.engine.params import SamplingParams
from inhouse.engine.protocol import KvOp, StepLogprobs, StepPlan
from inhouse.errors import EngineFailure, InvalidRequest

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
BYTE_OFFSET = 3
N_VOCAB = BYTE_OFFSET + 256
SPECIAL_TEXT = {"<s>": BOS_ID, "</s>": EOS_ID}
DEFAULT_REPLY = "Hello from the fake backend."


@dataclass(frozen=True)
class ScriptInput:
    """What a script sees when the fake must produce the next token of a request."""

    request_id: str
    history: tuple[int, ...]  # the tokens in the slot's KV cache: prompt + generated tokens fed back
    generated: tuple[int, ...]  # tokens already sampled for this request
    params: SamplingParams

    @property
    def prompt(self) -> tuple[int, ...]:
        # Every sampled token but the newest has been fed back, and the newest is sampled from this state.
        return self.history[: len(self.history) - len(self.generated)]


Script = Callable[[ScriptInput], int]


def encode_text(text: str) -> list[int]:
    return [BYTE_OFFSET + b for b in text.encode("utf-8")]


def decode_tokens(tokens: Sequence[int]) -> str:
    return bytes(t - BYTE_OFFSET for t in tokens if t >= BYTE_OFFSET).decode("utf-8", errors="replace")


def reply_script(reply: str | Mapping[str, str] = DEFAULT_REPLY, *, default: str = DEFAULT_REPLY) -> Script:
    """A script answering with fixed text then EOS.

    With a mapping, the reply is the value of the first key found in the prompt text (else ``default``),
    so tests can tell concurrent requests apart by their output.
    """

    def script(inp: ScriptInput) -> int:
        if isinstance(reply, str):
            text = reply
        else:
            prompt = decode_tokens(inp.prompt)
            text = next((v for k, v in reply.items() if k in prompt), default)
        return _nth_token(_reply_for(inp.params, text), len(inp.generated))

    return script


def failing_script(after: int, message: str) -> Script:
    """A script that generates ``after`` tokens, then fails as a native engine error would (``message`` is what
    the engine said: tests check it never reaches the client)."""

    def script(inp: ScriptInput) -> int:
        if len(inp.generated) >= after:
            raise RuntimeError(message)
        return encode_text("a")[0]

    return script


def _nth_token(text: str, n: int) -> int:
    tokens = encode_text(text)
    return tokens[n] if n < len(tokens) else EOS_ID


def _reply_for(params: SamplingParams, text: str) -> str:
    """Constrained output wins over the script's text: json_object/json_schema yield valid JSON."""
    if params.json_schema is not None:
        return json.dumps(example_for_schema(json.loads(params.json_schema)))
    if params.json_object:
        return json.dumps({"reply": text})
    return text


def example_for_schema(schema: Any) -> Any:
    """A small instance of a JSON schema (the subset tests use: type, properties, items, enum, const, and the
    first branch of anyOf/oneOf)."""
    if not isinstance(schema, dict):
        return {}
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example_for_schema(schema[key][0])
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0] if kind else "object"
    if kind == "object":
        props = schema.get("properties", {})
        keys = schema.get("required", list(props))
        return {k: example_for_schema(props.get(k, {"type": "string"})) for k in keys}
    if kind == "array":
        return [example_for_schema(schema.get("items", {"type": "string"}))] * schema.get("minItems", 0)
    return {"string": "fake", "integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, "fake")


_RULE_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9-]*)\s*::=", re.MULTILINE)


def check_grammar(grammar: str) -> None:
    """A shallow GBNF check (rules, a root rule, balanced brackets outside literals). The real backend
    uses llama.cpp's parser; this only has to refuse what is obviously broken."""
    rules = set(_RULE_RE.findall(grammar))
    if "root" not in rules:
        raise InvalidRequest("The grammar has no 'root' rule.", param="grammar")
    depth = 0
    quote: str | None = None
    escaped = False
    for ch in grammar:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote or (quote == "[" and ch == "]"):
                quote = None
        elif ch in "\"[":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                break
    if depth != 0 or quote:
        raise InvalidRequest("The grammar could not be parsed: unbalanced brackets or quotes.",
                             param="grammar")


@dataclass
class _Request:
    params: SamplingParams
    bias: dict[int, float]
    generated: list[int] = field(default_factory=list)
    choice: int = EOS_ID  # the script's pick at the last sampled position (before the logit bias)


class FakeBackend:
    """Implements ``Backend``. Inspect ``steps`` (``(n_items, n_tokens)`` per executed plan) and ``plans``."""

    def __init__(
        self,
        *,
        n_ctx: int = 512,
        n_slots: int = 4,
        n_batch: int = 512,
        script: Script | Mapping[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        if n_ctx < 1 or n_slots < 1 or n_batch < 1:
            raise ValueError("n_ctx, n_slots and n_batch must be positive")
        self._n_ctx = n_ctx
        self._n_slots = n_slots
        self.n_batch = n_batch
        self.n_vocab = N_VOCAB
        if script is None or isinstance(script, Mapping):
            self._script: Script = reply_script(script or DEFAULT_REPLY)
        else:
            self._script = script
        self.delay_s = delay_s
        self._requests: dict[str, _Request] = {}
        # KV model: each slot is a list of cell ids (index = position); a cell is shared after ``cp``.
        self._slots: list[list[int]] = [[] for _ in range(n_slots)]
        self._cell_token: dict[int, int] = {}
        self._cell_refs: dict[int, int] = {}
        self._cell_ids = itertools.count()
        self.steps: list[tuple[int, int]] = []
        self.plans: list[StepPlan] = []
        self.closed = False
        self._logprobs = LogprobRecorder(self.token_piece)

    # -- Backend -------------------------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def n_slots(self) -> int:
        return self._n_slots

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        out = [BOS_ID] if add_special else []
        if not parse_special:
            return out + encode_text(text)
        pattern = "(" + "|".join(re.escape(s) for s in SPECIAL_TEXT) + ")"
        for part in re.split(pattern, text):
            out.extend([SPECIAL_TEXT[part]] if part in SPECIAL_TEXT else encode_text(part))
        return out

    def token_piece(self, token: int) -> bytes:
        if not 0 <= token < N_VOCAB:
            raise InvalidRequest(f"Token id {token} is not in the vocabulary.")
        return bytes([token - BYTE_OFFSET]) if token >= BYTE_OFFSET else b""

    def is_eog(self, token: int) -> bool:
        return token == EOS_ID

    def start_request(self, request_id: str, params: SamplingParams) -> None:
        self._check_open()
        if params.grammar is not None:
            check_grammar(params.grammar)
        if params.json_schema is not None:
            try:
                json.loads(params.json_schema)
            except ValueError as exc:
                raise InvalidRequest(f"The JSON schema is not valid JSON: {exc}.",
                                     param="response_format") from exc
        bias: dict[int, float] = {}
        for tok, value in params.logit_bias:
            if not 0 <= tok < N_VOCAB:
                raise InvalidRequest(f"logit_bias token id {tok} is not in the model's vocabulary "
                                     f"(size {N_VOCAB}).", param="logit_bias")
            bias[tok] = bias.get(tok, 0.0) + value
        self._requests[request_id] = _Request(params, bias)
        self._logprobs.start(request_id, params)

    def end_request(self, request_id: str) -> None:
        self._requests.pop(request_id, None)
        self._logprobs.end(request_id)

    def logprobs(self) -> dict[str, StepLogprobs]:
        return self._logprobs.take()

    def execute(self, plan: StepPlan) -> dict[str, int]:
        self._check_open()
        self._check_items(plan)
        for op in plan.kv_ops:
            self._apply(op)
        needed = 0
        for item in plan.items:
            have = len(self._slots[item.slot])
            if item.pos0 != have:
                raise EngineFailure(
                    f"Request {item.request_id}: tokens start at position {item.pos0} but slot {item.slot} "
                    f"holds {have} tokens; positions must continue the sequence."
                )
            needed += len(item.tokens)
        if len(self._cell_refs) + needed > self._n_ctx:
            # llama_decode returns 1 and leaves the cache as it was: check before touching anything.
            raise EngineFailure(
                f"No free KV cache slot: {len(self._cell_refs)} of {self._n_ctx} cells are used and the "
                f"batch needs {needed} more."
            )
        for item in plan.items:
            for tok in item.tokens:
                cell = next(self._cell_ids)
                self._cell_token[cell] = tok
                self._cell_refs[cell] = 1
                self._slots[item.slot].append(cell)
        out: dict[str, int] = {}
        for item in plan.items:
            if item.sample:
                out[item.request_id] = self._sample(item.request_id, item.slot)
            if self._logprobs.active:
                self._record_logprobs(item, out.get(item.request_id))
        self.steps.append((len(plan.items), plan.n_tokens))
        self.plans.append(plan)
        if self.delay_s > 0 and plan.items:
            time.sleep(self.delay_s)
        return out

    def close(self) -> None:
        self.closed = True
        self._requests.clear()

    # -- inspection for tests ------------------------------------------------------------------------

    def kv_cells_used(self) -> int:
        return len(self._cell_refs)

    def kv_tokens(self, slot: int) -> tuple[int, ...]:
        return tuple(self._cell_token[c] for c in self._slots[slot])

    @property
    def live_requests(self) -> set[str]:
        return set(self._requests)

    # -- internals -----------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise EngineFailure("The backend is closed.")

    def _check_items(self, plan: StepPlan) -> None:
        if plan.n_tokens > self.n_batch:
            raise EngineFailure(f"The batch has {plan.n_tokens} tokens, above n_batch={self.n_batch}.")
        slots: set[int] = set()
        for item in plan.items:
            if not 0 <= item.slot < self._n_slots:
                raise EngineFailure(f"Slot {item.slot} is out of range (n_slots={self._n_slots}).")
            if item.slot in slots:
                raise EngineFailure(f"Slot {item.slot} appears twice in one batch.")
            slots.add(item.slot)
            if not item.tokens:
                raise EngineFailure(f"Request {item.request_id}: a batch item without tokens.")
            if item.sample and item.request_id not in self._requests:
                raise EngineFailure(
                    f"Request {item.request_id} has no sampler (start_request was not called)."
                )
        for op in plan.kv_ops:
            for slot in (op.slot, op.src) if op.kind == "cp" else (op.slot,):
                if not 0 <= slot < self._n_slots:
                    raise EngineFailure(
                        f"KV op {op} names slot {slot}, out of range (n_slots={self._n_slots})."
                    )

    def _apply(self, op: KvOp) -> None:
        cells = self._slots[op.slot]
        if op.kind == "rm":
            for cell in cells[max(op.p0, 0):]:
                self._release(cell)
            del cells[max(op.p0, 0):]
            return
        src = self._slots[op.src]
        if cells:
            raise EngineFailure(
                f"KV op {op}: slot {op.slot} still holds {len(cells)} tokens; clear it first."
            )
        if op.p1 > len(src):
            raise EngineFailure(f"KV op {op}: slot {op.src} holds only {len(src)} tokens.")
        for cell in src[: op.p1]:
            self._cell_refs[cell] += 1
            cells.append(cell)

    def _release(self, cell: int) -> None:
        self._cell_refs[cell] -= 1
        if self._cell_refs[cell] == 0:
            del self._cell_refs[cell]
            del self._cell_token[cell]

    def _sample(self, request_id: str, slot: int) -> int:
        req = self._requests[request_id]
        choice = self._script(ScriptInput(request_id, self.kv_tokens(slot), tuple(req.generated), req.params))
        req.choice = choice
        token = _biased(choice, req.bias) if req.bias else choice
        req.generated.append(token)
        return token

    def _record_logprobs(self, item: Any, sampled: int | None) -> None:
        req = self._requests.get(item.request_id)
        if req is None:
            return
        last = len(item.tokens) - 1

        def row(j: int) -> np.ndarray:
            logits = np.zeros(N_VOCAB, dtype=np.float32)
            if j == last and sampled is not None:
                logits[req.choice] = 10.0
                for tok, value in req.bias.items():
                    logits[tok] += value
            return logits

        self._logprobs.record(item, row, sampled)


def _biased(choice: int, bias: dict[int, float]) -> int:
    """Greedy over fake logits: the script's token scores 10, every other token 0, plus the biases."""
    scores = dict.fromkeys(bias, 0.0)
    scores[choice] = 10.0
    for tok, value in bias.items():
        scores[tok] += value
    best = max(scores, key=lambda t: (scores[t], t == choice, -t))
    if scores[best] >= 0 or len(scores) >= N_VOCAB:
        return best
    return next(t for t in range(BYTE_OFFSET, N_VOCAB) if t not in scores)  # an unbiased token, logit 0
