"""The frames and codecs of the engine process boundary (engine/wire.py)."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from inhouse.engine.params import Delta, TokenLogprob
from inhouse.engine.wire import (
    FrameReader,
    delta_from_wire,
    delta_to_wire,
    encode,
    error_from_wire,
    error_to_wire,
)
from inhouse.errors import ContextLengthExceeded, EngineFailure, InvalidRequest, Overloaded


def test_frames_split_and_joined_arbitrarily_come_out_whole_and_in_order() -> None:
    a, b = socket.socketpair()
    with a, b:
        messages = [("deltas", [(f"req_{i}", "x" * i, [i], None, 0, i, 0, None, None)]) for i in range(50)]
        data = b"".join(encode(m) for m in messages)
        # One byte, then odd-sized pieces: frames straddle every recv boundary.
        pieces = [data[:1]] + [data[i:i + 37] for i in range(1, len(data), 37)]
        for piece in pieces:
            a.sendall(piece)
        a.shutdown(socket.SHUT_WR)
        reader = FrameReader(b)
        got: list[object] = []
        while (frames := reader.read()) is not None:
            got.extend(frames)
        assert got == messages


def test_a_reader_behind_gets_the_backlog_in_one_read() -> None:
    a, b = socket.socketpair()
    with a, b:
        for i in range(20):
            a.sendall(encode(("reply", i, True, i)))
        frames = FrameReader(b).read()
        assert frames is not None and len(frames) == 20


def test_end_of_stream_is_none() -> None:
    a, b = socket.socketpair()
    with b:
        a.close()
        assert FrameReader(b).read() is None


def test_delta_round_trip_keeps_every_field() -> None:
    lp = [TokenLogprob(5, b"h", -0.1, ((5, b"h", -0.1), (9, b"x", -2.5))), TokenLogprob(6, b"\xc3\xa9", -0.7)]
    d = Delta("req_1", text="hé", token_ids=[5, 6], finish_reason="error", n_prompt_tokens=3,
              n_generated_tokens=2, n_cached_tokens=1, error="boom", logprobs=lp,
              prompt_logprobs=[TokenLogprob(1, b"<s>", 0.0)], error_code="engine_crashed",
              retry_after_s=4.5)
    # Every field set to something other than its default, so a field the wire forgets (or puts in another
    # field's place) shows here.
    defaults = Delta("req_1")
    assert all(getattr(d, f.name) != getattr(defaults, f.name) for f in dataclasses.fields(Delta)
               if f.name != "request_id")
    assert len(delta_to_wire(d)) == len(dataclasses.fields(Delta))
    assert delta_from_wire(encode_decode(delta_to_wire(d))) == d


def encode_decode(t: tuple[object, ...]) -> tuple[object, ...]:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(encode(("deltas", [t])))
        [(_, [back])] = FrameReader(b).read() or []
        return back  # type: ignore[no-any-return]


@pytest.mark.parametrize("exc", [
    Overloaded("queue full", retry_after_s=7.0),
    ContextLengthExceeded(5000, 2048, max_tokens=1),
    InvalidRequest("bad grammar", param="grammar"),
])
def test_domain_errors_cross_with_their_class_and_attributes(exc: Exception) -> None:
    back = error_from_wire(error_to_wire(exc))
    assert type(back) is type(exc)
    assert vars(back) == vars(exc)
    assert str(back) == str(exc)


def test_other_errors_become_an_engine_failure_naming_their_type() -> None:
    back = error_from_wire(error_to_wire(ValueError("no")))
    assert isinstance(back, EngineFailure) and "ValueError: no" in back.message


def test_read_nowait_returns_whole_frames_as_they_come_and_tells_the_end() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.setblocking(False)
        reader = FrameReader(b)
        assert reader.read_nowait() == ([], False)  # nothing yet: no wait, no end
        data = encode(("deltas", [("r", "x")])) + encode(("deltas", [("r", "y")]))
        a.sendall(data[:7])
        assert reader.read_nowait() == ([], False)  # half a frame stays buffered
        a.sendall(data[7:])
        assert reader.read_nowait() == ([("deltas", [("r", "x")]), ("deltas", [("r", "y")])], False)
        big = [("deltas", [("r", "z" * 25_000)]) for _ in range(4)]  # more than one recv holds
        a.sendall(b"".join(encode(m) for m in big))
        a.close()
        frames, ended = reader.read_nowait(drain=True)
        assert frames == big and ended
