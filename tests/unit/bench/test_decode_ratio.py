"""The decode ratio of the shapes benchmark: in-process tokens counted as tokens, server and baseline paired."""

from __future__ import annotations

import pytest
from benchmarks.inproc import token_rate
from benchmarks.shapes import paired_ratio, parse_args


def test_token_rate_counts_evaluated_tokens_not_chunks() -> None:
    # Llama-2/Qwen streaming as measured on the Qwen2.5-7B shape: 22 chunks one token apart (0.1 s), then the
    # other 40 chunks held back and released together when the 64th token is done: 62 chunks for 64 tokens.
    times = [1.0 + 0.1 * i for i in range(22)] + [1.0 + 0.1 * 63] * 40
    evaluated = [48 + i for i in range(22)] + [48 + 63] * 40
    assert token_rate(times, evaluated) == pytest.approx(10.0)
    chunk_rate = (len(times) - 1) / (times[-1] - times[0])
    assert chunk_rate == pytest.approx(61 / 6.3)  # what counting chunks said: 3 % low


def test_token_rate_needs_two_points_in_time_and_progress() -> None:
    assert token_rate([], []) is None
    assert token_rate([1.0], [5]) is None
    assert token_rate([1.0, 1.0], [5, 6]) is None  # all at once: no span to divide by
    assert token_rate([1.0, 2.0], [5, 5]) is None


def test_paired_ratio_is_the_median_of_each_rounds_ratio() -> None:
    pairs = [
        {"server": {"decode_tok_s": 9.0}, "inproc": {"decode_tok_s": 9.0}},  # a slow minute: both slow
        {"server": {"decode_tok_s": 10.0}, "inproc": {"decode_tok_s": 10.0}},  # a fast one: both fast
        {"server": {"decode_tok_s": 10.3}, "inproc": {"decode_tok_s": 9.8}},
        {"server": {"decode_tok_s": None}, "inproc": {"decode_tok_s": 9.5}},  # a failed run is left out
    ]
    out = paired_ratio(pairs)
    assert out["ratios"] == pytest.approx([1.0, 1.0, 10.3 / 9.8])
    assert out["ratio_median"] == pytest.approx(1.0)
    assert out["server_median"] == pytest.approx(10.0) and out["inproc_median"] == pytest.approx(9.8)
    # the best server run over the best baseline run (the old figure) would have said 1.03; the slowest server
    # run over the best baseline 0.92: pairing is what removes the machine's drift from the ratio
    assert paired_ratio([])["ratio_median"] is None


def test_steps_default_to_all_and_parse_a_subset() -> None:
    base = ["--model", "qwen2.5-7b-shape", "--quant", "q4_k_m"]
    assert parse_args(base).steps == {"prefix", "decode", "clients", "stall"}
    assert parse_args([*base, "--steps", "decode,clients"]).steps == {"decode", "clients"}
    assert parse_args(base).paired_rounds == 4
