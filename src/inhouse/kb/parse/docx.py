"""Word (.docx) via python-docx: headings by style (or outline level), paragraphs, lists, tables kept whole.

Body paragraphs and tables are read in document order. A paragraph is a heading when its style is "Title",
"Heading N" (also the Chinese "标题 N") or carries an outline level; consecutive list paragraphs (a "List" style
or Word numbering) become one list block. Tables become ``a | b`` rows, merged cells counted once.

Footnotes and endnotes are read where they are referred to: after the paragraph (or list) that cites them, as
paragraphs ``Footnote 1: …`` / ``Endnote 1: …`` numbered in reading order, so a passage keeps its exceptions ("except
during the trade fair week"). Text boxes (a drawing's ``txbxContent``; the VML copy Word writes as a fallback is
skipped) are read after the paragraph they are anchored to. Headers and footers are not content (the same line on
every page) but are where a document says how sensitive it is: their text, their text boxes and a watermark's words
are kept as ``markings``. Comments are not read, nor is text formatted Hidden (``w:vanish``): a reader never sees it.

python-docx sees only a body's or cell's direct ``w:p``/``w:tbl`` children and a paragraph's direct runs and
hyperlinks, so we walk the XML ourselves: content controls (``w:sdt``), custom XML, tracked insertions (``w:ins``,
``w:moveTo``), simple fields and smart tags are read through; tracked deletions (``w:del``, ``w:moveFrom``) stay out.
A table inside a cell is read into that cell, a row a line (as the .doc and RTF readers do).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any, Literal

from inhouse.kb.document import Marking, ParsedDocument
from inhouse.kb.parse.blocks import (
    BlockList,
    clean_inline,
    format_table,
    guess_language,
    note_text,
    office_metadata,
    pick_title,
    style_heading_level,
)
from inhouse.kb.parse.markings import running_markings
from inhouse.kb.parse.safety import ParseLimits, open_zip_checked

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_VML_TEXTPATH = "{urn:schemas-microsoft-com:vml}textpath"
_SEPARATORS = ("separator", "continuationSeparator", "continuationNotice")  # the rules above notes, not notes
_P, _TBL, _R = f"{_W}p", f"{_W}tbl", f"{_W}r"
_RPR, _VANISH, _SPEC_VANISH = f"{_W}rPr", f"{_W}vanish", f"{_W}specVanish"
_OFF = ("0", "false", "off")  # an on/off property's values that turn it off
# Elements whose children are read as if they stood in their place: around paragraphs and tables (a body, a cell) and
# around runs (a paragraph). Anything else (w:del, w:moveFrom, w:sdtPr, properties) holds no text a reader sees.
_BLOCK_WRAPPERS = frozenset(f"{_W}{tag}" for tag in ("sdt", "sdtContent", "customXml"))
_RUN_WRAPPERS = frozenset(f"{_W}{tag}" for tag in ("hyperlink", "ins", "moveTo", "sdt", "sdtContent", "fldSimple",
                                                   "smartTag", "customXml", "dir", "bdo"))


def parse(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    open_zip_checked(data, filename, limits)
    import docx  # lazy: only Word files need it
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = docx.Document(io.BytesIO(data))
    style_of = _style_names(document)
    out = BlockList()
    pending_list: list[str] = []

    def flush_list() -> None:
        out.add("list", "\n".join(pending_list))
        pending_list.clear()

    notes = _Notes(document)
    # One walk of the body for any text box, instead of one per paragraph (2.5 % of a 3,000-paragraph parse).
    boxes = next(document.element.body.iter(f"{_W}txbxContent"), None) is not None
    asides: list[str] = []  # a paragraph's notes and text boxes: read after it (after its list, for a list item)

    def flush_asides() -> None:
        for aside in asides:
            out.add("paragraph", aside)
        asides.clear()

    for element in _block_elements(document.element.body):
        if element.tag == _TBL:
            flush_list()
            flush_asides()
            out.add("table", format_table(_table_rows(Table(element, document), limits)))
            asides += (_text_boxes(element) if boxes else []) + notes.referenced_by(element)  # its cells'
            flush_asides()
            continue
        item = Paragraph(element, document)
        text = clean_inline(_paragraph_text(element))
        extra = (_text_boxes(item._p) if boxes else []) + notes.referenced_by(item._p)
        if not text:
            if extra:
                flush_list()
                asides += extra
                flush_asides()
            continue
        style = style_of(item)
        level = _heading_level(item, style)
        listed = not level and _is_list_item(item, style)
        if not listed:
            flush_list()
            flush_asides()
        if level:
            out.heading(text, level)
        elif listed:
            pending_list.append(text if text.startswith(("-", "•", "*")) else f"- {text}")
        else:
            out.add("paragraph", text)
        asides += extra
        if not listed:
            flush_asides()
    flush_list()
    flush_asides()

    props = document.core_properties
    metadata = office_metadata(props)
    return ParsedDocument(
        title=pick_title([props.title], out.blocks, filename),
        blocks=tuple(out.blocks),
        language=guess_language("\n".join(b.text for b in out.blocks)),
        filename=filename,
        mime="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        metadata=metadata,
        markings=_running_text(document, limits),
    )


class _Notes:
    """The document's footnote and endnote texts by id; ``referenced_by`` numbers them in reading order."""

    def __init__(self, document: Any) -> None:
        from docx.opc.constants import RELATIONSHIP_TYPE as RT

        self._texts = {"footnote": _note_texts(document, RT.FOOTNOTES, "footnote"),
                       "endnote": _note_texts(document, RT.ENDNOTES, "endnote")}
        self._seen = {"footnote": 0, "endnote": 0}

    def referenced_by(self, p: Any) -> list[str]:
        if not (self._texts["footnote"] or self._texts["endnote"]):
            return []
        out = []
        for ref in p.iter(f"{_W}footnoteReference", f"{_W}endnoteReference"):
            kind = "footnote" if ref.tag == f"{_W}footnoteReference" else "endnote"
            text = self._texts[kind].get(ref.get(f"{_W}id", ""))
            if text:
                self._seen[kind] += 1
                out.append(note_text(kind, self._seen[kind], text))
        return out


def _note_texts(document: Any, relationship: str, kind: str) -> dict[str, str]:
    from docx.oxml import parse_xml  # python-docx's parser: no entities, and w:p elements it can read

    try:
        part = document.part.part_related_by(relationship)
    except KeyError:
        return {}
    texts: dict[str, str] = {}
    for note in parse_xml(part.blob).iter(f"{_W}{kind}"):
        if note.get(f"{_W}type") in _SEPARATORS:
            continue
        text = clean_inline(" ".join(_paragraph_text(p) for p in note.iter(f"{_W}p")))
        if text:
            texts[note.get(f"{_W}id", "")] = text
    return texts


def _text_boxes(p: Any) -> list[str]:
    """The paragraphs of the text boxes anchored in paragraph ``p`` (Word's VML fallback copies left out)."""
    out: list[str] = []
    for box in p.iter(f"{_W}txbxContent"):
        if any(a.tag == _MC_FALLBACK for a in box.iterancestors()):
            continue
        out += [text for inner in box.iter(f"{_W}p") if (text := clean_inline(_paragraph_text(inner)))]
    return out


def _block_elements(parent: Any) -> Iterator[Any]:
    """The ``w:p`` and ``w:tbl`` elements of a body, cell, header or footer in reading order, content controls and
    custom XML read through."""
    for child in parent.iterchildren():
        if child.tag in (_P, _TBL):
            yield child
        elif child.tag in _BLOCK_WRAPPERS:
            yield from _block_elements(child)


def _paragraph_text(p: Any) -> str:
    """A ``w:p`` element's text: its runs' (python-docx's run text: tabs, breaks), wrappers read through."""
    return "".join(_run_texts(p))


def _run_texts(parent: Any) -> Iterator[str]:
    for child in parent.iterchildren():
        if child.tag == _R:
            if not _hidden(child):
                yield str(child.text)  # python-docx's CT_R: w:t, w:tab, w:br... (w:delText, w:instrText left out)
        elif child.tag in _RUN_WRAPPERS:
            yield from _run_texts(child)


def _hidden(run: Any) -> bool:
    """A run formatted Hidden (``w:vanish``): Word neither shows nor prints it, so it is not what a reader sees.

    Kept when ``w:specVanish`` is set too: that pair is Word's style separator (the hidden mark that joins a run-in
    heading to the paragraph after it), whose text a reader does see. ``w:val="0"``/``"false"`` turns Hidden off.
    """
    rpr = run.find(_RPR)
    if rpr is None:
        return False
    vanish = rpr.find(_VANISH)
    return (vanish is not None and vanish.get(f"{_W}val", "true").lower() not in _OFF
            and rpr.find(_SPEC_VANISH) is None)


def _running_text(document: Any, limits: ParseLimits) -> tuple[Marking, ...]:
    """The distinct lines of every section's headers and footers (default, first-page and even-page ones)."""
    return running_markings(_running_lines(document, limits))


def _running_lines(document: Any, limits: ParseLimits) -> Iterator[tuple[Literal["header", "footer"], str]]:
    for section in document.sections:
        kinds: tuple[tuple[Literal["header", "footer"], tuple[Any, ...]], ...] = (
            ("header", (section.header, section.first_page_header, section.even_page_header)),
            ("footer", (section.footer, section.first_page_footer, section.even_page_footer)))
        for source, parts in kinds:
            for part in parts:
                if part.is_linked_to_previous:  # no definition of its own (reading would add one)
                    continue
                lines = _block_lines(part._element, limits)
                lines += _text_boxes(part._element) + _watermarks(part._element)
                yield from ((source, line) for line in lines)


def _watermarks(element: Any) -> list[str]:
    """The text of a header's WordArt: Word's watermark ("CONFIDENTIAL" across every page) is a VML shape whose
    ``v:textpath`` holds the words in its ``string`` attribute."""
    return [text for path in element.iter(_VML_TEXTPATH) if (text := path.get("string"))]


def _block_lines(parent: Any, limits: ParseLimits, separator: str = " | ") -> list[str]:
    """The text of a header, footer or cell: a paragraph a line, a table a line per row."""
    from docx.table import Table

    lines: list[str] = []
    for element in _block_elements(parent):
        if element.tag == _P:
            lines.append(_paragraph_text(element))
        else:
            lines += [separator.join(row) for row in _table_rows(Table(element, None), limits)]  # type: ignore[arg-type]
    return lines


def _style_names(document: Any) -> Callable[[Any], str]:
    """A paragraph's style name, looked up in a table built once.

    python-docx's ``paragraph.style`` scans every style of the document to find the default one whenever a paragraph
    names none (most body text): 95 % of the time of a 3,000-paragraph document went there.
    """
    from docx.enum.style import WD_STYLE_TYPE

    names = {s.style_id: s.name or "" for s in document.styles if s.type == WD_STYLE_TYPE.PARAGRAPH}
    default_style = document.styles.default(WD_STYLE_TYPE.PARAGRAPH)
    default = (default_style.name or "") if default_style is not None else ""
    return lambda paragraph: names.get(paragraph._p.style, default)


def _heading_level(paragraph: Any, name: str) -> int:
    level = style_heading_level(name)
    if level:
        return level
    ppr = paragraph._p.pPr
    outline = ppr.find(f"{_W}outlineLvl") if ppr is not None else None
    if outline is not None:
        value = outline.get(f"{_W}val", "9")
        if value.isdigit() and int(value) < 9:
            return int(value) + 1
    return 0


def _is_list_item(paragraph: Any, name: str) -> bool:
    if "list" in name.lower() or "列表" in name:
        return True
    ppr = paragraph._p.pPr
    return ppr is not None and ppr.find(f"{_W}numPr") is not None


def _table_rows(table: Any, limits: ParseLimits) -> list[list[str]]:
    rows: list[list[str]] = []
    for row in table.rows:
        if len(rows) >= limits.max_table_rows:
            break
        cells: list[str] = []
        last = None
        for cell in row.cells:
            if cell._tc is last:  # a horizontally merged cell is repeated once per grid column
                continue
            last = cell._tc
            cells.append("\n".join(_block_lines(cell._tc, limits, " ")))  # a nested table: into this cell
        rows.append(cells[: limits.max_table_cols])
    return rows
