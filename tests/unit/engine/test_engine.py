"""The step loop (engine/engine.py) over the fake backend: how text ends, and how closing races with requests and
with a running step. Races are staged with events, never with sleeps that hope for an order."""

from __future__ import annotations

import asyncio
import threading

import pytest

from inhouse.config import EngineSettings
from inhouse.engine.backends.fake import EOS_ID, N_VOCAB, FakeBackend, ScriptInput
from inhouse.engine.engine import Engine
from inhouse.engine.params import Delta, GenerationRequest, SamplingParams
from inhouse.engine.protocol import StepPlan
from inhouse.errors import Unavailable

# Byte-level BPE vocabularies have tokens that end inside a character: "好" plus 2 of the 3 bytes of "世".
NI, HAO_AND_PART = N_VOCAB + 1, N_VOCAB


class MultiByteBackend(FakeBackend):
    def token_piece(self, token: int) -> bytes:
        pieces = {NI: "你".encode(), HAO_AND_PART: "好".encode() + "世".encode()[:2]}
        return pieces[token] if token in pieces else super().token_piece(token)


def reply_ni_hao_then_eos(inp: ScriptInput) -> int:
    return [NI, HAO_AND_PART, EOS_ID][min(len(inp.generated), 2)]


def generate_text(engine: Engine, rid: str, params: SamplingParams) -> tuple[str, Delta]:
    async def go() -> list[Delta]:
        return [d async for d in engine.generate(GenerationRequest(rid, engine.tokenize("hi"), params))]

    deltas = asyncio.run(go())
    return "".join(d.text for d in deltas), deltas[-1]


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        (("好",), "你"),
        (("你好",), ""),
        ((), "你好"),  # EOS after a partial character: its bytes are dropped, as after a stop string
    ],
)
def test_bytes_of_a_partial_character_after_a_stop_string_are_dropped(stop: tuple[str, ...], expected: str) -> None:
    engine = Engine("m", MultiByteBackend(script=reply_ni_hao_then_eos), EngineSettings())
    try:
        text, last = generate_text(engine, "r", SamplingParams(max_tokens=8, temperature=0, stop=stop))
    finally:
        engine.close()
    assert (text, last.finish_reason) == (expected, "stop")


class BlockingBackend(FakeBackend):
    """Holds ``start_request`` of request "late" or the first ``execute`` until ``release`` is set; records when
    ``close`` runs relative to them."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.entered, self.release = threading.Event(), threading.Event()
        self.busy = False
        self.closed_while_busy: list[bool] = []

    def start_request(self, request_id: str, params: SamplingParams) -> None:
        super().start_request(request_id, params)
        if request_id == "late":  # a grammar being compiled, say
            self._hold()

    def execute(self, plan: StepPlan) -> dict[str, int]:
        if plan.items and not self.entered.is_set():
            self._hold()
        return super().execute(plan)

    def _hold(self) -> None:
        self.busy = True
        self.entered.set()
        assert self.release.wait(10)
        self.busy = False

    def close(self) -> None:
        self.closed_while_busy.append(self.busy)
        super().close()


def test_a_request_that_arrives_while_the_engine_closes_is_refused_not_left_hanging() -> None:
    backend = BlockingBackend()
    engine = Engine("m", backend, EngineSettings())
    raised: list[Exception] = []
    got: list[Delta] = []

    def client() -> None:
        try:
            engine.submit(GenerationRequest("late", engine.tokenize("hello"), SamplingParams(max_tokens=4)),
                          got.append)
        except Exception as exc:
            raised.append(exc)

    t = threading.Thread(target=client)
    t.start()
    assert backend.entered.wait(10)
    engine.close()  # idle release while "late" builds its sampler: the step thread is gone
    assert backend.closed_while_busy == [], "the backend was freed under start_request"
    backend.release.set()
    t.join(10)
    assert not got and len(raised) == 1 and isinstance(raised[0], Unavailable)
    assert "unloading; retry" in raised[0].message
    assert backend.closed_while_busy == [False]  # freed once, by the submit that used it last


def test_close_never_frees_the_backend_under_a_running_step() -> None:
    backend = BlockingBackend()
    engine = Engine("m", backend, EngineSettings())
    got: list[Delta] = []
    engine.submit(GenerationRequest("r", engine.tokenize("hello"), SamplingParams(max_tokens=4)), got.append)
    assert backend.entered.wait(10)
    engine.close(timeout_s=0.01)  # the step outlives the timeout
    assert backend.closed_while_busy == []
    assert [d.error_code for d in got] == ["model_unloaded"]
    backend.release.set()
    engine._thread.join(10)
    assert backend.closed_while_busy == [False]  # the step thread freed it on its way out
    engine.close()  # idempotent: not freed twice
    assert backend.closed_while_busy == [False]
