"""Business-trip itineraries that apply the travel policy found in the knowledge base.

The policy is retrieved AS the caller (a key that may not read the HR collection gets an itinerary without limits
and a note saying so). Limits are read from the retrieved text deterministically: hotel rows such as
``Tier 1 (Shanghai, Beijing, …) | 1,200 CNY`` and per-diem sentences such as ``200 CNY for domestic travel and
60 USD for international travel`` (English or Chinese). Nothing from the corpus is hard-coded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from inhouse.errors import InvalidRequest
from inhouse.governance.labels import max_label, parse_label

if TYPE_CHECKING:
    from inhouse.kb.retrieve import Hit

POLICY_QUERY = "travel policy hotel limit per night per diem meal allowance 差旅 住宿标准 出差补贴"
MAX_TRIP_DAYS = 60
# Provincial capitals and the largest cities of mainland China: decides "domestic" and matches rows such as
# "other provincial capitals" (general knowledge, not company data).
_CN_CAPITALS = {
    "beijing", "shanghai", "tianjin", "chongqing", "shijiazhuang", "taiyuan", "hohhot", "shenyang", "changchun",
    "harbin", "nanjing", "hangzhou", "hefei", "fuzhou", "nanchang", "jinan", "zhengzhou", "wuhan", "changsha",
    "guangzhou", "nanning", "haikou", "chengdu", "guiyang", "kunming", "lhasa", "xi'an", "xian", "lanzhou",
    "xining", "yinchuan", "urumqi", "北京", "上海", "天津", "重庆", "石家庄", "太原", "呼和浩特", "沈阳", "长春",
    "哈尔滨", "南京", "杭州", "合肥", "福州", "南昌", "济南", "郑州", "武汉", "长沙", "广州", "南宁", "海口", "成都",
    "贵阳", "昆明", "拉萨", "西安", "兰州", "西宁", "银川", "乌鲁木齐",
}
_CN_OTHER = {"shenzhen", "suzhou", "ningbo", "qingdao", "xiamen", "dalian", "wuxi", "dongguan", "foshan",
             "深圳", "苏州", "宁波", "青岛", "厦门", "大连", "无锡", "东莞", "佛山"}
_AMOUNT = r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s*(CNY|RMB|USD|EUR|GBP|元|美元)"
_ROW_RE = re.compile(r"^(?P<label>[^|\n]{2,200}?)\s*\|\s*" + _AMOUNT, re.MULTILINE)
_PER_DIEM_RE = re.compile(_AMOUNT + r"\s*(?:per day\s*)?(?:for|用于)?\s*(domestic|international|国内|国际|境外)",
                          re.IGNORECASE)
_PER_DIEM_ZH_RE = re.compile(r"(国内|国际|境外)[^。\n]{0,20}?" + _AMOUNT)


def _money(value: str) -> float:
    return float(value.replace(",", ""))


def is_domestic(city: str) -> bool:
    c = city.strip().lower()
    return c in _CN_CAPITALS or c in _CN_OTHER or c.endswith(("市", "省"))


@dataclass
class TravelPolicy:
    hotel_rows: list[tuple[str, float, str]] = field(default_factory=list)  # (row label, limit, currency)
    per_diem: dict[str, tuple[float, str]] = field(default_factory=dict)  # 'domestic'/'international' → amount
    sources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.hotel_rows or self.per_diem)

    def hotel_limit(self, city: str) -> tuple[float, str, str] | None:
        """(limit per night, currency, the row applied) for ``city``."""
        c = city.strip().lower()
        named = [r for r in self.hotel_rows if c and c in r[0].lower()]
        if named:
            return named[0][1], named[0][2], named[0][0]
        if c in _CN_CAPITALS:
            caps = [r for r in self.hotel_rows if "capital" in r[0].lower() or "省会" in r[0]]
            if caps:
                return caps[0][1], caps[0][2], caps[0][0]
        other = [r for r in self.hotel_rows if re.search(r"\bother\b|其他|其它", r[0].lower())
                 and "capital" not in r[0].lower() and "省会" not in r[0]]
        if other:
            return other[-1][1], other[-1][2], other[-1][0]
        return None


def parse_policy(hits: list[Hit]) -> TravelPolicy:
    policy = TravelPolicy()
    for h in hits:
        text = h.chunk.content
        used = False
        for m in _ROW_RE.finditer(text):
            label = m.group("label").strip(" -*")
            if re.search(r"limit|tier|cit|城市|住宿|other|其他", label, re.IGNORECASE) and not label.lower().startswith(
                    ("city tier", "limit")):
                policy.hotel_rows.append((label, _money(m.group(2)), _currency(m.group(3))))
                used = True
        for m in _PER_DIEM_RE.finditer(text):  # groups: amount, currency, kind
            kind = "domestic" if m.group(3).lower() in ("domestic", "国内") else "international"
            policy.per_diem.setdefault(kind, (_money(m.group(1)), _currency(m.group(2))))
            used = True
        for m in _PER_DIEM_ZH_RE.finditer(text):  # groups: kind, amount, currency
            kind = "domestic" if m.group(1) == "国内" else "international"
            policy.per_diem.setdefault(kind, (_money(m.group(2)), _currency(m.group(3))))
            used = True
        if used:
            policy.sources.append({"document_id": h.chunk.document_id, "title": h.chunk.title,
                                   "section": h.chunk.section or None, "chunk_id": h.chunk.id,
                                   "label": h.chunk.label.value})
    return policy


def policy_read(trips: Iterable[Mapping[str, Any]]) -> tuple[list[str], str | None]:
    """The documents whose passages these itineraries applied (their ``policy_sources``), and the most sensitive
    of their labels: what the request's audit record names, as for a search returning those passages."""
    sources = [s for trip in trips for s in trip.get("policy_sources") or ()]
    documents = list(dict.fromkeys(str(s["document_id"]) for s in sources))
    labels = [parse_label(s["label"]) for s in sources if s.get("label")]
    return documents, max_label(labels).value if labels else None


def _currency(value: str) -> str:
    return {"元": "CNY", "RMB": "CNY", "美元": "USD"}.get(value, value.upper())


def plan_itinerary(destination: str, depart: date, back: date, policy: TravelPolicy, *, purpose: str = "",
                   international: bool | None = None) -> dict[str, Any]:
    destination = destination.strip()
    if not destination or len(destination) > 100:
        raise InvalidRequest("Name the destination city (at most 100 characters).", param="destination")
    if back < depart:
        raise InvalidRequest("The return date is before the departure date.", param="return_date")
    days = (back - depart).days + 1
    if days > MAX_TRIP_DAYS:
        raise InvalidRequest(f"Plan at most {MAX_TRIP_DAYS} days at a time.", param="return_date")
    nights = days - 1
    intl = (not is_domestic(destination)) if international is None else international
    notes: list[str] = []
    plan: list[dict[str, Any]] = []
    for i in range(days):
        d = depart + timedelta(days=i)
        if i == 0:
            what = f"Travel to {destination}" + (f"; {purpose}" if purpose else "")
        elif i == days - 1:
            what = f"Return from {destination}"
        else:
            what = purpose or f"Work in {destination}"
        plan.append({"date": d.isoformat(), "weekday": d.strftime("%A"), "plan": what,
                     "hotel_night": i < nights})
    budget: dict[str, Any] = {"nights": nights, "days": days}
    hotel = policy.hotel_limit(destination)
    if hotel is not None:
        limit, cur, row = hotel
        budget["hotel"] = {"limit_per_night": limit, "currency": cur, "rule": row, "total_max": limit * nights}
    elif policy.found:
        notes.append(f"The travel policy names no hotel limit that applies to {destination}.")
    rate = policy.per_diem.get("international" if intl else "domestic")
    if rate is not None:
        budget["per_diem"] = {"rate": rate[0], "currency": rate[1], "kind": "international" if intl else "domestic",
                              "total": rate[0] * days}
    elif policy.found:
        notes.append("The travel policy names no per-diem rate for this kind of trip.")
    if not policy.found:
        notes.append("No travel policy you may read was found in the knowledge base; no limits were applied.")
    return {"object": "schedule.trip", "destination": destination, "depart_date": depart.isoformat(),
            "return_date": back.isoformat(), "international": intl, "days": plan, "budget": budget,
            "notes": notes, "policy_sources": policy.sources}
