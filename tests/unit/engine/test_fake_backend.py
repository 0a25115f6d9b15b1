"""FakeBackend passes the backend contract, and catches the engine bugs it exists to catch."""

from __future__ import annotations

import json

import pytest

from inhouse.engine.backends.fake import (
    BOS_ID,
    DEFAULT_REPLY,
    EOS_ID,
    FakeBackend,
    ScriptInput,
    check_grammar,
    decode_tokens,
    encode_text,
    example_for_schema,
    reply_script,
)
from inhouse.engine.params import SamplingParams
from inhouse.engine.protocol import Backend, BatchItem, KvOp, StepPlan
from inhouse.errors import EngineFailure, InvalidRequest
from inhouse.testing.backend_contract import GREEDY, BackendContract, feed, generate


class TestFakeBackendContract(BackendContract):
    def make_backend(self) -> Backend:
        return FakeBackend(n_ctx=2048, n_slots=4, n_batch=2048)


def text_of(backend: FakeBackend, tokens: list[int]) -> str:
    return b"".join(backend.token_piece(t) for t in tokens).decode()


def test_default_script_replies_then_ends() -> None:
    b = FakeBackend()
    out = generate(b, b.tokenize("hi"), max_new=100)
    assert text_of(b, out) == DEFAULT_REPLY
    assert len(out) == len(DEFAULT_REPLY)


def test_mapping_script_answers_by_prompt() -> None:
    b = FakeBackend(script={"ping": "pong", "marco": "polo"})
    assert text_of(b, generate(b, b.tokenize("say ping"), max_new=50)) == "pong"
    assert text_of(b, generate(b, b.tokenize("marco?"), max_new=50)) == "polo"
    assert text_of(b, generate(b, b.tokenize("other"), max_new=50)) == DEFAULT_REPLY


def test_script_sees_prompt_history_and_generated() -> None:
    seen: list[ScriptInput] = []

    def script(inp: ScriptInput) -> int:
        seen.append(inp)
        return encode_text("x")[0] if len(inp.generated) < 2 else EOS_ID

    b = FakeBackend(script=script)
    prompt = b.tokenize("abc")
    assert generate(b, prompt, max_new=10) == encode_text("xx")
    assert [s.prompt for s in seen] == [tuple(prompt)] * 3
    assert [len(s.history) for s in seen] == [len(prompt), len(prompt) + 1, len(prompt) + 2]


def test_tokenize_parses_special_text_only_when_asked() -> None:
    b = FakeBackend()
    assert b.tokenize("a</s>", add_special=True) == [BOS_ID, *encode_text("a"), EOS_ID]
    assert b.tokenize("a</s>", add_special=False, parse_special=False) == encode_text("a</s>")
    assert b.token_piece(EOS_ID) == b"" and b.is_eog(EOS_ID) and not b.is_eog(BOS_ID)
    assert decode_tokens(encode_text("héllo")) == "héllo"


def test_json_modes_emit_valid_json() -> None:
    b = FakeBackend(script={"q": "an answer"})
    out = generate(b, b.tokenize("q"), SamplingParams(temperature=0.0, json_object=True), max_new=200)
    assert json.loads(text_of(b, out)) == {"reply": "an answer"}
    schema = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                                        "minItems": 2}, "ok": {"type": "boolean"}}}
    out = generate(b, b.tokenize("q"), SamplingParams(json_schema=json.dumps(schema)), max_new=200)
    assert json.loads(text_of(b, out)) == {"tags": ["fake", "fake"], "ok": True}


def test_example_for_schema_covers_enum_const_and_types() -> None:
    assert example_for_schema({"enum": ["a", "b"]}) == "a"
    assert example_for_schema({"const": 3}) == 3
    assert example_for_schema({"type": ["integer", "null"]}) == 1
    assert example_for_schema({"type": "number"}) == 1.5


def test_check_grammar_accepts_reasonable_gbnf() -> None:
    check_grammar('root ::= "yes" | "no"\n')
    check_grammar('root ::= item+\nitem ::= [a-z()] ("," | "\\"")\n')
    with pytest.raises(InvalidRequest):
        check_grammar('root ::= ("a"')


def test_records_every_plan() -> None:
    b = FakeBackend()
    b.start_request("r1", GREEDY)
    b.start_request("r2", GREEDY)
    b.execute(StepPlan(items=[BatchItem("r1", 0, (5, 6, 7), 0, True), BatchItem("r2", 1, (5,), 0, True)]))
    b.execute(StepPlan(kv_ops=[KvOp("rm", 0)]))
    assert b.steps == [(2, 4), (0, 0)]
    assert len(b.plans) == 2


def test_kv_model_tracks_shared_cells() -> None:
    b = FakeBackend(n_ctx=10)
    b.start_request("r", GREEDY)
    feed(b, "r", 0, [5, 6, 7, 8], 0)
    b.execute(StepPlan(kv_ops=[KvOp("cp", 1, p1=3, src=0)]))
    assert b.kv_tokens(1) == (5, 6, 7)
    assert b.kv_cells_used() == 4  # shared, not copied
    feed(b, "r", 1, [9], 3)
    assert b.kv_cells_used() == 5
    b.execute(StepPlan(kv_ops=[KvOp("rm", 0, p0=0)]))
    assert b.kv_cells_used() == 4 and b.kv_tokens(0) == ()
    b.execute(StepPlan(kv_ops=[KvOp("rm", 1, p0=2)]))
    assert b.kv_tokens(1) == (5, 6) and b.kv_cells_used() == 2


def test_kv_full_fails_without_changing_the_cache() -> None:
    b = FakeBackend(n_ctx=8)
    b.start_request("r", GREEDY)
    feed(b, "r", 0, [5] * 6, 0)
    with pytest.raises(EngineFailure, match="No free KV"):
        feed(b, "r", 1, [5] * 3, 0)
    assert b.kv_tokens(1) == () and b.kv_cells_used() == 6
    feed(b, "r", 1, [5] * 2, 0)


@pytest.mark.parametrize(
    ("plan", "match"),
    [
        (StepPlan(items=[BatchItem("r", 0, (5,), 3, True)]), "position"),
        (StepPlan(items=[BatchItem("r", 9, (5,), 0, True)]), "out of range"),
        (StepPlan(items=[BatchItem("r", 0, (), 0, True)]), "without tokens"),
        (StepPlan(items=[BatchItem("nobody", 0, (5,), 0, True)]), "no sampler"),
        (StepPlan(items=[BatchItem("r", 0, (5,), 0, False), BatchItem("r", 0, (6,), 1, True)]), "twice"),
        (StepPlan(items=[BatchItem("r", 0, (5,) * 20, 0, True)]), "n_batch"),
        (StepPlan(kv_ops=[KvOp("cp", 1, p1=5, src=0)]), "holds only"),
        (StepPlan(kv_ops=[KvOp("cp", 1, p1=1, src=7)]), "out of range"),
    ],
)
def test_engine_bugs_fail_loudly(plan: StepPlan, match: str) -> None:
    b = FakeBackend(n_batch=16)
    b.start_request("r", GREEDY)
    with pytest.raises(EngineFailure, match=match):
        b.execute(plan)


def test_cp_into_a_busy_slot_fails() -> None:
    b = FakeBackend()
    b.start_request("r", GREEDY)
    feed(b, "r", 0, [5, 6], 0)
    feed(b, "r", 1, [7], 0)
    with pytest.raises(EngineFailure, match="clear it first"):
        b.execute(StepPlan(kv_ops=[KvOp("cp", 1, p1=2, src=0)]))


def test_logit_bias_against_the_scripted_token() -> None:
    b = FakeBackend(script=reply_script("a"))
    a = encode_text("a")[0]
    out = generate(b, b.tokenize("x"), SamplingParams(logit_bias=((a, -100.0),)), max_new=1)
    assert out and out[0] != a


def test_delay_is_applied_per_step() -> None:
    b = FakeBackend(delay_s=0.01)
    b.start_request("r", GREEDY)
    import time

    t0 = time.perf_counter()
    feed(b, "r", 0, [5], 0)
    assert time.perf_counter() - t0 >= 0.01
