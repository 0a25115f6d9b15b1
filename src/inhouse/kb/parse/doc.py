"""Word 97-2003 (.doc), read from the binary format itself ([MS-DOC]); no converter, no other process.

The ``WordDocument`` stream holds the text; the table stream (``0Table`` or ``1Table``, as the FIB says) holds
where each piece of it lies (the piece table in the ``Clx``), the paragraph properties (``PlcBtePapx`` pointing at
512-byte ``PapxFkp`` pages) and the style sheet (``STSH``). From those:

- **Text** is the main document (character positions 0 to ``ccpText``). A piece is 8-bit (cp1252, "compressed")
  or UTF-16. The other stories follow it in the same character positions: footnotes, headers, annotations,
  endnotes, text boxes.
- **Footnotes and endnotes** are read after the paragraph that refers to them (``PlcffndRef``/``PlcfendRef`` give
  the reference's position, ``PlcffndTxt``/``PlcfendTxt`` each note's text), as ``Footnote 1: …`` like in
  ``docx.py``; **text boxes** after the paragraph holding their shape's anchor (``PlcftxbxTxt`` → the shape id →
  ``PlcSpaMom``), or at the end when the anchor is not found.
- **Headers and footers** are not content; their lines become markings (``PlcfHdd`` cuts the header story into each
  section's even, odd and first-page header and footer), as for ``docx.py``.
- **Paragraphs** end with ``\\r``; a table cell ends with ``\\x07`` and a row with a ``\\x07`` paragraph whose
  properties carry ``sprmPFTtp``. Cells are joined into rows, rows into a ``table`` block.
- **Fields** (``\\x13`` code ``\\x14`` result ``\\x15``, nested) keep their result and drop their code, so a
  hyperlink reads as its text and a page number as the number. A table of contents (the "TOC n" styles) is
  skipped: it repeats the headings.
- **Headings**: a paragraph's outline level, else its style: the built-in "Heading 1-9" (style ids 1-9, whatever
  the language of Word: "标题 1" is the same style) or "Title", or a custom style named like them.
- **Lists**: paragraphs with list numbering (``sprmPIlfo``) or a list style become one ``list`` block.

Encrypted or obfuscated files are refused as password-protected; Word 6/95 files (older FIB) as unsupported.
"""

from __future__ import annotations

import bisect
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from inhouse.errors import DocumentRejected
from inhouse.kb.document import Marking, ParsedDocument
from inhouse.kb.parse.blocks import (
    BlockList,
    clean_inline,
    format_table,
    guess_language,
    note_text,
    pick_title,
    style_heading_level,
)
from inhouse.kb.parse.markings import running_markings
from inhouse.kb.parse.ole import open_ole, password_protected, read_stream, summary_metadata
from inhouse.kb.parse.safety import ParseLimits

_WORD97_IDENT = 0xA5EC
_WORD97_NFIB = 0x00C1  # Word 97; later versions keep this in FibBase and put their own in FibRgCswNew
_F_ENCRYPTED, _F_WHICH_TABLE, _F_OBFUSCATED = 0x0100, 0x0200, 0x8000
_CLX, _PLCF_BTE_PAPX, _STSHF = 33, 13, 1  # indices into FibRgFcLcb97
_PLCF_FND_REF, _PLCF_FND_TXT, _PLCF_SPA_MOM, _PLCF_END_REF, _PLCF_END_TXT, _PLCF_TXBX_TXT = 2, 3, 40, 46, 47, 56
_PLCF_HDD, _DGG_INFO = 11, 50
# Office Art records ([MS-ODRAW]): the drawing group, a drawing, a shape's property table; WordArt's text property.
_OFFICE_ART_DGG, _OFFICE_ART_DG, _OFFICE_ART_FOPT, _GTEXT_UNICODE = 0xF000, 0xF002, 0xF00B, 0x00C0
_HEADER_DRAWING = 1  # OfficeArtWordDrawing.dgglbl: the drawing of the header stories (0: the main document's)
# The header story's parts after its six note separators: per section, even and odd header, even and odd footer,
# first-page header and footer.
_HDD_SOURCES: tuple[Literal["header", "footer"], ...] = ("header", "header", "footer", "footer", "header", "footer")
_FRD, _FSPA, _FTXBXS = 2, 26, 22  # sizes of the data after the character positions of those PLCs
_SPRM_IN_TABLE, _SPRM_TTP, _SPRM_DEPTH = 0x2416, 0x2417, 0x6649
_SPRM_INNER_CELL, _SPRM_INNER_TTP = 0x244B, 0x244C
_SPRM_OUTLINE, _SPRM_LIST = 0x2640, 0x460B
_STI_TITLE, _STI_TOC = 62, range(19, 28)
_STI_LISTS = range(47, 62)  # List, List Bullet, List Number and their 2-5 variants
_MARKS = re.compile(r"[\r\x07]")
# Characters that stand for something in Word's text: breaks read as spaces, the non-breaking hyphen as a hyphen;
# the optional hyphen and the anchors of pictures, footnotes and comments (\x01 \x02 \x05 \x08) as nothing.
_SPECIALS = str.maketrans({"\x0b": " ", "\x0c": " ", "\x0e": " ", "\x1e": "-", "\x1f": None, "\x01": None,
                           "\x02": None, "\x05": None, "\x08": None})


@dataclass(frozen=True)
class _Piece:
    cp_start: int
    cp_end: int
    offset: int  # byte offset of cp_start in the WordDocument stream
    width: int  # 1 for an 8-bit piece, 2 for UTF-16


@dataclass(frozen=True)
class _Style:
    sti: int
    name: str
    outline: int | None
    listed: bool


@dataclass(frozen=True)
class _Para:
    """What a paragraph's properties (its style and its own sprms) say about it."""

    style: _Style | None
    outline: int | None
    listed: bool
    in_table: bool
    row_end: bool
    nested: bool  # inside a table inside a table: read as part of the outer cell


def parse(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    ole = open_ole(data, filename)
    word = read_stream(ole, "WordDocument", filename) or b""
    if len(word) < 0x200 or struct.unpack_from("<H", word, 0)[0] != _WORD97_IDENT:
        raise DocumentRejected(filename, "corrupt Word document (no valid file information block)")
    nfib, flags = struct.unpack_from("<H", word, 2)[0], struct.unpack_from("<H", word, 0x0A)[0]
    if flags & (_F_ENCRYPTED | _F_OBFUSCATED):
        raise password_protected(filename)
    if nfib < _WORD97_NFIB:
        raise DocumentRejected(filename, "unsupported file type (Word 6/95 document); save it as .docx")
    table = read_stream(ole, "1Table" if flags & _F_WHICH_TABLE else "0Table", filename)
    if table is None:
        raise DocumentRejected(filename, "corrupt Word document (its table stream is missing)")
    fib = _Fib(word)
    all_pieces = _piece_table(table, fib, filename)
    pieces, text = _read_range(word, all_pieces, 0, fib.ccp_text)
    asides = _asides(word, table, fib, all_pieces)
    offsets = _Offsets(pieces)
    styles = _styles(table, fib)
    papx = _PapxIndex(word, table, fib)

    out = BlockList()
    pending_list: list[str] = []
    rows: list[list[str]] = []
    row: list[str] = []
    cell: list[str] = []
    fields = _FieldFilter()

    due: list[str] = []  # notes and text boxes of paragraphs read: written after the paragraph, list or table

    def flush_asides() -> None:
        for aside in due:
            out.add("paragraph", aside)
        due.clear()

    def flush_list() -> None:
        out.add("list", "\n".join(pending_list))
        pending_list.clear()
        if not rows and not row and not cell:
            flush_asides()

    def flush_table() -> None:
        if row or cell:
            rows.append([*row, " ".join(cell)][: limits.max_table_cols])
        if rows:
            out.add("table", format_table(rows[: limits.max_table_rows]))
        rows.clear()
        row.clear()
        cell.clear()
        if not pending_list:
            flush_asides()

    start = 0
    for mark in _MARKS.finditer(text):
        end = mark.start()
        para = _describe(papx.at(offsets.of(end)), styles)
        content = clean_inline(fields.keep(text[start:end]).translate(_SPECIALS))
        mine = []  # this paragraph's notes and text boxes
        while asides and asides[0].cp <= end:
            mine.append(asides.pop(0).text)
        start = end + 1
        if para.in_table or mark.group() == "\x07":
            flush_list()
            if para.row_end:
                if cell:  # text before the row mark that no cell mark closed
                    row.append(" ".join(cell))
                    cell.clear()
                rows.append(row[: limits.max_table_cols])
                row = []
            elif mark.group() == "\x07" and not para.nested:
                row.append(" ".join([*cell, content]).strip())
                cell.clear()
            elif content:
                cell.append(content)
            due.extend(mine)  # after the table
            continue
        flush_table()
        if not content or (para.style is not None and para.style.sti in _STI_TOC):
            due.extend(mine)
            if not pending_list:
                flush_asides()
            continue
        level = _heading_level(para)
        listed = not level and (para.listed or (para.style is not None and para.style.listed))
        if not listed:
            flush_list()
        if level:
            out.heading(content, level)
        elif listed:
            pending_list.append(content if content.startswith(("-", "•", "*")) else f"- {content}")
        else:
            out.add("paragraph", content)
        due.extend(mine)  # a list item's: after the list
        if not listed:
            flush_asides()
    due += [a.text for a in asides]  # anchors not found in the main text
    flush_list()
    flush_table()
    flush_asides()

    title, metadata = summary_metadata(ole, filename)
    if not out.blocks:
        raise DocumentRejected(filename, "Word document has no text")
    return ParsedDocument(
        title=pick_title([title], out.blocks, filename),
        blocks=tuple(out.blocks),
        language=guess_language("\n".join(b.text for b in out.blocks)),
        filename=filename,
        mime="application/msword",
        metadata=metadata,
        markings=_running_text(word, table, fib, all_pieces),
    )


class _Fib:
    """The parts of the file information block we use: ``ccpText`` and the (offset, size) pairs in FibRgFcLcb."""

    def __init__(self, word: bytes) -> None:
        csw = struct.unpack_from("<H", word, 32)[0]
        lw = 34 + 2 * csw
        cslw = struct.unpack_from("<H", word, lw)[0]
        # ccpText, ccpFtn, ccpHdd, ccpMcr, ccpAtn, ccpEdn, ccpTxbx: the stories' lengths, in this order in the text
        lengths = [max(0, v) for v in struct.unpack_from("<7i", word, lw + 2 + 3 * 4)]
        self.ccp_text, ftn, hdd, mcr, atn, edn, txbx = lengths
        self.footnotes = (self.ccp_text, self.ccp_text + ftn)
        self.headers = (self.ccp_text + ftn, self.ccp_text + ftn + hdd)
        self.endnotes = (self.ccp_text + ftn + hdd + mcr + atn, self.ccp_text + ftn + hdd + mcr + atn + edn)
        self.text_boxes = (self.endnotes[1], self.endnotes[1] + txbx)
        fc_lcb = lw + 2 + 4 * cslw
        self._count = struct.unpack_from("<H", word, fc_lcb)[0]
        self._base = fc_lcb + 2
        self._word = word

    def fc_lcb(self, index: int) -> tuple[int, int]:
        if index >= self._count or self._base + 8 * index + 8 > len(self._word):
            return 0, 0
        fc, lcb = struct.unpack_from("<II", self._word, self._base + 8 * index)
        return int(fc), int(lcb)


def _piece_table(table: bytes, fib: _Fib, filename: str) -> list[_Piece]:
    """Every piece of the document's text (all stories): its character positions and where its bytes lie."""
    fc, lcb = fib.fc_lcb(_CLX)
    clx = table[fc:fc + lcb]
    pos = 0
    while pos + 3 <= len(clx) and clx[pos] == 0x01:  # Prc: formatting of pieces, not needed for the text
        size = struct.unpack_from("<h", clx, pos + 1)[0]
        if size < 0:  # signed in the format, never negative in a file: it would loop back
            raise DocumentRejected(filename, "corrupt Word document (a negative size in the piece table)")
        pos += 3 + size
    if pos + 5 > len(clx) or clx[pos] != 0x02:
        raise DocumentRejected(filename, "corrupt Word document (no piece table)")
    size = struct.unpack_from("<I", clx, pos + 1)[0]
    plc = clx[pos + 5:pos + 5 + size]
    n = (len(plc) - 4) // 12
    if n <= 0:
        raise DocumentRejected(filename, "corrupt Word document (empty piece table)")
    cps = struct.unpack_from(f"<{n + 1}i", plc, 0)
    pieces: list[_Piece] = []
    for k in range(n):
        raw_fc = struct.unpack_from("<I", plc, 4 * (n + 1) + 8 * k + 2)[0]
        compressed = bool(raw_fc & 0x40000000)
        offset = (raw_fc & 0x3FFFFFFF) // 2 if compressed else raw_fc & 0x3FFFFFFF
        pieces.append(_Piece(cps[k], cps[k + 1], offset, 1 if compressed else 2))
    return pieces


def _read_range(word: bytes, pieces: list[_Piece], lo: int, hi: int) -> tuple[list[_Piece], str]:
    """The text at character positions ``lo`` to ``hi``, and where each piece of it lies in the WordDocument
    stream (positions re-based to 0: the pieces of a story follow each other in the text returned)."""
    rebased: list[_Piece] = []
    parts: list[str] = []
    at = 0
    for piece in pieces:
        cp_start, cp_end = max(piece.cp_start, lo), min(piece.cp_end, hi)
        if cp_end <= cp_start:
            continue
        offset = piece.offset + (cp_start - piece.cp_start) * piece.width
        raw = word[offset:offset + (cp_end - cp_start) * piece.width]
        chunk = raw.decode("cp1252" if piece.width == 1 else "utf-16-le", errors="replace")
        rebased.append(_Piece(at, at + len(chunk), offset, piece.width))
        parts.append(chunk)
        at += len(chunk)
    return rebased, "".join(parts)


@dataclass(frozen=True)
class _Aside:
    cp: int  # where the main text refers to it: a note's reference mark, a text box's anchor
    text: str


def _asides(word: bytes, table: bytes, fib: _Fib, pieces: list[_Piece]) -> list[_Aside]:
    """Footnotes, endnotes and text boxes, each with the position in the main text it belongs to (sorted)."""
    out: list[_Aside] = []
    for kind, refs_at, texts_at, (lo, hi) in (("footnote", _PLCF_FND_REF, _PLCF_FND_TXT, fib.footnotes),
                                              ("endnote", _PLCF_END_REF, _PLCF_END_TXT, fib.endnotes)):
        if hi <= lo:
            continue
        refs, _ = _plc(table, fib, refs_at, _FRD)
        bounds, _ = _plc(table, fib, texts_at, 0)
        story = _read_range(word, pieces, lo, hi)[1]
        for n, cp in enumerate(refs[:-1]):
            if n + 1 < len(bounds) and (text := _story_text(story[bounds[n]:bounds[n + 1]])):
                out.append(_Aside(cp, note_text(kind, n + 1, text)))
    lo, hi = fib.text_boxes
    if hi > lo:
        anchors_cps, shapes = _plc(table, fib, _PLCF_SPA_MOM, _FSPA)
        anchor_of = {struct.unpack_from("<I", shape, 0)[0]: cp for cp, shape in zip(anchors_cps, shapes, strict=False)}
        bounds, boxes = _plc(table, fib, _PLCF_TXBX_TXT, _FTXBXS)
        story = _read_range(word, pieces, lo, hi)[1]
        for n, box in enumerate(boxes):
            if n + 1 >= len(bounds):
                break
            cp = anchor_of.get(struct.unpack_from("<I", box, 14)[0], fib.ccp_text)  # lid: the shape's id
            for line in _MARKS.split(story[bounds[n]:bounds[n + 1]]):
                if text := _story_text(line):
                    out.append(_Aside(cp, text))
    return sorted(out, key=lambda a: a.cp)


def _running_text(word: bytes, table: bytes, fib: _Fib, pieces: list[_Piece]) -> tuple[Marking, ...]:
    """The distinct lines of every section's headers and footers (``PlcfHdd`` cuts the header story into them)."""
    lo, hi = fib.headers
    if hi <= lo:
        return ()
    bounds, _ = _plc(table, fib, _PLCF_HDD, 0)
    story = _read_range(word, pieces, lo, hi)[1]
    lines = [(_HDD_SOURCES[(n - 6) % 6], _story_text(line)) for n in range(6, len(bounds) - 1)
             for line in _MARKS.split(story[max(0, bounds[n]):max(0, bounds[n + 1])])]
    words: list[tuple[Literal["header", "footer"], str]] = [("header", text) for text in _header_wordart(table, fib)]
    return running_markings([*lines, *words])  # the words: a watermark across every page


def _header_wordart(table: bytes, fib: _Fib) -> list[str]:
    """The words of the WordArt shapes in the headers' drawing: a watermark ("CONFIDENTIAL") is one, its text in the
    shape's ``gtextUNICODE`` property. ``OfficeArtContent`` is the drawing group, then each drawing after a byte
    saying whose it is."""
    fc, lcb = fib.fc_lcb(_DGG_INFO)
    art = table[fc:fc + lcb]
    if len(art) < 8 or _record(art, 0)[1] != _OFFICE_ART_DGG:
        return []
    at = 8 + _record(art, 0)[2]
    out: list[str] = []
    while at + 9 <= len(art):
        owner, (_, kind, size) = art[at], _record(art, at + 1)
        if kind != _OFFICE_ART_DG:
            break
        if owner == _HEADER_DRAWING:
            out += _wordart(art, at + 9, min(at + 9 + size, len(art)))
        at += 9 + size
    return out


def _record(art: bytes, at: int) -> tuple[int, int, int]:
    """An Office Art record header: (version and instance, type, length)."""
    return struct.unpack_from("<HHI", art, at) if at + 8 <= len(art) else (0, 0, 0)


def _wordart(art: bytes, at: int, end: int, depth: int = 0) -> list[str]:
    """Every ``gtextUNICODE`` in the records between ``at`` and ``end`` (containers walked into: a drawing, its
    group, a shape; a damaged file nesting deeper than any drawing does is not followed)."""
    out: list[str] = []
    while at + 8 <= end:
        head, kind, size = _record(art, at)
        body, at = at + 8, min(at + 8 + size, end)
        if head & 0xF == 0xF:  # a container
            out += _wordart(art, body, at, depth + 1) if depth < 16 else []
        elif kind == _OFFICE_ART_FOPT:
            out += _gtext(art[body:at], head >> 4)
    return out


def _gtext(table: bytes, count: int) -> list[str]:
    """The ``gtextUNICODE`` of a property table: ``count`` 6-byte entries, then the complex values in their order."""
    complex_at = 6 * count
    for n in range(min(count, len(table) // 6)):
        opid, value = struct.unpack_from("<HI", table, 6 * n)
        if not opid & 0x8000:  # a simple value: no bytes after the table
            continue
        if opid & 0x3FFF == _GTEXT_UNICODE:
            raw = table[complex_at:complex_at + value]
            return [text] if (text := clean_inline(raw.decode("utf-16-le", "replace").split("\0")[0])) else []
        complex_at += value
    return []


def _plc(table: bytes, fib: _Fib, index: int, data_size: int) -> tuple[list[int], list[bytes]]:
    """A PLC of the table stream: its n+1 character positions and n data items of ``data_size`` bytes."""
    fc, lcb = fib.fc_lcb(index)
    raw = table[fc:fc + lcb]
    n = (len(raw) - 4) // (4 + data_size) if len(raw) >= 4 else -1
    if n < 0:
        return [], []
    cps = list(struct.unpack_from(f"<{n + 1}i", raw, 0))
    base = 4 * (n + 1)
    return cps, [raw[base + data_size * k:base + data_size * (k + 1)] for k in range(n)] if data_size else []


def _story_text(text: str) -> str:
    """A note's or a box's text as one line: fields' results kept, marks and anchors dropped."""
    return clean_inline(_FieldFilter().keep(_MARKS.sub(" ", text)).translate(_SPECIALS))


class _Offsets:
    """Byte offset in the WordDocument stream of a character position (paragraph properties are keyed by it)."""

    def __init__(self, pieces: list[_Piece]) -> None:
        self._pieces = pieces
        self._starts = [p.cp_start for p in pieces]

    def of(self, cp: int) -> int:
        piece = self._pieces[max(bisect.bisect_right(self._starts, cp) - 1, 0)]
        return piece.offset + (cp - piece.cp_start) * piece.width


class _PapxIndex:
    """Paragraph properties by byte offset: the runs of every ``PapxFkp`` page the ``PlcBtePapx`` lists."""

    def __init__(self, word: bytes, table: bytes, fib: _Fib) -> None:
        fc, lcb = fib.fc_lcb(_PLCF_BTE_PAPX)
        plc = table[fc:fc + lcb]
        n = (len(plc) - 4) // 8 if len(plc) >= 12 else 0
        runs: list[tuple[int, int, bytes]] = []
        for k in range(n):
            page_number = struct.unpack_from("<I", plc, 4 * (n + 1) + 4 * k)[0] & 0x3FFFFF
            page = word[page_number * 512:(page_number + 1) * 512]
            if len(page) < 512:
                continue
            crun = page[511]
            if 4 * (crun + 1) + 13 * crun > 511:
                continue
            fcs = struct.unpack_from(f"<{crun + 1}I", page, 0)
            for j in range(crun):
                runs.append((fcs[j], fcs[j + 1], _papx_in_fkp(page, page[4 * (crun + 1) + 13 * j])))
        runs.sort(key=lambda r: r[0])
        self._starts = [r[0] for r in runs]
        self._runs = runs

    def at(self, offset: int) -> bytes:
        """The ``GrpPrlAndIstd`` of the paragraph whose mark is at ``offset`` (empty: no properties recorded)."""
        k = bisect.bisect_right(self._starts, offset) - 1
        if k >= 0 and self._runs[k][0] <= offset < self._runs[k][1]:
            return self._runs[k][2]
        return b""


def _papx_in_fkp(page: bytes, word_offset: int) -> bytes:
    if word_offset == 0:
        return b""
    at = word_offset * 2
    cb = page[at]
    start, size = (at + 1, 2 * cb - 1) if cb else (at + 2, 2 * page[at + 1])
    return page[start:start + size]


def _sprms(grpprl: bytes) -> Iterator[tuple[int, bytes]]:
    """(opcode, operand) of each property modifier; the operand's size follows from the opcode's ``spra`` bits."""
    pos = 0
    while pos + 2 <= len(grpprl):
        op = struct.unpack_from("<H", grpprl, pos)[0]
        pos += 2
        spra = op >> 13
        if spra == 6:  # variable: a length byte, except two table sprms with a 2-byte length
            if op == 0xD608 and pos + 2 <= len(grpprl):
                size = struct.unpack_from("<H", grpprl, pos)[0] + 1
            elif pos < len(grpprl):
                size = 1 + grpprl[pos]
            else:
                return
        else:
            size = (1, 1, 2, 4, 2, 2, 0, 3)[spra]
        yield op, grpprl[pos:pos + size]
        pos += size


def _describe(grp: bytes, styles: list[_Style | None]) -> _Para:
    istd = struct.unpack_from("<H", grp, 0)[0] if len(grp) >= 2 else 0
    style = styles[istd] if istd < len(styles) else None
    outline: int | None = None
    listed = in_table = row_end = nested = False
    for op, arg in _sprms(grp[2:]):
        value = int.from_bytes(arg[:4], "little") if arg else 0
        if op == _SPRM_IN_TABLE:
            in_table = bool(value)
        elif op == _SPRM_TTP:
            row_end = bool(value)
        elif op == _SPRM_DEPTH:
            in_table, nested = value >= 1, value > 1
        elif op in (_SPRM_INNER_CELL, _SPRM_INNER_TTP) and value:
            nested = True
        elif op == _SPRM_OUTLINE:
            outline = value if value < 9 else None
        elif op == _SPRM_LIST:
            listed = value != 0
    return _Para(style, outline, listed, in_table, row_end and not nested, nested)


def _heading_level(para: _Para) -> int:
    if para.outline is not None:
        return para.outline + 1
    style = para.style
    if style is None:
        return 0
    if 1 <= style.sti <= 9:
        return style.sti
    if style.sti == _STI_TITLE:
        return 1
    level = style_heading_level(style.name)
    if level:
        return level
    return style.outline + 1 if style.outline is not None else 0


def _styles(table: bytes, fib: _Fib) -> list[_Style | None]:
    """The style sheet, by style index: built-in id, name, and the outline level or list its own properties set."""
    fc, lcb = fib.fc_lcb(_STSHF)
    stsh = table[fc:fc + lcb]
    if len(stsh) < 6:
        return []
    cb_stshi = struct.unpack_from("<H", stsh, 0)[0]
    count, base_size = struct.unpack_from("<HH", stsh, 2)
    pos = 2 + cb_stshi
    styles: list[_Style | None] = []
    for _ in range(count):
        if pos + 2 > len(stsh):
            break
        size = struct.unpack_from("<H", stsh, pos)[0]
        std = stsh[pos + 2:pos + 2 + size]
        pos += 2 + size
        styles.append(_style(std, base_size) if len(std) >= base_size + 2 else None)
    return styles


def _style(std: bytes, base_size: int) -> _Style:
    sti = struct.unpack_from("<H", std, 0)[0] & 0x0FFF
    kind = struct.unpack_from("<H", std, 2)[0] & 0x000F  # 1: paragraph style
    chars = struct.unpack_from("<H", std, base_size)[0]
    name_end = base_size + 2 + 2 * chars
    name = std[base_size + 2:name_end].decode("utf-16-le", errors="replace")
    outline: int | None = None
    listed = sti in _STI_LISTS or "list" in name.lower() or "列表" in name
    upx = name_end + 2  # after the name's terminating NUL
    if kind == 1 and upx + 4 <= len(std):
        size = struct.unpack_from("<H", std, upx)[0]
        for op, arg in _sprms(std[upx + 4:upx + 2 + size]):  # skip the UPX's own istd
            value = int.from_bytes(arg[:4], "little") if arg else 0
            if op == _SPRM_OUTLINE and value < 9:
                outline = value
            elif op == _SPRM_LIST and value:
                listed = True
    return _Style(sti, name, outline, listed)


class _FieldFilter:
    """Keeps a field's result and drops its code, across paragraphs (a field may span several)."""

    def __init__(self) -> None:
        self._stack: list[bool] = []  # per open field: True once its result has started

    def keep(self, text: str) -> str:
        if not self._stack and not any(c in text for c in "\x13\x14\x15"):
            return text
        out: list[str] = []
        for char in text:
            if char == "\x13":
                self._stack.append(False)
            elif char == "\x14":
                if self._stack:
                    self._stack[-1] = True
            elif char == "\x15":
                if self._stack:
                    self._stack.pop()
            elif all(self._stack):
                out.append(char)
        return "".join(out)
