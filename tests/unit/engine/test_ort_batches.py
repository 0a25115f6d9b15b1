"""The ONNX Runtime encoder's batch plan and row order (pure functions; the encoder itself runs in
tests/unit/kb/test_embed_local.py on a tiny model)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from inhouse.engine.backends.ort.embed import plan_batches, special_rows_first


@given(st.lists(st.integers(1, 512), max_size=200), st.integers(512, 4096), st.integers(1, 4))
def test_every_sequence_is_in_exactly_one_batch_longest_first(lengths: list[int], budget: int, workers: int) -> None:
    batches = plan_batches(lengths, budget, workers)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(b for b in batches)
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


def test_batches_are_balanced_over_the_workers() -> None:
    lengths = [84] * 64  # a call of the corpus's chunks: 5,376 tokens
    batches = plan_batches(lengths, 2048, 2)
    assert len(batches) == 4  # 3 would leave one worker idle for the last third
    assert max(map(len, batches)) - min(map(len, batches)) <= 1
    assert len(plan_batches(lengths, 2048, 1)) == 3
    assert plan_batches([500, 400, 20, 10], 2048, 2) == [[0], [1, 2, 3]]
    assert plan_batches([], 2048, 2) == []
    assert plan_batches([7], 2048, 2) == [[0]]  # a query: one batch, never split


def test_special_rows_come_first() -> None:
    assert special_rows_first(5).tolist() == [0, 4, 1, 2, 3]
    assert special_rows_first(2).tolist() == [0, 1]
    assert special_rows_first(1).tolist() == [0]
