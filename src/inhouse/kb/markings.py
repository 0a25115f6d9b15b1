"""What a document's own markings say about its sensitivity: a label it is never stored below.

At ingestion (``kb/ingest.py``) a document is stored with the label it was given (``--label``, the upload's
``label`` field; none given counts as confidential) or the one its markings call for, whichever is more sensitive.
Markings only raise a label, never lower it, and the reason is kept with the document (``metadata["marking"]``)
and reported, so an administrator who ingests a share as ``internal`` learns which files said otherwise. An
administrator may still relabel a document afterwards (``PATCH``), deliberately and one document at a time.

Markings, most authoritative first:

1. **Sensitivity labels recorded in the file** (Microsoft Purview; ``kb/parse/markings.py`` reads them), mapped by
   id or name through ``kb.label_names``, else by the common names (Public, General, Internal, Confidential, Highly
   Confidential, Restricted, and 公开, 内部, 机密, 秘密, 绝密). A sublabel maps like its parent ("Confidential\\
   Finance"). A label whose id and name are both unknown counts as confidential: someone classified the file, and
   it cannot be told how.
2. **Declared classifications**: ``Classification: Internal``, ``Sensitivity: Company-Confidential``, ``密级：机密``
   in a header or footer, front matter, a ``<meta>`` element, an e-mail header, the title, a heading or a short
   paragraph.
3. **Banners**: a marking phrase standing on its own between delimiters ("Salary Bands 2027: CONFIDENTIAL",
   "[INTERNAL] Q3 plan", "机密★1年") in a header or footer, the title, a heading or a short paragraph. Outside
   headers and footers an English phrase must be in capitals, as markings are written.

Not markings: the words in running text ("we keep your data confidential"), a phrase inside a longer name
("CONFIDENTIAL INFORMATION" as a contract's heading, "Internal Audit", "NON-CONFIDENTIAL"), also when wrapped over
two lines ("INTERNAL<br>AUDIT CHARTER"), and a line that names three or more levels ("Public / Internal /
Confidential"), which describes a scheme rather than marks a document.
On the evaluation corpus and the Python manual the rules mark exactly the two documents that say CONFIDENTIAL in
their title (docs/governance.md, "Labels from the documents themselves").
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from inhouse.governance.labels import Label, parse_label
from inhouse.kb.document import Marking, ParsedDocument

# Label names as tenants and companies use them (embedded labels, "Classification: X" values).
_NAMES: dict[str, Label] = {
    "PUBLIC": Label.PUBLIC, "GENERAL": Label.INTERNAL, "INTERNAL": Label.INTERNAL, "INTERNAL ONLY": Label.INTERNAL,
    "INTERNAL USE ONLY": Label.INTERNAL, "CONFIDENTIAL": Label.CONFIDENTIAL, "COMPANY CONFIDENTIAL": Label.CONFIDENTIAL,
    "COMPANY-CONFIDENTIAL": Label.CONFIDENTIAL, "PRIVATE": Label.CONFIDENTIAL, "HIGHLY CONFIDENTIAL": Label.RESTRICTED,
    "STRICTLY CONFIDENTIAL": Label.RESTRICTED, "RESTRICTED": Label.RESTRICTED, "SECRET": Label.RESTRICTED,
    "TOP SECRET": Label.RESTRICTED,
    "公开": Label.PUBLIC, "内部": Label.INTERNAL, "机密": Label.CONFIDENTIAL, "秘密": Label.CONFIDENTIAL,
    "绝密": Label.RESTRICTED, "受限": Label.RESTRICTED, "核心商密": Label.RESTRICTED, "普通商密": Label.CONFIDENTIAL,
    "商密": Label.CONFIDENTIAL,
}
# Phrases that mark a document when they stand alone in a banner. Not "GENERAL", "PUBLIC", "PRIVATE" or "SECRET":
# as headings those are ordinary words ("GENERAL", "API SECRET").
_PHRASES: dict[str, Label] = {
    **{k: v for k, v in _NAMES.items() if k not in ("GENERAL", "PUBLIC", "公开", "PRIVATE", "SECRET")},
    "BUSINESS CONFIDENTIAL": Label.CONFIDENTIAL, "PRIVATE AND CONFIDENTIAL": Label.CONFIDENTIAL,
    "PRIVILEGED AND CONFIDENTIAL": Label.CONFIDENTIAL, "CONFIDENTIAL AND PROPRIETARY": Label.CONFIDENTIAL,
    "PROPRIETARY AND CONFIDENTIAL": Label.CONFIDENTIAL, "FOR INTERNAL USE ONLY": Label.INTERNAL,
    "INTERNAL USE": Label.INTERNAL, "COMPANY INTERNAL": Label.INTERNAL,
    "公司机密": Label.CONFIDENTIAL, "机密文件": Label.CONFIDENTIAL, "商业秘密": Label.CONFIDENTIAL,
    "严格保密": Label.RESTRICTED, "内部资料": Label.INTERNAL, "内部文件": Label.INTERNAL, "内部使用": Label.INTERNAL,
    "仅限内部使用": Label.INTERNAL, "仅供内部使用": Label.INTERNAL, "内部资料 注意保密": Label.INTERNAL,
}
# Delimiters a marking stands between; a hyphen only with spaces round it ("NON-CONFIDENTIAL" is one word). Not a
# line break: a name wraps ("INTERNAL<br>AUDIT CHARTER 2027" is "Internal Audit"). Texts set apart on a page (a PDF
# footer's "CONFIDENTIAL" centred and "Page 3" on the right) come from their parser as separate texts.
_SPLIT = re.compile(r"[:：|/\\,，;；·•()\[\]{}【】（）〔〕<>《》「」『』]|\s[-–—]+\s|[–—]+")
# Every phrase and field name holds one of these: a text without any is no banner (substring tests, 10x cheaper
# than one regex search, which cost a fifth of the parse time on the Python manual).
_STEMS = ("confidential", "internal", "restricted", "secret", "classification", "sensitivity", "label", "密", "内部",
          "受限", "级别", "分类")
_FIELD = re.compile(
    r"(?i)(?:security\s+|data\s+|information\s+)?(?:classification|sensitivity(?:\s+label)?|confidentiality"
    r"(?:\s+level)?|label|密级|保密级别|文件密级|安全级别|敏感级别|信息分类)\s*[:：=]\s*([^\n,;；，|/()（）]+)")
_DECORATION = re.compile(r"^[\s*_#>`\"'“”‘’.!。！-]+|[\s*_#>`\"'“”‘’.!。！-]+$")
_TERM = re.compile(r"[★☆].*$")  # 机密★1年: the level, then how long it holds
_LATIN = re.compile(r"[A-Za-z]")
_SPACES = re.compile(r"\s+")
_SHORT = 120  # characters: a paragraph longer than this is text, not a banner
_SCHEME = 3  # a line naming this many levels describes the scheme


@dataclass(frozen=True)
class Marked:
    """The label a document's markings call for, and why (for the ingest report and ``metadata["marking"]``)."""

    label: Label
    reason: str


class MarkingReader:
    """Reads the label a parsed document's markings call for (module doc). ``names``: a company's own label names
    and Purview label ids → labels (``kb.label_names``); they win over the common names."""

    def __init__(self, names: Mapping[str, Label | str] | None = None) -> None:
        self._names = {_key(k): parse_label(v, param="kb.label_names") for k, v in (names or {}).items()}
        self._stems = _STEMS + tuple(k.lower() for k in self._names)

    def read(self, doc: ParsedDocument) -> Marked | None:
        """The most sensitive marking of ``doc``; None when it has none (or only public ones)."""
        best: Marked | None = None
        for found in self._all(doc):
            if found.label > Label.PUBLIC and (best is None or found.label > best.label):
                best = found
        return best

    def _all(self, doc: ParsedDocument) -> Iterator[Marked]:
        for marking in doc.markings:
            if marking.source == "label":
                yield self._label(marking)
            else:
                where = {"header": "header", "footer": "footer", "property": "file's properties"}[marking.source]
                yield from self._banner(marking.text, where, any_case=True)
        yield from self._banner(doc.title, "title", any_case=False)
        for block in doc.blocks:
            if block.kind == "heading" or (block.kind == "paragraph" and len(block.text) <= _SHORT):
                yield from self._banner(block.text, "heading" if block.kind == "heading" else "paragraph",
                                        any_case=False)

    def _label(self, marking: Marking) -> Marked:
        label = self._names.get(_key(marking.label_id)) if marking.label_id else None
        label = label or self._name(marking.text)
        shown = f'"{marking.text}"' if marking.text else (marking.label_id or "without a name")
        if label is None:
            return Marked(Label.CONFIDENTIAL, f"sensitivity label {shown} (not in kb.label_names: counted as "
                                              "confidential)")
        return Marked(label, f"sensitivity label {shown}")

    def _name(self, name: str) -> Label | None:
        """A label name (or a sublabel's, by its parent: "Confidential\\Finance") → label."""
        key = _key(name)
        if not key:
            return None
        for candidate in (key, re.split(r"\s*[\\/]\s*|\s+-\s+", key)[0]):
            label = self._names.get(candidate) or _NAMES.get(candidate)
            if label is not None:
                return label
        return None

    def _banner(self, text: str, where: str, *, any_case: bool) -> Iterator[Marked]:
        if not text or len(text) > 2000:
            return
        low = text.lower()
        if not any(stem in low for stem in self._stems):
            return
        found: list[Marked] = []
        for match in _FIELD.finditer(text):
            label = self._name(_clean(match.group(1)))
            if label is not None:
                found.append(Marked(label, f'"{_clean(match.group(0))}" in the {where}'))
        named: set[Label] = {m.label for m in found}  # every level the text names, to tell a scheme apart
        for segment in _SPLIT.split(text):
            phrase = _clean(segment)
            if not phrase or len(phrase) > 40:
                continue
            key = _key(phrase)
            label = self._names.get(key)
            if label is None and (any_case or not _LATIN.search(phrase) or phrase == phrase.upper()):
                label = _PHRASES.get(key)
            if label is not None:
                found.append(Marked(label, f'"{phrase}" in the {where}'))
            level = label or _NAMES.get(key) or _PHRASES.get(key)
            if level is not None:
                named.add(level)
        if len(named) < _SCHEME:
            yield from found


def _clean(text: str) -> str:
    return _DECORATION.sub("", _TERM.sub("", text.strip()))


def _key(text: str) -> str:
    """Names compared case-insensitively, with runs of spaces as one and braces round an id ignored."""
    return _SPACES.sub(" ", text.strip().strip("{}")).upper()
