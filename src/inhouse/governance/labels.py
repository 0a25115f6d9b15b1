"""Sensitivity labels: ``public < internal < confidential < restricted``.

A label says where data may go. Comparisons follow the order above, so ``max`` of several labels is the
most sensitive one. A document or chunk that carries no label is treated as ``confidential``: an
unlabelled item must never be the reason something leaves the machine.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from functools import total_ordering

from inhouse.errors import InvalidRequest, shown


@total_ordering
class Label(enum.Enum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Label):
            return NotImplemented
        return self.rank < other.rank

    def __str__(self) -> str:
        return self.value


_RANK = {label: i for i, label in enumerate(Label)}
# What an item without a label counts as.
UNLABELLED = Label.CONFIDENTIAL
# Chinese names seen in document front matter and the corpus README; English is canonical.
_ALIASES = {"公开": Label.PUBLIC, "内部": Label.INTERNAL, "机密": Label.CONFIDENTIAL, "秘密": Label.CONFIDENTIAL,
            "绝密": Label.RESTRICTED, "受限": Label.RESTRICTED}


def parse_label(value: object, *, param: str = "label") -> Label:
    """A label from its name (case-insensitive) or a ``Label``. Unknown or non-string → InvalidRequest."""
    if isinstance(value, Label):
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        for label in Label:
            if label.value == key:
                return label
        if key in _ALIASES:
            return _ALIASES[key]
    names = ", ".join(label.value for label in Label)
    raise InvalidRequest(f"Unknown sensitivity label {shown(value)}; use one of {names}.", param=param)


def label_of_item(value: object, *, param: str = "label") -> Label:
    """The label of a document or chunk: missing (None or empty) → confidential; unknown → InvalidRequest."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return UNLABELLED
    return parse_label(value, param=param)


def max_label(labels: Iterable[Label], *, default: Label = Label.PUBLIC) -> Label:
    """The most sensitive of ``labels`` (``default`` when there are none)."""
    return max(labels, default=default)
