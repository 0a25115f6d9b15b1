"""The refund hand-over reads amounts written in Chinese numerals (五千元, 两万, 一万二千块, 三千五, 1万2千) and hands
over a refund in another currency than the threshold's whatever its size (no exchange rates offline)."""

from __future__ import annotations

import pytest

from inhouse.apps.numerals import zh_number
from inhouse.apps.support.rules import REFUND, Amount, check_message, parse_rules, refund_requests

RULES = parse_rules([("faq", "The assistant hands the conversation to a human agent when a refund above\n"
                              "2,000 CNY is requested.")])


@pytest.mark.parametrize(("numerals", "value"), [
    ("五千", 5000), ("两万", 20_000), ("一万二千", 12_000), ("一万二", 12_000), ("三千五", 3500), ("两百五", 250),
    ("一万零五", 10_005), ("三千零五十", 3050), ("十五", 15), ("二十", 20), ("一百二十", 120), ("1万2千", 12_000),
    ("一亿二千万", 120_000_000), ("二三", None),
])
def test_chinese_numerals(numerals: str, value: float | None) -> None:
    assert zh_number(numerals) == value


@pytest.mark.parametrize("message", ["我要退款五千元", "我要求退款两万元", "请退款一万二千块", "退款三千五百元",
                                     "帮我退款1万2千", "我要退款两千零一元"])
def test_refunds_above_the_threshold_in_chinese_numerals_are_handed_over(message: str) -> None:
    assert RULES.currency == "CNY" and RULES.refund_threshold == 2000
    handoff = check_message(message, RULES)
    assert handoff is not None and handoff.reason == REFUND, message


@pytest.mark.parametrize("message", ["我要退款一千元", "请退款五百块", "万一退款失败怎么办?", "退款的话十五天内能到吗",
                                     "我买了一件衣服,要退款"])
def test_small_amounts_and_words_that_look_like_numerals_are_not(message: str) -> None:
    assert check_message(message, RULES) is None, message


@pytest.mark.parametrize("message", ["Please refund my 1,200 USD", "refund $300 please", "I want a refund of 50 EUR",
                                     "请退款200美元", "退款一百美金"])
def test_a_refund_in_another_currency_is_handed_over_whatever_its_size(message: str) -> None:
    handoff = check_message(message, RULES)
    assert handoff is not None and handoff.reason == REFUND and "not in the CNY" in handoff.detail, message


def test_amounts_keep_their_currency() -> None:
    assert refund_requests("Please refund my 1,200 USD") == [Amount(1200, "USD")]
    assert refund_requests("请退款一万二千块") == [Amount(12_000, "CNY")]
    assert refund_requests("refund 2.5k please") == [Amount(2500, "")]  # no currency: the threshold's
    assert refund_requests("refund the 2.5kg parcel please") == []  # kg is not thousands


def test_a_threshold_without_currency_compares_the_numbers() -> None:
    rules = parse_rules([("c", "Refunds over 2000 need approval.")])
    assert rules.currency == "" and check_message("refund 1,200 USD", rules) is None
    assert parse_rules([("c", "Refunds over $500 need a manager.")]).currency == "USD"
