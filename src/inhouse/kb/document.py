"""Data types shared by parsing, chunking and indexing.

A parser turns bytes into a :class:`ParsedDocument` (an ordered list of :class:`Block`); the chunker turns that into
:class:`Chunk` objects, which are what the index stores, embeds and cites. These are plain frozen dataclasses so
they can be hashed, compared in tests and serialised with ``dataclasses.asdict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BlockKind = Literal["heading", "term", "paragraph", "table", "list", "code", "quote"]
Language = Literal["zh", "en", "mixed"]

# Separator used to join a section path into one string (``Chunk.section``) and in the chunk text prefix.
SECTION_SEPARATOR = " > "


@dataclass(frozen=True)
class Block:
    """One structural unit of a document, in reading order.

    ``page`` is 1-based for paged formats (PDF page, PPTX slide, XLSX sheet index) and ``None`` otherwise.
    ``section`` is the path of heading titles *enclosing* this block (for a heading: its parents, not itself).
    Tables are Markdown-ish text: one row per line, cells separated by `` | ``, the first line the header row.
    A ``term`` is the label of a definition-list entry (a function's signature on a reference page, a configuration
    parameter's name): like a heading it opens a section — the blocks of its definition carry it at the end of their
    ``section`` — but it is not part of the document's outline.
    """

    kind: BlockKind
    text: str
    level: int = 0  # 1..6 for headings, 0 otherwise
    page: int | None = None
    section: tuple[str, ...] = ()


@dataclass(frozen=True)
class Marking:
    """A sensitivity marking a file carries outside its body text (``kb/parse/markings.py`` reads them).

    ``source`` is where it was found: ``"label"``, a sensitivity label recorded in the file's metadata (``text`` is
    its name, ``label_id`` its id when the format gives one: Microsoft Purview's GUID); ``"header"`` or
    ``"footer"``, text printed on every page; ``"property"``, a classification declared in front matter, an HTML
    ``<meta>`` element or an e-mail header. What a marking means for the document's label is decided at ingestion
    (``kb/markings.py``).
    """

    source: Literal["label", "header", "footer", "property"]
    text: str
    label_id: str = ""


@dataclass(frozen=True)
class ParsedDocument:
    """The result of parsing one file.

    ``metadata`` holds only what the file states: ``author``, ``date`` (ISO 8601 when parseable), ``subject``,
    and for e-mail ``from``/``to``; keys are absent rather than empty. ``filename`` is a sanitised base name
    (metadata only, never used as a path); ``mime`` the detected type. ``markings``: sensitivity markings found
    outside the blocks (labels in the file's metadata, running headers and footers).
    """

    title: str
    blocks: tuple[Block, ...]
    language: Language
    filename: str
    mime: str
    metadata: dict[str, str] = field(default_factory=dict)
    page_count: int | None = None
    markings: tuple[Marking, ...] = ()

    @property
    def text(self) -> str:
        """All block texts joined by blank lines (for hashing, previews and tests)."""
        return "\n\n".join(b.text for b in self.blocks)


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of a document.

    ``text`` is what gets embedded and keyword-indexed: the section path on the first line (when there is one),
    then the content, e.g. ``"HR Handbook > Leave > Annual leave\\n员工每年享有…"``. ``content`` is the same without
    that prefix (for snippets in citations). ``index`` is 0-based and dense within the document.
    ``char_start``/``char_end`` are reserved for offsets into ``ParsedDocument.text``; the chunker leaves them
    ``None`` (chunks carry overlap and sub-heading lines, so they are not always one contiguous span).
    """

    index: int
    text: str
    content: str
    token_count: int
    kind: BlockKind
    section: str = ""
    page_start: int | None = None
    page_end: int | None = None
    char_start: int | None = None
    char_end: int | None = None
