"""Structure-aware chunking: a ParsedDocument → retrievable Chunks of at most ``max_tokens`` tokens.

Rules, in the order they apply:

- **Sections.** Every chunk belongs to one place in the heading tree. Consecutive small sections under the same
  top-level heading may share a chunk (their own sub-headings then appear as lines inside it, and
  ``Chunk.section`` is their common path); a chunk never spans two top-level sections.
- **Prefix.** A chunk's ``text`` starts with its section path on one line — the document title first unless the
  path already starts with it — e.g. ``"Leave Policy > 1. Annual leave"``, so embeddings and keyword search see
  where the content sits. ``Chunk.content`` is the same text without that line (for citation snippets). The
  prefix counts toward ``max_tokens``.
- **Packing.** Blocks are packed in order up to the budget. A block too big on its own is split: paragraphs and
  quotes at sentence ends (。！？； and . ! ? followed by a space, then line breaks), lists and code at line
  breaks, and a sentence still too big at word boundaries (Chinese: between characters; we work on ``str``,
  never bytes, so no character is ever cut).
- **Tables** are kept whole when they fit; otherwise split by rows, each piece repeating the header row.
- **Overlap.** When one section continues into the next chunk, that chunk starts with the last sentences of the
  previous one (up to ``overlap_tokens``). No overlap across sections or into/out of table pieces (a repeated
  header already gives a table piece its context).
- Headings with no content of their own (followed by a sibling or nothing) become a one-line content unit, so a
  slide deck of titles still yields chunks.
- **Entries.** A definition-list term (``term`` block: a function's signature on a reference page, a configuration
  parameter) opens a section like a heading, and a chunk never holds two entries: an entry's definition is its own
  unit of retrieval, with the term as the last element of its path (an answer sitting in one entry of a page of
  hundreds must be found as that entry, not as a slice of its neighbours).
- **Titles.** When the document title begins with the first heading (``"os — … — Python 3.11 documentation"``
  over the heading ``"os — …"``), the prefix starts at the heading: the repeated title would take a third of the
  prefix budget in every chunk.

Token counts default to :func:`count_tokens_approx` (Han character = 1 token, other word ≈ 1.3 tokens), which
needs no model and over-estimates a real multilingual tokenizer slightly; pass ``count_tokens`` to use a real one.
The output is deterministic: the same document and arguments always give the same chunks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inhouse.kb.document import SECTION_SEPARATOR, Block, BlockKind, Chunk, ParsedDocument

TokenCounter = Callable[[str], int]

_CJK_CHARS = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff"
_CJK = re.compile(f"[{_CJK_CHARS}]")
_WORD = re.compile(f"[^\\s{_CJK_CHARS}]+")
# A sentence ends after 。！？； (plus closing quotes/brackets), after . ! ? ; followed by white space, or at a
# line break. The match is the end of one piece; pieces concatenate back to the original text exactly.
_SENTENCE_END = re.compile(r"(?:[。！？；]+|[.!?;]+(?=\s|$))[”’」』）)\"']*[ \t]*\n?|\n")
_ATOM = re.compile(f"[{_CJK_CHARS}]|[^\\s{_CJK_CHARS}]+\\s*|\\s+")


def count_tokens_approx(text: str) -> int:
    """Han/kana/hangul character = 1 token; any other run of non-space characters ≈ 1.3 tokens."""
    return len(_CJK.findall(text)) + math.ceil(len(_WORD.findall(text)) * 1.3)


def split_sentences(text: str) -> list[str]:
    """Pieces ending at sentence ends or line breaks; ``"".join(result) == text``."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


@dataclass(frozen=True)
class _Unit:
    """A piece of content small enough for one chunk, tagged with where it sits."""

    kind: BlockKind
    text: str
    tokens: int
    page: int | None
    section: tuple[str, ...]
    entry: tuple[str, ...] | None = None  # the path of the definition-list entry the unit belongs to, if any


def chunk_document(
    doc: ParsedDocument,
    *,
    max_tokens: int = 256,
    overlap_tokens: int = 32,
    count_tokens: TokenCounter = count_tokens_approx,
    small_entry_tokens: int = 0,
) -> list[Chunk]:
    """Split ``doc`` into chunks (see the module docstring for the rules). Definition-list entries smaller than
    ``small_entry_tokens`` may share a chunk with neighbouring small entries (0: every entry on its own)."""
    if max_tokens < 16:
        raise ValueError("max_tokens must be at least 16")
    overlap_tokens = max(0, min(overlap_tokens, max_tokens // 4))
    return _Packer(doc, max_tokens, overlap_tokens, count_tokens, small_entry_tokens).run()


class _Packer:
    def __init__(self, doc: ParsedDocument, max_tokens: int, overlap: int, count: TokenCounter,
                 small_entry: int = 0) -> None:
        self.doc = doc
        self.small_entry = small_entry
        self.entry_tokens: dict[tuple[str, ...], int] = {}
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.count = count
        self.chunks: list[Chunk] = []
        self.current: list[_Unit] = []
        # "Top-level" is the first heading level at which the document branches: under a single H1 title,
        # the H2 sections are the ones never merged.
        sections = [b.section for b in doc.blocks if b.kind not in ("heading", "term")]
        self.trunk = len(_common_prefix(sections)) if sections else 0
        self.entries: set[tuple[str, ...]] = set()  # section paths opened by terms
        self.prefixes: dict[tuple[str, ...], str] = {}  # _prefix is asked for every unit and every packing try

    # ---- public flow -------------------------------------------------------------------------------------
    def run(self) -> list[Chunk]:
        for unit in self._units():
            self._add(unit)
        self._flush()
        return self.chunks

    # ---- blocks → units ----------------------------------------------------------------------------------
    def _units(self) -> list[_Unit]:
        blocks = self.doc.blocks
        units: list[_Unit] = []
        for i, block in enumerate(blocks):
            if not block.text.strip():
                continue
            if block.kind in ("heading", "term"):
                nxt = blocks[i + 1] if i + 1 < len(blocks) else None
                opens = nxt is not None and _opens(block, nxt)
                own = (*block.section, nxt.section[len(block.section)] if nxt is not None and opens else block.text)
                if block.kind == "term":
                    self.entries.add(own)
                if not opens:
                    units.extend(self._split(Block("paragraph", block.text, page=block.page, section=own)))
                elif block.kind == "term" and own[-1] != block.text:
                    # The path carries a shortened label: the whole signature opens the entry's content.
                    units.extend(self._split(Block("paragraph", block.text, page=block.page, section=own)))
                continue
            units.extend(self._split(block))
        if not self.entries:
            return units
        units = [_Unit(u.kind, u.text, u.tokens, u.page, u.section, self._entry(u.section)) for u in units]
        for u in units:
            if u.entry is not None:
                self.entry_tokens[u.entry] = self.entry_tokens.get(u.entry, 0) + u.tokens
        return units

    def _small(self, entry: tuple[str, ...] | None) -> bool:
        return entry is not None and self.entry_tokens.get(entry, 0) < self.small_entry

    def _entry(self, section: tuple[str, ...]) -> tuple[str, ...] | None:
        for n in range(len(section), 0, -1):
            if section[:n] in self.entries:
                return section[:n]
        return None

    def _budget(self, section: tuple[str, ...]) -> int:
        return self.max_tokens - self.count(self._prefix(section)) - 1

    def _split(self, block: Block) -> list[_Unit]:
        budget = self._budget(block.section)
        tokens = self.count(block.text)
        if tokens <= budget:
            return [_Unit(block.kind, block.text, tokens, block.page, block.section)]
        if block.kind == "table":
            return self._split_table(block, budget)
        pieces = split_sentences(block.text) if block.kind in ("paragraph", "quote") else block.text.splitlines(True)
        texts: list[str] = []
        for piece in pieces:
            if self.count(piece) > budget:
                texts.extend(self._hard_split(piece, budget))
            else:
                texts.append(piece)
        packed = self._pack_texts(texts, budget, sep="")
        return [_Unit(block.kind, t.strip("\n"), self.count(t), block.page, block.section) for t in packed if t.strip()]

    def _split_table(self, block: Block, budget: int) -> list[_Unit]:
        header, *rows = block.text.split("\n")
        if self.count(header) > budget // 2:  # a monstrous header: treat the table as plain lines
            header, rows = "", [header, *rows]
        row_budget = budget - (self.count(header) + 1 if header else 0)
        texts: list[str] = []
        for row in rows:
            texts.extend(self._hard_split(row, row_budget) if self.count(row) > row_budget else [row])
        out = []
        for body in self._pack_texts(texts, row_budget, sep="\n"):
            text = f"{header}\n{body}" if header else body
            out.append(_Unit("table", text, self.count(text), block.page, block.section))
        return out

    def _pack_texts(self, texts: list[str], budget: int, *, sep: str) -> list[str]:
        packed: list[str] = []
        buf: list[str] = []
        used = 0
        for text in texts:
            tokens = self.count(text)
            if buf and used + tokens > budget:
                packed.append(sep.join(buf))
                buf, used = [], 0
            buf.append(text)
            used += tokens
        if buf:
            packed.append(sep.join(buf))
        # Token counts are not exactly additive (rounding, words glued by ``sep=""``): re-split any overflow.
        result: list[str] = []
        for text in packed:
            result.extend(self._hard_split(text, budget) if self.count(text) > budget else [text])
        return result

    def _hard_split(self, text: str, budget: int) -> list[str]:
        """Split at word boundaries (between characters for CJK) into pieces of at most ``budget`` tokens."""
        pieces: list[str] = []
        buf: list[str] = []
        est = 0.0
        for atom in _ATOM.findall(text):
            cost = 1.0 if _CJK.match(atom) else (1.3 if not atom.isspace() else 0.0)
            if buf and est + cost > budget * 0.9:
                pieces.append("".join(buf))
                buf, est = [], 0.0
            buf.append(atom)
            est += cost
        if buf:
            pieces.append("".join(buf))
        out: list[str] = []
        for piece in pieces:  # a real tokenizer may count more than the estimate: halve until it fits
            if self.count(piece) > budget and len(piece) > 1:
                mid = len(piece) // 2
                out.extend(self._hard_split(piece[:mid], budget) + self._hard_split(piece[mid:], budget))
            elif piece.strip():
                out.append(piece)
        return out

    # ---- units → chunks ----------------------------------------------------------------------------------
    def _add(self, unit: _Unit) -> None:
        if self.current:
            top = self.trunk + 1
            same_top = self.current[0].section[:top] == unit.section[:top]
            same_entry = all(u.entry == unit.entry for u in self.current) or (
                self._small(unit.entry) and all(self._small(u.entry) for u in self.current))
            if same_top and same_entry and self._fits([*self.current, unit]):
                self.current.append(unit)
                return
            previous = self.current
            self._flush()
            if previous[-1].section == unit.section and "table" not in (previous[-1].kind, unit.kind):
                tail = self._overlap_tail(previous[-1])
                if tail:
                    candidate = _Unit(unit.kind, tail + unit.text, 0, unit.page, unit.section, unit.entry)
                    if self._fits([candidate]):
                        unit = candidate
        self.current = [unit]

    def _overlap_tail(self, unit: _Unit) -> str:
        if not self.overlap or unit.kind == "code":
            return ""
        tail = ""
        for sentence in reversed(split_sentences(unit.text)):
            if self.count(sentence + tail) > self.overlap:
                break
            tail = sentence + tail
        if not tail.strip():  # the last sentence alone is too long: take its last words instead
            tail = self._hard_split(unit.text, self.overlap)[-1] if unit.text.strip() else ""
            tail = tail if self.count(tail) <= self.overlap else ""
        tail = tail.strip()
        return f"{tail} " if tail and not _CJK.match(tail[-1]) else tail

    def _fits(self, units: list[_Unit]) -> bool:
        return self.count(self._render(units)[0]) <= self.max_tokens

    def _render(self, units: Sequence[_Unit]) -> tuple[str, str, tuple[str, ...]]:
        """(text with prefix, content without it, common section path)."""
        common = _common_prefix([u.section for u in units])
        parts: list[str] = []
        shown: tuple[str, ...] = common
        for unit in units:
            if unit.section != shown:
                parts.append(SECTION_SEPARATOR.join(unit.section[len(common) :]) or SECTION_SEPARATOR.join(common))
                shown = unit.section
            parts.append(unit.text)
        content = "\n\n".join(p for p in parts if p)
        prefix = self._prefix(common)
        return (f"{prefix}\n{content}" if prefix else content), content, common

    def _prefix(self, section: tuple[str, ...]) -> str:
        if section not in self.prefixes:
            self.prefixes[section] = self._shorten(section)
        return self.prefixes[section]

    def _shorten(self, section: tuple[str, ...]) -> str:
        title = self.doc.title.strip()
        path = section if (not title or (section and title.startswith(section[0]))) else (title, *section)
        limit = self.max_tokens // 3  # a runaway heading path must leave room for content

        def kept(dropped: int) -> str:  # the document and the most specific parts matter most: drop from path[1]
            return SECTION_SEPARATOR.join((path[0], *path[1 + dropped :])) if path else ""

        # The fewest elements to drop, found by bisection (the count falls as elements go), not one at a time.
        low, high = 0, max(len(path) - 2, 0)
        while low < high:
            mid = (low + high) // 2
            if self.count(kept(mid)) > limit:
                low = mid + 1
            else:
                high = mid
        text = kept(low)
        while text and self.count(text) > limit:
            text = text[: int(len(text) * 0.8)]
        return text

    def _flush(self) -> None:
        if not self.current:
            return
        units = self.current
        self.current = []
        text, content, common = self._render(units)
        pages = [u.page for u in units if u.page is not None]
        kinds: dict[BlockKind, int] = {}
        for unit in units:
            kinds[unit.kind] = kinds.get(unit.kind, 0) + len(unit.text)
        kind = max(kinds, key=lambda k: kinds[k])
        self.chunks.append(
            Chunk(
                index=len(self.chunks),
                text=text,
                content=content,
                token_count=self.count(text),
                kind=kind,
                section=self._prefix(common),
                page_start=min(pages) if pages else None,
                page_end=max(pages) if pages else None,
            )
        )


def _opens(block: Block, nxt: Block) -> bool:
    """Whether ``nxt`` lies inside the section that the heading or term ``block`` opens."""
    return (len(nxt.section) > len(block.section)
            and nxt.section[: len(block.section)] == block.section
            and (nxt.section[len(block.section)] == block.text or block.kind == "term"))


def _common_prefix(paths: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    common = paths[0]
    for path in paths[1:]:
        n = 0
        while n < min(len(common), len(path)) and common[n] == path[n]:
            n += 1
        common = common[:n]
    return common
