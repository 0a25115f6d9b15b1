"""Rich Text Format (.rtf), read from its own syntax: WordPad's files, Word's "Rich Text" exports, mail bodies.

RTF is text: groups ``{…}``, control words ``\\word123`` and text. A reader keeps a stack of group states (which
destination the text goes to, the font, how many fallback characters follow a ``\\u`` escape) and a paragraph's
properties (``\\pard`` resets them). From those, the same blocks as ``docx.py``:

- **Text**: 7-bit escapes ``\\'hh`` are bytes in the current font's code page (``\\fcharset134`` is GBK, as a
  Chinese Word writes), else the document's (``\\ansicpg936``); ``\\uN`` is a UTF-16 unit, and the ``\\ucN`` fallback
  characters after it are skipped. ``\\binN`` data is skipped whole.
- **Headings**: ``\\outlinelevelN``, or a style (``\\sN``) whose name in the style sheet is "heading N" / "标题 N" /
  "Title". **Lists**: paragraphs with list numbering (``\\ls``, or old-style ``\\pn``), their bullet text
  (``\\listtext``, ``\\pntext``) left out. **Tables**: ``\\intbl`` paragraphs, cells ended by ``\\cell``, rows by
  ``\\row`` (a nested table's ``\\nestcell`` text is read into the outer cell).
- **Fields** keep their result (``\\fldrslt``); the code (``\\*\\fldinst``) is dropped.
- **Footnotes and endnotes** (``\\footnote``, ``\\ftnalt`` for an endnote) are read after their paragraph as
  ``Footnote 1: …`` / ``Endnote 1: …``, and **text boxes** (a drawing's ``\\shptxt``; its ``\\shprslt`` rendering for
  old readers is skipped) after the paragraph they are anchored in, as for Word files.
- **Headers and footers** are not content; their text becomes markings (``kb/markings.py``), with the text boxes and
  the WordArt in them (a watermark keeps its words in the drawing's ``gtextUNICODE`` property).
- **Skipped**: the font, colour, style and list tables (read for code pages and style names only), pictures,
  objects, comments, and every ``\\*`` destination this reader does not know, as the format asks.

The document information group supplies the title, author, subject and creation date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from inhouse.errors import DocumentRejected
from inhouse.kb.document import Marking, ParsedDocument
from inhouse.kb.parse.blocks import (
    BlockList,
    clean_inline,
    format_table,
    guess_language,
    meaningful,
    note_text,
    pick_title,
    style_heading_level,
)
from inhouse.kb.parse.ole import codec
from inhouse.kb.parse.safety import ParseLimits

# A control word (and its number; one space after it is its delimiter), a \'hh byte, a control symbol, a brace, a
# run of text, or line breaks (not text in RTF).
_TOKEN = re.compile(rb"\\([a-zA-Z]{1,32})(-?\d{1,10})? ?|\\'([0-9a-fA-F]{2})|\\([^a-zA-Z'])|([{}])"
                    rb"|([^\\{}\r\n]+)|[\r\n]+")
_MAX_DEPTH = 400
# \fcharsetN → Windows code page (the ones Office writes; 0 and 1 mean the document's own, 2 is Symbol).
_CHARSETS = {77: 10000, 128: 932, 129: 949, 130: 1361, 134: 936, 136: 950, 161: 1253, 162: 1254, 163: 1258,
             177: 1255, 178: 1256, 186: 1257, 204: 1251, 222: 874, 238: 1250, 255: 437}
# Destinations whose text is not content (their control words may still be read: fonts, styles, information).
_SKIPPED = frozenset((
    "colortbl", "listtable", "listoverridetable", "rsidtbl", "generator", "xmlnstbl", "themedata",
    "colorschememapping", "latentstyles", "datastore", "pgdsctbl", "listtext", "pntext", "pntxta", "pntxtb", "pict",
    "object", "objdata", "nonshppict", "shppict", "do", "annotation", "atnid", "atnauthor", "xe",
    "tc", "txe", "fldinst", "bkmkstart", "bkmkend", "template", "revtbl", "filetbl", "mmathPr", "ftnsep", "ftnsepc",
    "aftnsep", "aftnsepc", "userprops", "docvar", "wgrffmtfilter", "protusertbl", "passwordhash",
))
# The ordinary control words ``_control`` acts on; every other one only formats.
_ACTED = frozenset(("ansicpg", "f", "uc", "par", "sect", "pard", "s", "outlinelevel", "intbl", "ls", "cell", "nestcell",
                    "row", "fcharset", "cpg", "yr", "mo", "dy", "hr", "min", "ftnalt"))
_HEADERS = {"header": "header", "headerl": "header", "headerr": "header", "headerf": "header",
            "footer": "footer", "footerl": "footer", "footerr": "footer", "footerf": "footer"}
_INFO_TEXT = {"title": "title", "author": "author", "subject": "subject"}
_CHARACTERS = {"tab": " ", "line": "\n", "emdash": "—", "endash": "–", "bullet": "•", "lquote": "‘", "rquote": "’",
               "ldblquote": "“", "rdblquote": "”", "emspace": " ", "enspace": " ", "qmspace": " ", "page": " "}
_SYMBOLS = {b"~": " ", b"-": "", b"_": "-", b"\\": "\\", b"{": "{", b"}": "}", b"\t": " "}


@dataclass
class _Group:
    """What applies inside one ``{…}``: where its text goes, its font, the \\uc fallback count."""

    dest: str = "body"  # body, skip, footnote, header, footer, fonttbl, stylesheet, info, title, author, subject
    font: int | None = None
    uc: int = 1
    first: bool = True  # no control word or text seen yet (a destination word must come first)
    starred: bool = False  # opened with \*: skip unless its destination is known


@dataclass
class _Para:
    style: int = 0
    outline: int | None = None
    in_table: bool = False
    listed: bool = False


@dataclass
class _Reader:
    limits: ParseLimits
    filename: str
    ansi: int = 1252
    fonts: dict[int, int] = field(default_factory=dict)  # font number → code page
    styles: dict[int, str] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    markings: list[Marking] = field(default_factory=list)
    out: BlockList = field(default_factory=BlockList)
    para: _Para = field(default_factory=_Para)
    text: list[str] = field(default_factory=list)  # the open paragraph (or cell)
    cell: list[str] = field(default_factory=list)  # paragraphs of the open cell before the current one
    row: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    pending_list: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # footnotes of the paragraph being read
    due: list[str] = field(default_factory=list)  # footnotes waiting for their list or table to be written
    counted: dict[str, int] = field(default_factory=dict)  # footnotes and endnotes numbered so far
    endnote: bool = False  # the note being read is an endnote (\ftnalt)
    aside: list[str] = field(default_factory=list)  # text of the footnote/header/info group being read
    shape_in: str | None = None  # "header" or "footer" while a drawing there is read, None in the body
    prop_name: list[str] = field(default_factory=list)  # the drawing property being read (\sn)
    prop_value: list[str] = field(default_factory=list)  # and its value (\sv)
    style_number: int = 0
    date: dict[str, int] = field(default_factory=dict)

    # -- blocks ------------------------------------------------------------------------------------------------

    def end_paragraph(self) -> None:
        content = clean_inline("".join(self.text))
        self.text.clear()
        mine, self.notes = self.notes, []
        if self.para.in_table:
            if content:
                self.cell.append(content)
            self.due += mine
            return
        self.flush_table()
        level = self.heading_level()
        listed = not level and self.para.listed
        if not listed:
            self.flush_list()
        if content and level:
            self.out.heading(content, level)
        elif content and listed:
            self.pending_list.append(content if content.startswith(("-", "•", "*")) else f"- {content}")
        elif content:
            self.out.add("paragraph", content)
        self.due += mine  # a list item's: after its list
        if not self.pending_list:
            self.flush_due()

    def end_cell(self) -> None:
        self.cell.append(clean_inline("".join(self.text)))
        self.text.clear()
        self.due += self.notes
        self.notes = []
        self.row.append(" ".join(c for c in self.cell if c))
        self.cell.clear()

    def end_row(self) -> None:
        if self.text or self.cell:
            self.end_cell()
        self.rows.append(self.row[: self.limits.max_table_cols])
        self.row = []

    def flush_table(self) -> None:
        if self.row or self.cell:
            self.end_row()
        if self.rows:
            self.flush_list()
            self.out.add("table", format_table(self.rows[: self.limits.max_table_rows]))
            self.rows.clear()
            self.flush_due()

    def flush_list(self) -> None:
        if self.pending_list:
            self.out.add("list", "\n".join(self.pending_list))
            self.pending_list.clear()
            if not self.rows:
                self.flush_due()

    def flush_due(self) -> None:
        for note in self.due:
            self.out.add("paragraph", note)
        self.due.clear()

    def heading_level(self) -> int:
        if self.para.outline is not None and 0 <= self.para.outline < 9:
            return self.para.outline + 1
        return style_heading_level(self.styles.get(self.para.style, ""))


def parse(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    if not data.lstrip().startswith(b"{\\rtf"):
        raise DocumentRejected(filename, "not an RTF document (no {\\rtf header)")
    r = _Reader(limits, filename)
    _read(data, r)
    if r.text:
        r.end_paragraph()
    r.flush_table()
    r.flush_list()
    r.flush_due()
    if not r.out.blocks:
        raise DocumentRejected(filename, "RTF document has no text")
    metadata = {k: v for k, v in (("author", meaningful(r.info.get("author"))),
                                  ("subject", meaningful(r.info.get("subject"))), ("date", _date(r.date))) if v}
    return ParsedDocument(
        title=pick_title([r.info.get("title")], r.out.blocks, filename),
        blocks=tuple(r.out.blocks),
        language=guess_language("\n".join(b.text for b in r.out.blocks)),
        filename=filename,
        mime="application/rtf",
        metadata=metadata,
        markings=tuple(dict.fromkeys(r.markings)),
    )


def _read(data: bytes, r: _Reader) -> None:
    """One pass over the tokens: text to the open destination, groups pushed and popped, control words applied."""
    stack: list[_Group] = [_Group()]
    pending = bytearray()  # \'hh bytes not decoded yet (a double-byte character spans two escapes)
    units: list[int] = []  # \uN UTF-16 units not decoded yet (a surrogate pair spans two)
    skip = 0  # fallback characters still to skip after a \uN

    def sink() -> list[str] | None:
        dest = stack[-1].dest
        if dest == "body":
            return r.text
        if dest in ("footnote", "header", "footer", "title", "author", "subject", "stylesheet", "textbox"):
            return r.aside
        if dest == "propname":
            return r.prop_name
        return r.prop_value if dest == "propvalue" else None

    def flush_text() -> None:
        target = sink()
        if pending:
            g = stack[-1]
            page = r.fonts.get(g.font, r.ansi) if g.font is not None else r.ansi
            if target is not None:
                target.append(bytes(pending).decode(codec(page), errors="replace"))
            pending.clear()
        if units:
            if target is not None:
                target.append(b"".join(u.to_bytes(2, "little") for u in units).decode("utf-16-le", errors="replace"))
            units.clear()

    def emit(text: str) -> None:
        flush_text()
        target = sink()
        if target is not None:
            target.append(text)

    pos, end = 0, len(data)
    while pos < end:
        m = _TOKEN.match(data, pos)
        if m is None:  # a lone backslash at the end
            break
        pos = m.end()
        word, arg, hexbyte, symbol, brace, run = m.groups()
        g = stack[-1]
        if hexbyte is not None:
            if skip:
                skip -= 1
                continue
            if units:
                flush_text()
            pending.append(int(hexbyte, 16))
            g.first = False
            continue
        if run is not None:
            if skip:
                cut = min(skip, len(run))
                skip -= cut
                run = run[cut:]
                if not run:
                    continue
            if g.dest == "stylesheet" and b";" in run:
                flush_text()
                r.aside.append(run.split(b";")[0].decode("latin-1"))
                _end_style(r)
                continue
            emit(run.decode(codec(r.fonts.get(g.font, r.ansi) if g.font is not None else r.ansi), errors="replace"))
            g.first = False
            continue
        if brace is not None:
            flush_text()
            skip = 0
            if brace == b"{":
                if len(stack) >= _MAX_DEPTH:
                    raise DocumentRejected(r.filename, f"RTF groups nested deeper than {_MAX_DEPTH}")
                stack.append(replace(g, first=True, starred=False))  # a group inherits its parent's state
                if g.dest == "stylesheet":
                    r.style_number = 0
                    r.aside.clear()
            else:
                closed = stack.pop() if len(stack) > 1 else stack[0]
                _close(r, closed, stack[-1])
            continue
        if symbol is not None:
            if symbol == b"*":
                g.starred = True
                continue
            if symbol in _SYMBOLS:
                emit(_SYMBOLS[symbol])
            elif symbol in (b"\r", b"\n"):  # \<newline> is \par
                flush_text()
                if g.dest == "body":
                    r.end_paragraph()
            continue
        if word is None:  # line breaks in the file are not text
            continue
        name = word.decode("ascii")
        value = int(arg) if arg is not None else None
        if name == "bin":  # binary data follows: skip it whole
            flush_text()
            pos += max(0, value or 0)
            continue
        if g.first:
            g.first = False
            dest = _destination(name, g)
            if dest == "shape" and g.dest != "shape":  # a drawing opens: in a header or footer, or in the body
                r.shape_in = g.dest if g.dest in ("header", "footer") else None
            elif dest == "propname":
                r.prop_name.clear()
            if name == "pn" and len(stack) > 1 and stack[-2].dest == "body":
                r.para.listed = True  # old-style numbering: the paragraph's {\*\pn …} group says it is numbered
            if dest is not None:
                flush_text()
                g.dest = dest
                if dest in ("footnote", "header", "footer", "title", "author", "subject", "textbox"):
                    r.aside.clear()
                    r.endnote = False
                continue
        if name == "u" and value is not None:
            if pending:
                flush_text()
            units.append(value & 0xFFFF)
            skip = g.uc
            continue
        if name in _CHARACTERS:
            emit(_CHARACTERS[name])
            continue
        if name not in _ACTED:  # formatting (fonts sizes, spacing, colours...): most of the words in a file
            continue
        if pending or units:
            flush_text()
        _control(r, g, name, value)


def _destination(name: str, g: _Group) -> str | None:
    """The destination a group's first control word opens, or None when it is an ordinary control word."""
    if g.dest == "skip":
        return "skip"
    if name == "footnote":
        return "footnote"
    if name in ("shp", "shpinst"):  # a drawing: only its text box (\shptxt) is read, not its fallback rendering
        return "shape"
    if g.dest == "shape":  # its text box, or a property ({\sp{\sn name}{\sv value}}: WordArt keeps its words there)
        return {"shptxt": "textbox", "sp": "shapeprop"}.get(name, "skip")
    if g.dest == "shapeprop":
        return {"sn": "propname", "sv": "propvalue"}.get(name, "skip")
    if name in _HEADERS:
        return _HEADERS[name]
    if name in ("fonttbl", "stylesheet", "info"):
        return name
    if g.dest == "info":
        return _INFO_TEXT.get(name, "info" if name in ("creatim",) else "skip")
    if name in _SKIPPED or g.starred:
        return "skip"
    return None


def _control(r: _Reader, g: _Group, name: str, value: int | None) -> None:
    """An ordinary control word: paragraph, table, font, code-page and information properties."""
    if g.dest == "fonttbl":
        if name == "f" and value is not None:
            g.font = value
        elif name == "fcharset" and value is not None and g.font is not None and value in _CHARSETS:
            r.fonts[g.font] = _CHARSETS[value]
        elif name == "cpg" and value is not None and g.font is not None:
            r.fonts[g.font] = value
        return
    if g.dest == "stylesheet":
        if name == "s" and value is not None:
            r.style_number = value
        return
    if g.dest == "info":
        if name in ("yr", "mo", "dy", "hr", "min") and value is not None:
            r.date[name] = value
        return
    if name == "ansicpg" and value is not None:
        r.ansi = value
    elif name == "f" and value is not None:
        g.font = value
    elif name == "uc" and value is not None:
        g.uc = max(0, min(value, 8))
    elif g.dest != "body":
        if name == "par" and g.dest in ("footnote", "header", "footer", "textbox"):
            r.aside.append("\n")
        elif name == "ftnalt" and g.dest == "footnote":  # an endnote, kept in a footnote group
            r.endnote = True
        return
    elif name in ("par", "sect"):
        r.end_paragraph()
    elif name == "pard":
        r.para = _Para()
    elif name == "s" and value is not None:
        r.para.style = value
    elif name == "outlinelevel" and value is not None:
        r.para.outline = value
    elif name == "intbl":
        r.para.in_table = True
    elif name == "ls":
        r.para.listed = True
    elif name == "cell":
        r.end_cell()
    elif name == "nestcell":
        r.text.append(" ")
    elif name == "row":
        r.end_row()


def _close(r: _Reader, closed: _Group, parent: _Group) -> None:
    """A group ended: a footnote, header or information field it held is complete."""
    if closed.dest == parent.dest:
        return
    text = clean_inline("".join(r.aside))
    if closed.dest == "footnote":
        r.aside.clear()
        if text:
            kind = "endnote" if r.endnote else "footnote"
            r.counted[kind] = r.counted.get(kind, 0) + 1
            r.notes.append(note_text(kind, r.counted[kind], text))
    elif closed.dest == "textbox":
        lines = [line for line in (clean_inline(x) for x in "".join(r.aside).split("\n")) if line]
        r.aside.clear()
        if r.shape_in:  # a text box in a header or footer: running text, as the header's own
            r.markings += [Marking(r.shape_in, line) for line in lines]  # type: ignore[arg-type]
        else:
            r.notes += lines  # after the paragraph the drawing is anchored in, as for Word files
    elif closed.dest == "propvalue":
        value = clean_inline("".join(r.prop_value))
        if r.shape_in and value and "".join(r.prop_name).strip() == "gtextUNICODE":  # a watermark's words
            r.markings.append(Marking(r.shape_in, value))  # type: ignore[arg-type]
        r.prop_value.clear()
    elif closed.dest in ("header", "footer"):
        r.aside.clear()
        if text and len(r.markings) < 100:
            r.markings.append(Marking(closed.dest, text))  # type: ignore[arg-type]
    elif closed.dest in _INFO_TEXT:
        r.aside.clear()
        if text:
            r.info[closed.dest] = text


def _end_style(r: _Reader) -> None:
    name = clean_inline("".join(r.aside)).strip(" ;")
    if name and r.style_number not in r.styles:
        r.styles[r.style_number] = name
    r.aside.clear()


def _date(parts: dict[str, int]) -> str | None:
    if not {"yr", "mo", "dy"} <= parts.keys():
        return None
    try:
        import datetime as dt

        return dt.datetime(parts["yr"], parts["mo"], parts["dy"], parts.get("hr", 0), parts.get("min", 0)).isoformat()
    except ValueError:
        return None


def encapsulated_html(data: bytes) -> str | None:
    """The HTML an RTF body encapsulates ([MS-OXRTFEX]: ``\\fromhtml1``), or None for an RTF body of its own.

    Outlook keeps an HTML mail's body as RTF: the HTML markup in ``{\\*\\htmltag …}`` groups, the text between tags
    as ordinary text, and RTF-only formatting between ``\\htmlrtf`` and ``\\htmlrtf0``, which is left out.
    """
    if b"\\fromhtml" not in data[:2048]:
        return None
    out: list[str] = []
    pending = bytearray()
    ansi = 1252
    stack: list[tuple[bool, bool]] = [(False, False)]  # per group: (skipped, RTF-only)
    tag_depth = -1  # the depth of the open \htmltag group, if any
    first = False
    starred = False
    pos, end = 0, len(data)

    units: list[int] = []  # \uN UTF-16 units not decoded yet (an emoji is a surrogate pair of two)

    def flush() -> None:  # at most one of the two holds anything: each is flushed before the other grows
        if pending:
            out.append(bytes(pending).decode(codec(ansi), errors="replace"))
            pending.clear()
        if units:
            out.append(b"".join(u.to_bytes(2, "little") for u in units).decode("utf-16-le", errors="replace"))
            units.clear()

    while pos < end:
        m = _TOKEN.match(data, pos)
        if m is None:
            break
        pos = m.end()
        word, arg, hexbyte, symbol, brace, run = m.groups()
        skipped, rtf_only = stack[-1]
        in_tag = 0 <= tag_depth < len(stack)
        if brace == b"{":
            if len(stack) >= _MAX_DEPTH:
                raise DocumentRejected("message body", f"RTF groups nested deeper than {_MAX_DEPTH}")
            stack.append((skipped, rtf_only))
            first, starred = True, False
            continue
        if brace == b"}":
            flush()
            if len(stack) > 1:
                stack.pop()
            if tag_depth >= len(stack):
                tag_depth = -1
            first = False
            continue
        if symbol == b"*":
            starred = True
            continue
        if word is not None:
            name = word.decode("ascii")
            if first:
                first = False
                if name in ("htmltag", "mhtmltag") and starred:
                    tag_depth = len(stack) - 1 if name == "htmltag" else tag_depth
                    stack[-1] = (skipped or name == "mhtmltag", False)
                    continue
                if starred or name in ("fonttbl", "colortbl", "stylesheet", "info", "pict"):
                    stack[-1] = (True, rtf_only)
                    continue
            if name == "ansicpg" and arg is not None:
                ansi = int(arg)
            elif name == "htmlrtf":
                stack[-1] = (skipped, arg is None or int(arg) != 0)
            elif skipped or (rtf_only and not in_tag):
                continue
            elif name == "par":
                flush()
                out.append("\n")
            elif name == "tab":
                flush()
                out.append("\t")
            elif name == "u" and arg is not None:
                if pending:
                    flush()
                units.append(int(arg) & 0xFFFF)
                pos = _skip_fallback(data, pos)
            continue
        first = False
        if skipped or (rtf_only and not in_tag):
            continue
        if hexbyte is not None:
            if units:
                flush()
            pending.append(int(hexbyte, 16))
        elif symbol is not None and symbol in (b"\\", b"{", b"}"):
            flush()
            out.append(symbol.decode())
        elif run is not None:
            flush()
            out.append(run.decode(codec(ansi), errors="replace"))
    flush()
    return "".join(out)


def _skip_fallback(data: bytes, pos: int) -> int:
    """Past the one fallback character after a ``\\uN`` (a ``\\'hh`` escape or a plain character)."""
    if data[pos:pos + 2] == b"\\'":
        return pos + 4
    return pos + 1 if pos < len(data) and data[pos:pos + 1] not in (b"\\", b"{", b"}") else pos
