"""The support assistant's deterministic handoff rules: refund amounts in messages and thresholds in documents,
with decimals and multipliers (k, 千, 万)."""

from __future__ import annotations

import pytest

from inhouse.apps.support.rules import REFUND, check_message, parse_rules, refund_amounts

RULES = parse_rules([("c1", "Escalate any refund above 2,000 CNY to a person.")])


@pytest.mark.parametrize(("message", "expected"), [
    ("I want a refund of 2.5k CNY for the broken controller", [2500.0]),
    ("我要退款0.8万元", [8000.0]),
    ("我要申请退款 2.9千元", [2900.0]),
    ("Please refund 2000.99 CNY", [2000.99]),
    ("Please refund 1,999.50 CNY", [1999.5]),
    ("please refund 1500.50", [1500.5]),  # a bare amount: its whole part decides whether it is an order number
    ("refund order 12345678.5 please", []),
])
def test_refund_amounts_keep_their_decimals(message: str, expected: list[float]) -> None:
    assert refund_amounts(message) == expected


@pytest.mark.parametrize("message", ["I want a refund of 2.5k CNY", "我要退款0.8万元", "Please refund 2000.99 CNY"])
def test_refunds_above_the_threshold_by_a_fraction_are_handed_over(message: str) -> None:
    handoff = check_message(message, RULES)
    assert handoff is not None and handoff.reason == REFUND


def test_thresholds_with_decimals() -> None:
    assert parse_rules([("c", "Refunds over 1,500.50 CNY need approval.")]).refund_threshold == 1500.5
    assert parse_rules([("c", "申请 2000.5 元以上退款须人工审核。")]).refund_threshold == 2000.5
    assert check_message("refund 1999.99 CNY please", RULES) is None
