"""The keyword terms (pure): what the query side asks for is what the index side holds, for both stores."""

from __future__ import annotations

from inhouse.kb.index.keywords import index_terms, keyword_terms, like_escape, rarest_terms
from inhouse.kb.index.postgres.store import tsquery_literal, tsvector_literal


def test_query_terms_are_among_the_index_terms_of_a_matching_text() -> None:
    text = "Annual leave: 18 days. 工作日加班按 1.5 倍工资计算。 VPN port 51820, part X-200."
    long, short = keyword_terms("annual leave 工作日加班 x-200 P3 的")
    assert set(long) <= set(index_terms(text)) and "工作日" in long and "x-200" in long
    assert short == ["p3", "的"]  # too short for the index: the LIKE fallback's


def test_index_terms_keep_order_and_repeats() -> None:
    assert index_terms("leave leave the leave") == ["leave", "leave", "leave"]  # stop words dropped


def test_literals_quote_what_could_break_them() -> None:
    assert tsvector_literal("it's o'clock leave leave") == "'clock':1 'leave':2,3"
    assert tsquery_literal(["leave", "工作日"]) == "'leave':* | '工作日'"
    assert tsquery_literal(["o'neil"]) == "'o''neil':*"
    assert like_escape("50%_off\\") == "50\\%\\_off\\\\"


def test_rarest_terms_leave_out_the_most_frequent_within_a_budget() -> None:
    shares = {"common": 0.9, "often": 0.04, "sometimes": 0.02, "seldom": 0.01}
    share = shares.get  # None: too rare to be counted
    terms = ["common", "needle", "often", "sometimes", "seldom", "工作日"]
    # Rarest first while the known shares add up to 0.05; unknown terms always stay; the order is kept.
    assert rarest_terms(terms, share, 0.05) == ["needle", "sometimes", "seldom", "工作日"]
    assert rarest_terms(terms, share, 0.1) == ["needle", "often", "sometimes", "seldom", "工作日"]
    assert rarest_terms(terms, share, 1.0) == terms
    # Every term frequent: the rarest one alone, even above the budget.
    assert rarest_terms(["common", "often"], share, 0.01) == ["often"]
    assert rarest_terms([], share, 0.05) == []
