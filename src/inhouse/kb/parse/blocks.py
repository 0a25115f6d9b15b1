"""Building blocks every parser shares: the section-path tracker, table text, language guess, title clean-up."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from inhouse.kb.document import Block, BlockKind, Language, ParsedDocument

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_TRAILING = re.compile(r" *\n")
# C0/C1 controls except tab and newline, soft hyphens (HTML's ``&shy;``, a hyphenation hint inside a word),
# zero-width characters, BOMs and bidi overrides (regex: fast on 50 MB).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\xad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\ufffe]")
# Full-width ASCII letters and digits (``ＩＳＯ９００１``, typed in a Chinese IME's full-width mode), which the keyword
# indexes hold half-width so that a question typed either way finds them (``keywords.py`` folds the query alike).
# Full-width punctuation (，。：（）) stays: it is the text's own, quoted to users in citations.
_FULL_WIDTH = re.compile(r"[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]+")
HALF_WIDTH: dict[int, int | None] = {c: c - 0xFEE0 for c in (*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B),
                                                             *range(0xFF41, 0xFF5B))}
# Producers that write placeholders instead of leaving a field out (ReportLab, Word templates...).
_PLACEHOLDERS = {
    "", "(anonymous)", "(unspecified)", "anonymous", "unspecified", "untitled", "unknown", "none",
    "python-docx", "openpyxl",
}
# Word's built-in heading styles, in English and Chinese Word, and custom styles named like them.
_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.I)
# Open terms a section path may hold: definition lists nested deeper (800 levels in 38 KB of HTML) keep their terms
# and definitions in the deepest section; every chunk of such a path costs the chunker time in its length.
MAX_TERM_DEPTH = 16
_FILENAME_LIKE = re.compile(r"(^|[/\\])[^/\\]+\.(md|txt|docx?|pdf|pptx?|xlsx?|html?|csv|tex|rtf|odt)$", re.I)


@dataclass
class BlockList:
    """Collects blocks in reading order and keeps the heading path that encloses each one.

    A heading of level N closes every open heading of level >= N, so the path is always the chain of headings
    above the current point, whatever levels a document skips.
    """

    page: int | None = None
    blocks: list[Block] = field(default_factory=list)
    _path: list[tuple[int, str]] = field(default_factory=list)

    @property
    def section(self) -> tuple[str, ...]:
        return tuple(title for _, title in self._path)

    def heading(self, text: str, level: int) -> None:
        text = clean_inline(text)
        if not text:
            return
        level = min(max(level, 1), 6)
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        self.blocks.append(Block("heading", text, level=level, page=self.page, section=self.section))
        self._path.append((level, text))

    def continue_heading(self, text: str) -> None:
        """The last block, a heading, given its whole ``text`` (a heading set over two lines, read line by line)."""
        last = self.blocks[-1]
        self.blocks[-1] = replace(last, text=clean_inline(text))
        self._path[-1] = (self._path[-1][0], self.blocks[-1].text)

    def enter_term(self, text: str) -> int | None:
        """A definition-list term: the blocks of its definition sit under it, one level below the enclosing heading
        or term. Returns the depth to pass to ``leave_term`` (None: an empty term, or a path already
        ``MAX_TERM_DEPTH`` deep: nothing entered, the term and its definition join the deepest section)."""
        text = clean_inline(text)
        if not text:
            return None
        depth = len(self._path)
        self.blocks.append(Block("term", text, page=self.page, section=self.section))
        if depth >= MAX_TERM_DEPTH:
            return None
        # Levels are only compared: a term may sit below an h6 (a heading met inside the definition closes it).
        self._path.append(((self._path[-1][0] if self._path else 0) + 1, _short_label(text)))
        return depth

    def leave_term(self, depth: int) -> None:
        """Close the term entered at ``depth`` (and anything opened inside its definition)."""
        del self._path[depth:]

    def add(self, kind: BlockKind, text: str) -> None:
        text = text.strip("\n") if kind in ("code", "table") else text.strip()
        if text.strip():
            self.blocks.append(Block(kind, text, page=self.page, section=self.section))

    def reset_sections(self) -> None:
        self._path.clear()

    def nest(self, heading: str, document: ParsedDocument) -> None:
        """Another document's blocks under a level-1 ``heading`` ("Attachment: a.docx", "File: b.pdf"), its headings
        one level lower and its page numbers dropped (they are not pages of this document)."""
        self.reset_sections()
        self.heading(heading, 1)
        prefix = self.section
        self.blocks.extend(replace(b, page=None, section=prefix + b.section, level=b.level + 1 if b.level else 0)
                           for b in document.blocks)


def _short_label(text: str, limit: int = 90) -> str:
    """A term as a section label: a long signature is cut after ``limit`` characters (its block keeps it whole)."""
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


def clean_inline(text: str) -> str:
    """One line of text: NFC, whitespace runs collapsed, control characters dropped, full-width letters and digits
    half-width."""
    text = _half_width(_CONTROLS.sub("", unicodedata.normalize("NFC", text)))
    return _SPACES.sub(" ", text.replace("\n", " ")).strip()


def clean_text(text: str) -> str:
    """Multi-line text: NFC, newlines normalised, trailing spaces and control characters dropped, full-width letters
    and digits half-width."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _half_width(_CONTROLS.sub("", text.replace("\u2028", "\n").replace("\u2029", "\n\n")))
    return _TRAILING.sub("\n", _SPACES.sub(" ", text)).strip("\n").rstrip(" ")


def clean_code(text: str) -> str:
    """Code as written (spaces, indentation and full-width characters kept): NFC, newlines normalised, control
    characters dropped."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _CONTROLS.sub("", text)


def _half_width(text: str) -> str:
    # Only the runs found are translated: ``translate`` of the whole text would visit every character of 50 MB.
    return _FULL_WIDTH.sub(lambda m: m.group().translate(HALF_WIDTH), text)


def format_table(rows: Iterable[Sequence[object]]) -> str:
    """Rows as Markdown-ish text: one row a line, cells joined by `` | ``; the first row is the header."""
    lines: list[str] = []
    width = 0
    for row in rows:
        cells = ["" if c is None else clean_inline(str(c)).replace("|", "/") for c in row]
        while cells and not cells[-1]:
            cells.pop()
        if not any(cells):
            continue
        width = max(width, len(cells))
        lines.append(" | ".join(cells))
    return "\n".join(lines) if width else ""


def guess_language(text: str) -> Language:
    """'zh' when Han characters dominate, 'en' when Latin words do, 'mixed' between (a sample is enough)."""
    sample = text[:200_000]
    cjk = len(_CJK.findall(sample))
    latin = len(_LATIN_WORD.findall(sample))
    if cjk + latin == 0:
        return "en"
    share = cjk / (cjk + latin * 1.5)  # a Latin word carries about as much as 1.5 Han characters
    if share >= 0.8:
        return "zh"
    if share <= 0.2:
        return "en"
    return "mixed"


def meaningful(value: object) -> str | None:
    """A metadata value worth keeping, or None for empty strings and generator placeholders."""
    if value is None:
        return None
    text = clean_inline(str(value))
    return None if text.lower() in _PLACEHOLDERS else text


def office_metadata(props: Any) -> dict[str, str]:
    """Author, subject and creation date of an Office file's core properties (python-docx, python-pptx), when set."""
    created = getattr(props, "created", None)
    pairs = (("author", meaningful(getattr(props, "author", None))),
             ("subject", meaningful(getattr(props, "subject", None))),
             ("date", created.isoformat() if created else None))
    return {k: v for k, v in pairs if v}


def pick_title(candidates: Iterable[object], blocks: Sequence[Block], filename: str) -> str:
    """The first meaningful candidate that is not a file name, else the first heading, else the file name stem."""
    for cand in candidates:
        text = meaningful(cand)
        if text and not _FILENAME_LIKE.search(text):
            return text[:300]
    for block in blocks:
        if block.kind == "heading":
            return block.text[:300]
    stem = filename.rsplit(".", 1)[0] if "." in filename.strip(".") else filename
    return stem or filename


def count_cjk(text: str) -> int:
    return len(_CJK.findall(text))


def style_heading_level(name: str) -> int:
    """The heading level a paragraph style's name gives: "Title" 1, "Heading N" / "标题 N" N, anything else 0
    (Word, Word 97 and RTF readers: the same names whatever the format)."""
    name = name.strip()
    if name.lower() == "title":
        return 1
    match = _HEADING_STYLE.match(name)
    return int(match.group(1)) if match else 0


def note_text(kind: str, number: int, text: str) -> str:
    """A footnote's or endnote's block (``kind``: "footnote" or "endnote"), read after the paragraph that refers to
    it: ``Footnote 1: …``."""
    return f"{kind.capitalize()} {number}: {text}"
