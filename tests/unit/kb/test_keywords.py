"""The keyword terms (pure): what the query side asks for is what the index side holds, for both stores."""

from __future__ import annotations

from inhouse.kb.index.keywords import index_terms, keyword_terms, like_escape, rarest_terms, word_terms
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


def test_index_terms_add_the_parts_of_a_joined_name() -> None:
    assert index_terms("Use os.chmod or file_range") == ["use", "os.chmod", "chmod", "file_range", "file", "range"]
    assert "chmod" in index_terms("os.chmod") and "chmod" not in index_terms("chmodx")


def test_tsvector_weighs_title_and_section_path() -> None:
    """``title\\nsection\\ntext`` as the PostgreSQL store writes a chunk row: title terms A, section terms B."""
    assert tsvector_literal("Leave policy\nHolidays > Annual\nannual leave days", "Holidays > Annual") == (
        "'leave':1A,6 'policy':2A 'holidays':3B 'annual':4B,5 'days':7")
    assert tsvector_literal("Leave policy\nannual leave", "") == "'leave':1A,4 'policy':2A 'annual':3"


def test_word_terms() -> None:
    assert word_terms("How do I use os.chmod in the subprocess module?") == ["use", "os chmod", "subprocess", "module"]
    assert word_terms("X200 保修多久 for ipv6") == ["x200", "ipv6"]  # codes are words too (and substrings)
    assert word_terms('"quoted" OR NEAR(') == ["quoted", "near"]


def test_a_latin_term_ends_where_cjk_begins() -> None:
    """"X200路由器…" is a code and Chinese: one Latin token of both held the Chinese no CJK window could find."""
    long, _ = keyword_terms("X200路由器的默认密码是什么？")
    assert long[:3] == ["x200", "路由器", "由器的"]
    assert index_terms("X200路由器的默认密码是admin") == ["x200", "路由器", "由器的", "器的默", "的默认", "默认密",
                                                      "认密码", "密码是", "admin"]
    assert keyword_terms("P3级故障") == (["级故障"], ["p3"])
    assert word_terms("X200路由器 admin密码") == ["x200", "admin"]


def test_codes_are_words_and_substrings() -> None:
    """The word index holds "P3级故障需要" and "X200路由器" as one token (a word query of ``p3`` or ``x200`` finds
    nothing there), but an English page's "P3 engineer" only as a word: codes are both (sqlite/keyword.py)."""
    assert word_terms("P3 incident on os, X200 51820") == ["p3", "incident", "os", "x200", "51820"]
    assert keyword_terms("P3 incident on os, X200 51820") == (["incident", "x200", "51820"], ["p3"])


def test_word_terms_fold_as_the_word_index_does() -> None:
    """What ``unicode61 remove_diacritics 2`` stores for each word (checked against SQLite in test_index_words)."""
    assert word_terms("Jürgen Müller, Zürich café; İstanbul ŁÓDŹ") == ["jurgen", "muller", "zurich", "cafe",
                                                                     "istanbul", "łodz"]
    assert word_terms("Straße ΣΊΣΥΦΟΣ Привет") == ["straße", "σίσυφοσ", "привет"]
    assert word_terms("cafe\u0301-bar") == ["cafe bar"]  # decomposed accent
