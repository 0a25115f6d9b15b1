"""Deterministic handoff rules, checked in Python before any model runs.

Three triggers come from the message itself: the customer asks for a person (English and Chinese phrasings), the
customer reports a safety problem (smoke, fire, electric shock, burning smell, 冒烟, 起火, 触电…), or a refund above
the threshold. The threshold is not a constant: ``parse_rules`` reads it from the support documents (sentences such
as "a refund above 2,000 CNY" or "申请 2000 元以上退款"), and safety words listed there are added to the built-in
ones. The fourth trigger (retrieval found nothing twice in a row) is kept by the session.

Amounts in a message are read in digits ("3000 元", "2.5k", "1,200 USD", "0.8万") and in Chinese numerals ("五千元",
"两万", "一万二千块", "三千五", "1万2千"). An amount in another currency than the threshold's (1,200 USD against a
limit in CNY) is handed over whatever its size: there are no exchange rates offline, and a person is the safe
answer. An amount without a currency is taken to be in the threshold's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from inhouse.apps.numerals import zh_number

HUMAN = "human_requested"
SAFETY = "safety"
REFUND = "refund_threshold"
NO_ANSWER = "no_answer"

_HUMAN_RE = re.compile(
    r"\b(talk|speak|chat)\s+(to|with)\s+(a|an|some|one|your)?\s*(real\s+)?(person|human|agent|representative|"
    r"operator|someone|somebody|people)\b|"
    r"\b(human|live|real)\s+(agent|person|support|operator|being)\b|"
    r"\b(connect|transfer|put)\s+me\s+(to|through\s+to|with)\s+(a|an)?\s*(human|person|agent|representative|"
    r"operator|someone)\b|"
    r"\b(i\s+want|i\s+need|give\s+me|get\s+me)\s+(a|an)?\s*(human|person|agent|representative|operator)\b|"
    r"\bcustomer\s+service\s+(agent|representative|rep)\b",
    re.IGNORECASE,
)
_HUMAN_ZH = ("人工客服", "转人工", "人工服务", "找人工", "接人工", "要人工", "人工坐席", "真人客服", "找真人",
             "客服人员")
_SAFETY_WORDS = (
    "smoke", "smoking", "smoked", "fire", "flame", "flames", "burning", "burned", "burnt", "caught fire", "shock",
    "shocked", "electrocuted", "electric shock", "sparks", "sparking", "explode", "exploded", "explosion",
    "melted", "melting", "overheating", "冒烟", "起火", "着火", "火灾", "触电", "漏电", "电击", "烧焦", "爆炸", "火花",
)
_REFUND_WORDS = ("refund", "reimburse", "money back", "charge back", "chargeback", "退款", "退钱", "返还", "退还")
_CUR_PREFIX = r"cny|rmb|usd|eur|gbp|hkd|jpy|us\$|hk\$|¥|￥|\$|€|£"
_CUR_SUFFIX = (r"cny|rmb|usd|eur|gbp|hkd|jpy|yuan|dollars?|euros?|pounds?|美元|美金|欧元|英镑|港币|港元|日元|人民币|"
               r"元|块|圆")
_AMOUNT_RE = re.compile(
    rf"(?:(?P<cur1>{_CUR_PREFIX})\s*)?(?P<num>(?P<whole>\d{{1,3}}(?:[,，]\d{{3}})+|\d+)(?:\.\d+)?)\s*"
    rf"(?P<mult>k|千|万)?\s*(?P<cur2>{_CUR_SUFFIX})?(?![a-z])",
    re.IGNORECASE,
)
# Chinese numerals, alone or mixed with digits: 五千, 两万, 一万二千, 三千五, 1万2千. A run starts with a number (not a
# unit: 万一 is "in case", 千万 "by all means") and needs a numeral character or a unit after digits; digits with one
# trailing multiplier (3千, 1.2万) are _AMOUNT_RE's.
_ZH_BIG = {"万": 10_000, "亿": 100_000_000}
_ZH_AMOUNT_RE = re.compile(
    r"(?P<num>(?:\d+(?:\.\d+)?|[零〇一二两三四五六七八九十])(?:\d+(?:\.\d+)?|[零〇一二两三四五六七八九十百千万亿])*)"
    rf"\s*(?P<cur>{_CUR_SUFFIX})?",
    re.IGNORECASE,
)
# Threshold sentences in the documents: "refund above 2,000 CNY", "refunds over ¥2000", "2000 元以上退款".
_RULE_EN_RE = re.compile(
    r"refunds?\s+(?:request\s+)?(?:of\s+|is\s+)?(?:above|over|exceeding|greater\s+than|more\s+than|larger\s+than)"
    r"\s+(?P<sym>¥|￥|\$|€)?\s*(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)\s*(?P<cur>CNY|RMB|USD|EUR|yuan|元)?",
    re.IGNORECASE,
)
_RULE_ZH_RE = re.compile(r"(?P<num>(?:\d{1,3}(?:[,，]\d{3})+|\d+)(?:\.\d+)?)\s*(?P<cur>元|块|美元)?\s*"
                         r"(?:以上|及以上)的?\s*退款|退款[^。\n]{0,8}?(?:超过|高于|大于)\s*"
                         r"(?P<num2>(?:\d{1,3}(?:[,，]\d{3})+|\d+)(?:\.\d+)?)\s*(?P<cur2>元|美元)?")
_SAFETY_LIST_RE = re.compile(
    r"safety\s+(?:problem|issue|hazard)s?\s*\(([^)]{1,200})\)|(?:报告|出现)([^。\n]{1,40}?)等安全问题", re.IGNORECASE)


@dataclass(frozen=True)
class HandoffRules:
    refund_threshold: float | None = None  # None: the documents set none, the refund rule is off
    currency: str = ""
    safety_words: tuple[str, ...] = _SAFETY_WORDS
    sources: tuple[str, ...] = ()  # chunk ids the rules were read from

    def to_dict(self) -> dict[str, object]:
        return {"refund_threshold": self.refund_threshold, "currency": self.currency,
                "safety_words": list(self.safety_words), "sources": list(self.sources)}


@dataclass(frozen=True)
class Amount:
    value: float
    currency: str  # "" when the message names none


@dataclass(frozen=True)
class Handoff:
    reason: str  # one of HUMAN, SAFETY, REFUND, NO_ANSWER
    detail: str = ""


@dataclass
class _Found:
    thresholds: list[tuple[float, str]] = field(default_factory=list)
    safety: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("，", ""))


def _currency(value: str | None) -> str:
    if not value:
        return ""
    v = value.lower()
    return {"rmb": "CNY", "yuan": "CNY", "元": "CNY", "块": "CNY", "圆": "CNY", "人民币": "CNY", "¥": "CNY",
            "￥": "CNY", "$": "USD", "us$": "USD", "dollar": "USD", "dollars": "USD", "美元": "USD", "美金": "USD",
            "€": "EUR", "euro": "EUR", "euros": "EUR", "欧元": "EUR", "£": "GBP", "pound": "GBP", "pounds": "GBP",
            "英镑": "GBP", "hk$": "HKD", "港币": "HKD", "港元": "HKD", "日元": "JPY"}.get(v, v.upper())


def parse_rules(passages: Iterable[tuple[str, str]]) -> HandoffRules:
    """Rules from ``(chunk_id, text)`` passages of the support documents. Several thresholds (English and Chinese
    versions of one rule): the lowest wins, the cautious choice."""
    found = _Found()
    for chunk_id, text in passages:
        hit = False
        for m in _RULE_EN_RE.finditer(text):
            found.thresholds.append((_number(m["num"]), _currency(m["cur"] or m["sym"])))
            hit = True
        for m in _RULE_ZH_RE.finditer(text):
            num, cur = (m["num"], m["cur"]) if m["num"] else (m["num2"], m["cur2"])
            found.thresholds.append((_number(num), _currency(cur) or "CNY"))
            hit = True
        for m in _SAFETY_LIST_RE.finditer(text):
            listed = m.group(1) or m.group(2) or ""
            found.safety += [w.strip().lower() for w in re.split(r"[,，、/]|\bor\b|\band\b", listed) if w.strip()]
            hit = True
        if hit:
            found.sources.append(chunk_id)
    threshold, currency = (min(found.thresholds) if found.thresholds else (None, ""))
    words = tuple(dict.fromkeys([*_SAFETY_WORDS, *(w for w in found.safety if 1 < len(w) <= 30)]))
    return HandoffRules(threshold, currency, words, tuple(dict.fromkeys(found.sources)))


def wants_human(text: str) -> bool:
    return bool(_HUMAN_RE.search(text)) or any(p in text for p in _HUMAN_ZH)


def safety_problem(text: str, rules: HandoffRules) -> str | None:
    low = text.lower()
    for word in rules.safety_words:
        if re.fullmatch(r"[a-z ]+", word):
            if re.search(rf"\b{re.escape(word)}\b", low):
                return word
        elif word in low:
            return word
    return None


def refund_requests(text: str) -> list[Amount]:
    """Amounts, with their currency when named, in a message that talks about a refund (empty when it does not)."""
    low = text.lower()
    if not any(w in low for w in _REFUND_WORDS):
        return []
    marked: list[Amount] = []
    bare: list[Amount] = []
    taken: list[tuple[int, int]] = []
    for m in _ZH_AMOUNT_RE.finditer(low):
        num = m["num"]
        if not re.search(r"[零〇一二两三四五六七八九十百]", num) and not re.search(r"[千万亿]\d", num):
            continue  # digits only, or digits with one multiplier (3千): read below
        value = zh_number(num)
        if value is None:
            continue
        taken.append(m.span())
        amount = Amount(value, _currency(m["cur"]))
        if m["cur"] or re.search(r"[千万亿]", num):
            marked.append(amount)
        elif 100 <= value < 1_000_000:
            bare.append(amount)
    for m in _AMOUNT_RE.finditer(low):
        if any(a < m.end() and m.start() < b for a, b in taken):
            continue
        value = _number(m["num"])  # with its decimals, before the multiplier: "2.5k" is 2,500, "0.8万" 8,000
        mult = (m["mult"] or "").lower()
        value *= {"k": 1000, "千": 1000, "万": 10000}.get(mult, 1)
        amount = Amount(value, _currency(m["cur1"] or m["cur2"]))
        if m["cur1"] or m["cur2"] or mult or "," in m["num"]:
            marked.append(amount)
        elif 100 <= value < 1_000_000 and len(m["whole"]) <= 6:
            bare.append(amount)
    # Money-marked amounts win; a bare number stands in only when none is marked (a long one is an order number,
    # a small one a quantity or a date).
    return marked or bare


def refund_amounts(text: str) -> list[float]:
    """The values of ``refund_requests``, whatever their currency."""
    return [a.value for a in refund_requests(text)]


def check_message(text: str, rules: HandoffRules) -> Handoff | None:
    """The first rule a customer message triggers, in order of urgency: safety, a person, a large refund."""
    word = safety_problem(text, rules)
    if word:
        return Handoff(SAFETY, f"the customer reports a safety problem ({word})")
    if wants_human(text):
        return Handoff(HUMAN, "the customer asked for a person")
    if rules.refund_threshold is not None:
        amounts = refund_requests(text)
        # No exchange rates offline: an amount in another currency than the limit's goes to a person, whatever it is.
        foreign = [a for a in amounts if rules.currency and a.currency and a.currency != rules.currency]
        if foreign:
            a = max(foreign, key=lambda x: x.value)
            return Handoff(REFUND, f"a refund of {a.value:,.2f} {a.currency}, not in the {rules.currency} of the "
                           f"{rules.refund_threshold:,.2f} {rules.currency} limit in the support rules")
        over = [a.value for a in amounts if a.value > rules.refund_threshold]
        if over:
            cur = f" {rules.currency}" if rules.currency else ""
            return Handoff(REFUND, f"a refund of {max(over):,.2f}{cur} is above the {rules.refund_threshold:,.2f}{cur}"
                           " limit in the support rules")
    return None
