"""OpenDocument (.odt, .ods, .odp, .odg; their templates; the single-file .fodt, .fods, .fodp, .fodg): the native
formats of LibreOffice and OpenOffice, and the ISO standard many public bodies require for the files they exchange.

One reader of the ODF 1.3 XML: the body (``content.xml``), the page styles (``styles.xml``: headers and footers) and
the metadata (``meta.xml``), from the ZIP package or from the one XML document of a flat file. The blocks are those of
the Microsoft formats, so a document reads the same whichever suite saved it:

- **Text** (office:text): headings (``text:h`` and its outline level, or a paragraph style named like a heading),
  paragraphs, lists (nested items indented), tables (merged cells once), sections read through; footnotes and
  endnotes after the paragraph (or list, or table) that refers to them and text boxes after the paragraph they are
  anchored in, as for .docx. Comments, tracked deletions and generated indexes (the table of contents repeats the
  headings) are not read.
- **Spreadsheet** (office:spreadsheet): as .xlsx, a heading and a table per sheet, numbers and dates as their values.
- **Presentation and drawing** (office:presentation, office:drawing): as .pptx, a page per slide, its title a
  heading, shapes in reading order, speaker notes after the slide; the footer, date and slide-number boxes are not
  content.

Where a document says how sensitive it is, it becomes ``markings``: the text of the page styles' headers and footers
(page numbers and other fields left out), a slide's footer, and the Microsoft Purview label properties an Office
file keeps when LibreOffice saves it (``meta:user-defined``).
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from inhouse.errors import DocumentRejected
from inhouse.kb.document import Block, ParsedDocument
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
from inhouse.kb.parse.markings import msip_labels, running_markings
from inhouse.kb.parse.safety import ParseLimits, iter_xml, open_zip_checked, safe_xml

_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "presentation": "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0",
    "style": "urn:oasis:names:tc:opendocument:xmlns:style:1.0",
    "svg": "urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0",
    "meta": "urn:oasis:names:tc:opendocument:xmlns:meta:1.0",
    "dc": "http://purl.org/dc/elements/1.1/",
}


def _q(name: str) -> str:
    prefix, local = name.split(":")
    return f"{{{_NS[prefix]}}}{local}"


P, H, SPAN, S, TAB, LINE_BREAK = (_q(n) for n in ("text:p", "text:h", "text:span", "text:s", "text:tab",
                                                    "text:line-break"))
LIST, LIST_ITEM, LIST_HEADER, NOTE, NOTE_BODY = (_q(n) for n in ("text:list", "text:list-item", "text:list-header",
                                                                 "text:note", "text:note-body"))
TABLE, ROW, CELL, COVERED = (_q(n) for n in ("table:table", "table:table-row", "table:table-cell",
                                             "table:covered-table-cell"))
FRAME, TEXT_BOX, GROUP, PAGE, NOTES = (_q(n) for n in ("draw:frame", "draw:text-box", "draw:g", "draw:page",
                                                       "presentation:notes"))
# Containers whose children are read as if they stood in their place.
_THROUGH = frozenset(_q(n) for n in ("text:section", "text:numbered-paragraph", "text:soft-page-break",
                                     "table:table-header-rows", "table:table-rows", "table:table-row-group",
                                     "text:change-start", "text:change-end"))
# Never content: comments, tracked deletions, generated indexes (they repeat the headings), declarations, forms.
_SKIPPED = frozenset(_q(n) for n in (
    "office:annotation", "office:annotation-end", "text:tracked-changes", "text:table-of-content",
    "text:illustration-index", "text:table-index", "text:object-index", "text:user-index", "text:alphabetical-index",
    "text:bibliography", "text:sequence-decls", "text:variable-decls", "text:user-field-decls",
    "text:dde-connection-decls", "office:forms", "draw:image", "svg:title", "svg:desc", "text:ruby-text",
))
# Fields a header or footer shows that are not words the document says about itself (a page's number, a date).
_RUNNING_FIELDS = frozenset(_q(n) for n in (
    "text:page-number", "text:page-count", "text:date", "text:time", "text:sheet-name", "text:file-name",
    "text:page-continuation", "text:chapter", "text:title", "presentation:date-time", "presentation:footer",
    "presentation:header",
))
# A slide's boxes that repeat on every slide (the footer's text is a marking, read from its declaration).
_RUNNING_CLASSES = frozenset(("footer", "date-time", "page-number", "header"))
_HEADERS: dict[str, Literal["header", "footer"]] = {
    _q(f"style:{n}"): "header" for n in ("header", "header-left", "header-first")}
_FOOTERS: dict[str, Literal["header", "footer"]] = {
    _q(f"style:{n}"): "footer" for n in ("footer", "footer-left", "footer-first")}
_REGIONS = tuple(_q(f"style:region-{n}") for n in ("left", "center", "right"))
_MIME = {
    "text": "application/vnd.oasis.opendocument.text",
    "spreadsheet": "application/vnd.oasis.opendocument.spreadsheet",
    "presentation": "application/vnd.oasis.opendocument.presentation",
    "drawing": "application/vnd.oasis.opendocument.graphics",
}
MIME_PREFIX = "application/vnd.oasis.opendocument."
_SPREADSHEET_MIME = b"application/vnd.oasis.opendocument.spreadsheet"  # also "-template"
_DRAW = f"{{{_NS['draw']}}}"
_MAX_STYLE_HOPS = 8  # an automatic style names its parent; a loop in a damaged file ends here
_LENGTH = re.compile(r"^\s*(-?[0-9]*\.?[0-9]+)\s*(cm|mm|in|pt|pc|px)?\s*$")
_EMU_PER = {"cm": 360_000, "mm": 36_000, "in": 914_400, "pt": 12_700, "pc": 152_400, "px": 9_525, None: 360_000}


def parse(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    package = _load(data, filename, limits)
    kind = "spreadsheet" if package.body is None else package.body.tag.rsplit("}", 1)[-1]
    if kind not in _MIME:
        raise DocumentRejected(filename, f"unsupported OpenDocument type ({kind or 'empty'}); only text, spreadsheet, "
                                         "presentation and drawing documents are read")
    styles = _Styles(package.roots)
    page_count = None
    truncated: list[str] = []
    footers: dict[str, None] = {}
    if kind == "text":
        reader = _TextReader(limits, styles)
        reader.read(package.body)
        blocks = reader.out.blocks
    elif kind == "spreadsheet":
        sheets = (_streamed_sheets(package.content, filename) if package.body is None
                  else ((s.get(_q("table:name")), _rows(s)) for s in package.body if s.tag == TABLE))
        blocks, page_count, truncated = _sheets(sheets, limits)
    else:
        blocks, page_count = _slides(package.body, limits, footers, filename, drawing=kind == "drawing")
    metadata, title, properties = _meta(package.meta)
    if truncated:
        metadata["truncated"] = f"rows after {limits.max_table_rows} dropped in: {', '.join(truncated)}"
    running = running_markings([*_running_text(package.roots), *(("footer", text) for text in footers)])
    return ParsedDocument(
        title=pick_title([title], blocks if kind != "spreadsheet" else [], filename),
        blocks=tuple(blocks),
        language=guess_language("\n".join(b.text for b in blocks)),
        filename=filename,
        mime=_MIME[kind],
        metadata=metadata,
        page_count=page_count,
        markings=running + tuple(msip_labels(properties)),
    )


def is_package(names: Iterable[str], mimetype: bytes | None) -> bool:
    """Whether a ZIP with these entries (and this ``mimetype`` entry's bytes) is an OpenDocument package."""
    return "content.xml" in set(names) and (mimetype or b"").startswith(MIME_PREFIX.encode())


# -- the package -------------------------------------------------------------------------------------------------------


@dataclass
class _Package:
    body: Any  # office:text, office:spreadsheet, office:presentation...; None: a packaged spreadsheet, streamed
    roots: list[Any]  # the trees holding styles (content and styles.xml; one tree in a flat file)
    meta: Any | None  # office:meta
    content: bytes = b""  # a packaged spreadsheet's content.xml, read as a stream (``_streamed_sheets``)


def _load(data: bytes, filename: str, limits: ParseLimits) -> _Package:
    if data.startswith(b"PK\x03\x04"):
        names = set(open_zip_checked(data, filename, limits))
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            manifest = zf.read("META-INF/manifest.xml") if "META-INF/manifest.xml" in names else b""
            if b"encryption-data" in manifest:
                raise DocumentRejected(filename, "password-protected OpenDocument file; remove the password first")
            if "content.xml" not in names:
                raise DocumentRejected(filename, "corrupt OpenDocument package (no content.xml)")
            raw = zf.read("content.xml")
            # A damaged styles or meta part loses the markings and metadata, not the text.
            styles = _optional_tree(zf, "styles.xml", names)
            meta_root = _optional_tree(zf, "meta.xml", names)
            mimetype = zf.read("mimetype") if "mimetype" in names and zf.getinfo("mimetype").file_size < 256 else b""
        meta = meta_root.find(_q("office:meta")) if meta_root is not None else None
        if mimetype.startswith(_SPREADSHEET_MIME):  # a sheet's XML can be 100 MB: its rows are read as they come
            return _Package(body=None, roots=[styles] if styles is not None else [], meta=meta, content=raw)
        content = _tree(raw, filename, "content.xml")
        roots = [content] + ([styles] if styles is not None else [])
    else:
        content = _tree(data, filename, "document")
        roots, meta_root = [content], content
    body = content.find(_q("office:body"))
    kind = next((child for child in body if isinstance(child.tag, str)), None) if body is not None else None
    if kind is None:
        raise DocumentRejected(filename, "corrupt OpenDocument file (no office:body)")
    meta = meta_root.find(_q("office:meta")) if meta_root is not None else None
    return _Package(body=kind, roots=roots, meta=meta)


def _tree(data: bytes, filename: str, part: str) -> Any:
    root = safe_xml(data)
    if root is None:
        raise DocumentRejected(filename, f"corrupt OpenDocument file ({part} is not well-formed XML)")
    return root


def _optional_tree(zf: zipfile.ZipFile, name: str, names: set[str]) -> Any | None:
    return safe_xml(zf.read(name)) if name in names else None


# -- text --------------------------------------------------------------------------------------------------------------


class _Styles:
    """The heading level a paragraph's style gives: its own name, else the named style an automatic style derives
    from ("P3" → "Heading 2"), matched as Word's are (``style_heading_level``)."""

    def __init__(self, roots: list[Any]) -> None:
        self._parent: dict[str, str] = {}
        self._display: dict[str, str] = {}
        for root in roots:
            for holder in ("office:styles", "office:automatic-styles"):
                for styles in root.iter(_q(holder)):
                    for style in styles.iter(_q("style:style")):
                        name = style.get(_q("style:name"))
                        if not name or style.get(_q("style:family")) != "paragraph":
                            continue
                        if (parent := style.get(_q("style:parent-style-name"))) is not None:
                            self._parent[name] = parent
                        if (display := style.get(_q("style:display-name"))) is not None:
                            self._display[name] = display
        self._levels: dict[str, int] = {}

    def heading_level(self, name: str | None) -> int:
        if not name:
            return 0
        if name not in self._levels:
            level, current = 0, name
            for _ in range(_MAX_STYLE_HOPS):
                level = style_heading_level(self._display.get(current) or _decode_style_name(current))
                if level or current not in self._parent:
                    break
                current = self._parent[current]
            self._levels[name] = level
        return self._levels[name]


def _decode_style_name(name: str) -> str:
    """An XML-safe style name back to the name shown ("Heading_20_1" → "Heading 1")."""
    return re.sub(r"_([0-9a-fA-F]{2,4})_", lambda m: chr(int(m.group(1), 16)), name)


@dataclass
class _Inline:
    """A paragraph's text, and what it anchors: text boxes and notes, read after it."""

    text: str
    boxes: list[Any] = field(default_factory=list)
    notes: list[Any] = field(default_factory=list)


def _inline(element: Any, *, running: bool = False) -> _Inline:
    """The text of a paragraph or heading. Spaces as ODF defines them: runs of white space in the XML are one
    space (``clean_inline``), ``text:s`` is ``text:c`` spaces. In a header or footer (``running``), fields
    such as the page number are left out."""
    out = _Inline("")
    parts: list[str] = []

    def walk(node: Any) -> None:
        if node.text:
            parts.append(node.text)
        for child in node:
            tag = child.tag
            if not isinstance(tag, str):  # a comment or processing instruction: only its tail is text
                pass
            elif tag == S:
                parts.append(" " * min(_int(child.get(_q("text:c")), 1), 100))
            elif tag in (TAB, LINE_BREAK):
                parts.append(" ")
            elif tag == NOTE:
                out.notes.append(child)
            elif tag.startswith(_DRAW):  # a text box, a shape, a picture: read after the paragraph
                out.boxes.append(child)
            elif tag in _SKIPPED or (running and tag in _RUNNING_FIELDS):
                pass
            else:
                walk(child)
            if child.tail:
                parts.append(child.tail)

    walk(element)
    out.text = clean_inline("".join(parts))
    return out


def _lines(node: Any, depth: int = -1) -> Iterator[tuple[int, _Inline]]:
    """The paragraphs (and headings) inside ``node`` in reading order, with their list depth (0 outside lists):
    lists, sections and nested tables are read through; notes and text boxes stay with their paragraph."""
    for child in node:
        tag = child.tag
        if tag in (P, H):
            yield depth, _inline(child)
        elif tag == LIST:
            for item in child:
                yield from _lines(item, depth + 1)
        elif isinstance(tag, str) and tag not in _SKIPPED:
            yield from _lines(child, depth)


def _box_paragraphs(shape: Any) -> list[tuple[int, str]]:
    """The paragraphs of a text box or a shape's text, with their list depth, in order (nested boxes included)."""
    out: list[tuple[int, str]] = []
    for depth, line in _lines(shape):
        if line.text:
            out.append((max(depth, 0), line.text))
        for box in line.boxes:
            out += [(max(depth, 0), text) for _, text in _box_paragraphs(box)]
    return out


class _TextReader:
    """A text document's body into blocks, in reading order (the .docx reader's rules)."""

    def __init__(self, limits: ParseLimits, styles: _Styles) -> None:
        self.out = BlockList()
        self.limits = limits
        self.styles = styles
        self._seen = {"footnote": 0, "endnote": 0}
        self._asides: list[str] = []

    def read(self, container: Any) -> None:
        for element in container:
            self.element(element)
        self.flush_asides()

    def element(self, element: Any) -> None:
        tag = element.tag
        if tag in (P, H):
            line = _inline(element)
            level = (_int(element.get(_q("text:outline-level")), 1) if tag == H
                     else self.styles.heading_level(element.get(_q("text:style-name"))))
            if line.text:
                if level:
                    self.out.heading(line.text, level)
                else:
                    self.out.add("paragraph", line.text)
            self.aside(line)
            self.flush_asides()
        elif tag == LIST:
            items: list[str] = []
            self.read_list(element, 0, items)
            self.flush_list(items)
            self.flush_asides()
        elif tag == TABLE:
            rows = _table_rows(element, self.limits, on_cell=self.aside)  # a cell's notes: after the table
            self.out.add("table", format_table(rows))
            self.flush_asides()
        elif isinstance(tag, str) and tag.startswith(_DRAW):  # a text box or shape anchored to the page
            self.aside(_Inline("", boxes=[element]))
            self.flush_asides()
        elif tag in _THROUGH:
            for child in element:
                self.element(child)

    def read_list(self, element: Any, depth: int, items: list[str]) -> None:
        for item in element:
            if item.tag not in (LIST_ITEM, LIST_HEADER):
                continue
            for child in item:
                if child.tag == P:
                    line = _inline(child)
                    if line.text:
                        text = line.text if line.text.startswith(("-", "•", "*")) else f"- {line.text}"
                        items.append("  " * depth + text)
                    self.aside(line)
                elif child.tag == LIST:
                    self.read_list(child, depth + 1, items)
                elif isinstance(child.tag, str) and child.tag not in _SKIPPED:  # a numbered heading, a table
                    self.flush_list(items)
                    self.flush_asides()
                    self.element(child)

    def flush_list(self, items: list[str]) -> None:
        self.out.add("list", "\n".join(items))
        items.clear()

    def aside(self, line: _Inline) -> None:
        """Queue what a paragraph anchors: text boxes first, then notes (numbered in reading order), as .docx."""
        for box in line.boxes:
            self._asides += [text for _, text in _box_paragraphs(box)]
        for note in line.notes:
            kind = "endnote" if note.get(_q("text:note-class")) == "endnote" else "footnote"
            body = note.find(NOTE_BODY)
            text = " ".join(text for _, text in _box_paragraphs(body)) if body is not None else ""
            if text:
                self._seen[kind] += 1
                self._asides.append(note_text(kind, self._seen[kind], text))

    def flush_asides(self) -> None:
        for text in self._asides:
            self.out.add("paragraph", text)
        self._asides.clear()


# -- tables and spreadsheets -------------------------------------------------------------------------------------------

def _table_rows(table: Any, limits: ParseLimits, *, values: bool = False,
                on_cell: Callable[[_Inline], None] | None = None) -> list[list[str]]:
    """A table's rows of cell texts, empty rows left out. Repeated rows and cells (how ODF stores a sheet's empty
    tail in a few bytes) expand only as far as the limits; covered cells (the rest of a merged one) are left out.
    ``values``: a cell holding a number or a date gives that value (a spreadsheet's), not the text it shows.
    ``on_cell`` gets each paragraph of a cell, for what it anchors (notes, text boxes)."""
    rows: list[list[str]] = []
    for row in _rows(table):
        cells = _row_cells(row, limits, values=values, on_cell=on_cell)
        if any(cells):
            repeat = _int(row.get(_q("table:number-rows-repeated")), 1)
            rows += [cells] * max(0, min(repeat, limits.max_table_rows - len(rows)))
        if len(rows) >= limits.max_table_rows:
            break
    return rows


def _row_cells(row: Any, limits: ParseLimits, *, values: bool = False,
               on_cell: Callable[[_Inline], None] | None = None) -> list[str]:
    cells: list[str] = []
    for cell in row:
        if cell.tag != CELL:
            continue
        text = _cell_value(cell) if values else None
        if text is None:
            lines = [line for _, line in _lines(cell)]
            if on_cell is not None:
                for line in lines:
                    on_cell(line)
            text = " ".join(line.text for line in lines if line.text)
        repeat = _int(cell.get(_q("table:number-columns-repeated")), 1)
        cells += [text] * max(0, min(repeat, limits.max_table_cols - len(cells)))
        if len(cells) >= limits.max_table_cols:
            break
    return cells


def _rows(table: Any) -> Iterator[Any]:
    for child in table:
        if child.tag == ROW:
            yield child
        elif child.tag in _THROUGH:
            yield from _rows(child)


def _cell_value(cell: Any) -> str | None:
    """A spreadsheet cell's value as the .xlsx reader writes it (12 for 12.0, ISO dates), None for text."""
    kind = cell.get(_q("office:value-type"))
    if kind in ("float", "percentage", "currency"):
        value = cell.get(_q("office:value"))
        try:
            number = float(value or "")
        except ValueError:
            return None
        return str(int(number)) if number.is_integer() and abs(number) < 1e16 else repr(number)
    if kind == "date":
        value = cell.get(_q("office:date-value")) or ""
        return value[:-9] if value.endswith("T00:00:00") else value or None
    if kind == "boolean":
        return {"true": "True", "false": "False"}.get(cell.get(_q("office:boolean-value")) or "")
    return None


def _sheets(sheets: Iterable[tuple[str | None, Iterator[Any]]],
            limits: ParseLimits) -> tuple[list[Block], int, list[str]]:
    """A heading and a table per sheet (given as its name and its rows); the sheet count; the names of the sheets
    whose filled rows went past the limit (every row is still taken from a stream, so it can be let go)."""
    out = BlockList()
    truncated: list[str] = []
    number = 0
    for number, (given, rows) in enumerate(sheets, 1):
        out.page = number
        out.reset_sections()
        name = given or f"Sheet {number}"
        out.heading(name, 1)
        table: list[list[str]] = []
        more = False
        for row in rows:
            if len(table) >= limits.max_table_rows:
                more = more or _filled(row)
                continue
            cells = _row_cells(row, limits, values=True)
            if any(cells):
                repeat = _int(row.get(_q("table:number-rows-repeated")), 1)
                room = limits.max_table_rows - len(table)
                table += [cells] * min(repeat, room)
                more = repeat > room
        if more:
            truncated.append(name)
        out.add("table", format_table(table))
    return out.blocks, number, truncated


def _filled(row: Any) -> bool:
    """Whether a row has something in it (the empty tail a sheet stores does not count)."""
    return any(c.tag == CELL and (_cell_value(c) is not None or "".join(c.itertext()).strip()) for c in row)


def _streamed_sheets(content: bytes, filename: str) -> Iterator[tuple[str | None, Iterator[Any]]]:
    """The sheets of a spreadsheet's ``content.xml`` as it is parsed: each sheet's name and its rows, each row let go
    once read (the tree never holds more than a row and the sheet's column definitions)."""
    events = iter_xml(io.BytesIO(content))
    try:
        for event, element in events:
            if event == "start" and element.tag == TABLE and element.getparent().tag == _q("office:spreadsheet"):
                yield element.get(_q("table:name")), _streamed_rows(events, element)
                element.clear()
    except SyntaxError as exc:  # lxml's XMLSyntaxError
        raise DocumentRejected(filename, f"corrupt OpenDocument file (content.xml is not well-formed XML: {exc})"
                               [:300]) from None


def _streamed_rows(events: Any, sheet: Any) -> Iterator[Any]:
    """The rows of ``sheet`` (its direct rows, and those of its row groups), up to the sheet's end."""
    depth = 0  # tables inside cells: their rows are not the sheet's
    for event, element in events:
        if element.tag == TABLE:
            if element is sheet and event == "end":
                return
            depth += 1 if event == "start" else -1
        elif event == "end" and element.tag == ROW and depth == 0:
            yield element
            element.clear()
            while element.getprevious() is not None:  # the rows read before: let them go
                del element.getparent()[0]


# -- presentations -----------------------------------------------------------------------------------------------------


def _slides(body: Any, limits: ParseLimits, footers: dict[str, None], filename: str, *,
            drawing: bool) -> tuple[list[Any], int]:
    declared = {decl.get(_q("presentation:name")): clean_inline("".join(decl.itertext()))
                for decl in body.iter(_q("presentation:footer-decl"))}
    pages = [child for child in body if child.tag == PAGE]
    if len(pages) > limits.max_pages:
        raise DocumentRejected(filename, f"{len(pages)} slides, above the limit of {limits.max_pages}")
    out = BlockList()
    for number, page in enumerate(pages, 1):
        out.page = number
        out.reset_sections()
        footer = declared.get(page.get(_q("presentation:use-footer-name")))
        if footer:
            footers[footer] = None
        shapes = [s for s in page if isinstance(s.tag, str) and s.tag not in (NOTES, *_SKIPPED)
                  and s.get(_q("presentation:class")) not in _RUNNING_CLASSES]
        title_shape = next((s for s in shapes if s.get(_q("presentation:class")) == "title"), None)
        title = " ".join(text for _, text in _box_paragraphs(title_shape)) if title_shape is not None else ""
        out.heading(title or f"{'Page' if drawing else 'Slide'} {number}", 1)
        for shape in _reading_order([s for s in shapes if s is not title_shape]):
            _shape(shape, out, limits)
        notes = page.find(NOTES)
        if notes is not None:
            text = " ".join(text for frame in notes if frame.get(_q("presentation:class")) == "notes"
                            for _, text in _box_paragraphs(frame))
            if text:
                out.add("paragraph", "Notes: " + text)
    return out.blocks, len(pages)


def _reading_order(shapes: list[Any]) -> list[Any]:
    """Top to bottom, then left to right, in rows of 100,000 EMU (≈ 2.8 mm) as for .pptx."""
    return sorted(shapes, key=lambda s: (_emu(s.get(_q("svg:y"))) // 100_000, _emu(s.get(_q("svg:x")))))


def _shape(shape: Any, out: BlockList, limits: ParseLimits) -> None:
    if shape.tag == GROUP:
        for child in _reading_order([c for c in shape if isinstance(c.tag, str)]):
            _shape(child, out, limits)
        return
    table = shape.find(TABLE)
    if table is not None:
        out.add("table", format_table(_table_rows(table, limits)))
        return
    paragraphs = _box_paragraphs(shape)
    if len(paragraphs) > 1:
        out.add("list", "\n".join(f"{'  ' * level}- {text}" for level, text in paragraphs))
    elif paragraphs:
        out.add("paragraph", paragraphs[0][1])


# -- running text and metadata -----------------------------------------------------------------------------------------


def _running_text(roots: list[Any]) -> Iterator[tuple[Literal["header", "footer"], str]]:
    """The lines of the page styles' headers and footers that are shown (each region of a spreadsheet's header a line
    of its own)."""
    for root in roots:
        for master in root.iter(_q("style:master-page")):
            for part in master:
                source = _HEADERS.get(part.tag) or _FOOTERS.get(part.tag)
                if source is None or part.get(_q("style:display")) == "false":
                    continue
                regions = [r for r in part if r.tag in _REGIONS] or [part]
                for region in regions:
                    for paragraph in region.iter(P, H):
                        yield source, _inline(paragraph, running=True).text


def _meta(meta: Any | None) -> tuple[dict[str, str], str | None, list[tuple[str, str]]]:
    """Author, subject and creation date; the title; the user-defined properties (name, value)."""
    if meta is None:
        return {}, None, []

    def first(*names: str) -> str | None:
        for name in names:
            element = meta.find(_q(name))
            if element is not None and (value := meaningful(element.text)):
                return value
        return None

    created = first("meta:creation-date")
    try:
        date = dt.datetime.fromisoformat(created).isoformat() if created else None
    except ValueError:
        date = None
    # meta:initial-creator wrote the document; dc:creator is, in ODF, whoever saved it last.
    pairs = (("author", first("meta:initial-creator")), ("subject", first("dc:subject")),
             ("date", date))
    properties = [(p.get(_q("meta:name")) or "", "".join(p.itertext()))
                  for p in meta.iter(_q("meta:user-defined"))]
    return {k: v for k, v in pairs if v}, first("dc:title"), properties


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default


def _emu(length: str | None) -> int:
    match = _LENGTH.match(length or "")
    if not match:
        return 0
    return int(float(match.group(1)) * _EMU_PER[match.group(2)])
