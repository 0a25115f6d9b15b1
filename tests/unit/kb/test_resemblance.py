"""The sketch-based resemblance a sync uses to recognise a moved and edited file: close to the exact Jaccard index of
the texts' character 7-gram sets, exact on short texts, blind to case, whitespace and where an edit falls."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inhouse.kb.resemblance import SKETCH_SIZE, resemblance, sketch


def exact(a: str, b: str) -> float:
    def grams(t: str) -> set[str]:
        t = " ".join(t.split()).casefold()
        return {t[i:i + 7] for i in range(max(len(t) - 6, 1))} if t else set()

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb) if ga | gb else 0.0


def words(rng: random.Random, n: int) -> list[str]:
    vocab = ["hotel", "limit", "travel", "approval", "manager", "receipt", "quarter", "board", "budget", "vendor",
             "contract", "renewal", "差旅", "报销", "审批", "预算", "合同", "供应商"]
    return [rng.choice(vocab) + str(rng.randrange(100)) for _ in range(n)]


def test_identical_texts_resemble_fully_and_unrelated_ones_not_at_all() -> None:
    rng = random.Random(1)
    text = " ".join(words(rng, 3000))
    assert resemblance(sketch([text]), sketch([text])) == 1.0
    assert resemblance(sketch([text]), sketch(["Parental leave is twenty weeks, paid in full."])) == 0.0
    assert resemblance(sketch([]), sketch([text])) == 0.0 and len(sketch([""])) == 0
    assert len(sketch([text])) == SKETCH_SIZE  # a long text is a fixed-size sample


def test_case_whitespace_and_chunk_boundaries_do_not_count() -> None:
    a = sketch(["The Hotel limit\n\n is 1,200 CNY per night.", "Receipts within 30 days."])
    b = sketch(["the hotel   LIMIT is 1,200 cny per night. receipts within 30 days."])
    assert resemblance(a, b) == 1.0


@pytest.mark.parametrize("edited_share", [0.02, 0.1, 0.3, 0.6])
def test_the_estimate_is_close_to_the_exact_index_on_long_texts(edited_share: float) -> None:
    rng = random.Random(int(edited_share * 100))
    old = words(rng, 4000)
    new = [w if rng.random() > edited_share else rng.choice(["changed", "新的"]) + w for w in old]
    a, b = " ".join(old), " ".join(new)
    assert abs(resemblance(sketch([a]), sketch([b])) - exact(a, b)) < 0.1


@given(st.text(max_size=40), st.text(max_size=40))
def test_short_texts_compare_exactly(a: str, b: str) -> None:
    """Fewer than 256 shingles: the sketch is the whole set, so the index is exact (up to 64-bit collisions)."""
    sa, sb = sketch([a]), sketch([b])
    if len(sa) and len(sb):
        assert resemblance(sa, sb) == pytest.approx(exact(a, b))
