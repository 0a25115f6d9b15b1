"""``record_hash`` joins the canonical JSON itself (for speed); it must give exactly the bytes the documented rule
gives: sha256 of ``json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from inhouse.governance.audit.chain import FIELDS, record_hash


def spec_hash(fields: dict[str, Any]) -> str:
    payload = {name: fields[name] for name in FIELDS}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


# Text without lone surrogates (a stored value is valid UTF-8), including quotes, backslashes, controls, CJK, emoji.
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_stored = st.one_of(st.none(), _text, st.integers(min_value=-(2**70), max_value=2**70))


@given(st.fixed_dictionaries({name: _stored for name in FIELDS}))
def test_the_fast_hash_is_the_documented_hash(fields: dict[str, Any]) -> None:
    assert record_hash(fields) == spec_hash(fields)


@given(st.one_of(st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.lists(st.integers(), max_size=3)))
def test_other_value_types_take_the_canonical_encoder(value: Any) -> None:
    # True must hash as JSON true, not as the integer it subclasses; floats and lists as json.dumps writes them.
    fields = {name: "x" for name in FIELDS} | {"reason": value}
    assert record_hash(fields) == spec_hash(fields)


def test_a_known_record_keeps_its_hash() -> None:
    """Pinned: a changed encoder would silently break the verification of every existing log."""
    fields = {name: None for name in FIELDS} | {
        "seq": 1, "ts": "2023-11-14T22:13:20.000000Z", "kind": "request", "action": "chat:create",
        "documents": '["doc_1"]', "redactions": "{}", "outcome": "success", "details": '{"q":"默认 \\"x\\"\\n"}',
        "prev_hash": "0" * 64}
    assert record_hash(fields) == spec_hash(fields)
    assert record_hash(fields) == "647b5cddcb0b5aae47c8ce4b41dd262a528fb74e1ff48bcfe74b145ade556255"
