from __future__ import annotations

import pytest

from inhouse.errors import InvalidRequest
from inhouse.governance.labels import Label, label_of_item, max_label, parse_label


def test_order() -> None:
    assert Label.PUBLIC < Label.INTERNAL < Label.CONFIDENTIAL < Label.RESTRICTED
    assert sorted([Label.RESTRICTED, Label.PUBLIC, Label.CONFIDENTIAL]) == [
        Label.PUBLIC, Label.CONFIDENTIAL, Label.RESTRICTED]
    assert max(Label.INTERNAL, Label.CONFIDENTIAL) is Label.CONFIDENTIAL


@pytest.mark.parametrize(("raw", "label"), [
    ("public", Label.PUBLIC), ("Internal", Label.INTERNAL), (" CONFIDENTIAL ", Label.CONFIDENTIAL),
    ("restricted", Label.RESTRICTED), ("机密", Label.CONFIDENTIAL), (Label.INTERNAL, Label.INTERNAL),
])
def test_parse(raw: object, label: Label) -> None:
    assert parse_label(raw) is label


@pytest.mark.parametrize("raw", ["secret-ish", "", None, 3, ["public"]])
def test_unknown_is_invalid_request(raw: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_label(raw)
    assert "public, internal, confidential, restricted" in info.value.message


def test_missing_label_on_an_item_is_confidential() -> None:
    assert label_of_item(None) is Label.CONFIDENTIAL
    assert label_of_item("  ") is Label.CONFIDENTIAL
    assert label_of_item("public") is Label.PUBLIC
    with pytest.raises(InvalidRequest):
        label_of_item("bogus")


def test_max_label() -> None:
    assert max_label([]) is Label.PUBLIC
    assert max_label([], default=Label.INTERNAL) is Label.INTERNAL
    assert max_label([Label.PUBLIC, Label.RESTRICTED, Label.INTERNAL]) is Label.RESTRICTED
