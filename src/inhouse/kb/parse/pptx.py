"""PowerPoint (.pptx) via python-pptx: one slide = one page; slide title as heading, then text, tables, notes.

Shapes are read top-to-bottom, left-to-right (the reading order of a slide), group shapes recursively. Bullet
paragraphs keep their indentation level as list items. Speaker notes follow the slide's content under "Notes".
The footer, date and slide-number placeholders repeat on every slide and are not content: the footer's text is
kept as a marking (where a deck says "Confidential", ``kb/markings.py``), the date and number are dropped.
"""

from __future__ import annotations

import io
from typing import Any

from inhouse.errors import DocumentRejected
from inhouse.kb.document import ParsedDocument
from inhouse.kb.parse.blocks import BlockList, clean_inline, format_table, guess_language, office_metadata, pick_title
from inhouse.kb.parse.markings import running_markings
from inhouse.kb.parse.safety import ParseLimits, open_zip_checked


def parse(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    open_zip_checked(data, filename, limits)
    from pptx import Presentation  # lazy: only slides need it

    prs = Presentation(io.BytesIO(data))
    out = BlockList()
    footers: dict[str, None] = {}
    slides = list(prs.slides)
    if len(slides) > limits.max_pages:
        raise DocumentRejected(filename, f"{len(slides)} slides, above the limit of {limits.max_pages}")
    for number, slide in enumerate(slides, 1):
        out.page = number
        out.reset_sections()
        title_shape = slide.shapes.title
        title = clean_inline(title_shape.text_frame.text) if title_shape is not None else ""
        out.heading(title or f"Slide {number}", 1)
        shapes = [s for s in slide.shapes if (title_shape is None or s.shape_id != title_shape.shape_id)
                  and not _running(s, footers)]
        for shape in _reading_order(shapes):
            _shape(shape, out, limits)
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                out.add("paragraph", "Notes: " + clean_inline(notes.text))

    props = prs.core_properties
    metadata = office_metadata(props)
    return ParsedDocument(
        title=pick_title([props.title], out.blocks, filename),
        blocks=tuple(out.blocks),
        language=guess_language("\n".join(b.text for b in out.blocks)),
        filename=filename,
        mime="application/vnd.openxmlformats-officedocument.presentationml.presentation",
        metadata=metadata,
        page_count=len(slides),
        markings=running_markings(("footer", text) for text in footers),
    )


def _running(shape: Any, footers: dict[str, None]) -> bool:
    """Whether ``shape`` is a footer, date or slide-number placeholder (its footer text noted in ``footers``)."""
    if not getattr(shape, "is_placeholder", False):
        return False
    kind = int(shape.placeholder_format.type or 0)
    if kind == _FOOTER and getattr(shape, "has_text_frame", False):
        text = clean_inline(shape.text_frame.text)
        if text:
            footers[text] = None
    return kind in (_FOOTER, _DATE, _SLIDE_NUMBER)


_SLIDE_NUMBER, _FOOTER, _DATE = 13, 15, 16  # PP_PLACEHOLDER values


def _reading_order(shapes: list[Any]) -> list[Any]:
    return sorted(shapes, key=lambda s: ((s.top or 0) // 100_000, s.left or 0))  # 100k EMU ≈ 2.8 mm rows


def _shape(shape: Any, out: BlockList, limits: ParseLimits) -> None:
    if getattr(shape, "shape_type", None) is not None and shape.shape_type == 6:  # MSO_SHAPE_TYPE.GROUP
        for child in _reading_order(list(shape.shapes)):
            _shape(child, out, limits)
        return
    if getattr(shape, "has_table", False):
        rows = [[cell.text for cell in row.cells][: limits.max_table_cols] for row in shape.table.rows]
        out.add("table", format_table(rows[: limits.max_table_rows]))
        return
    if not getattr(shape, "has_text_frame", False):
        return
    paragraphs = [(p.level, clean_inline(p.text)) for p in shape.text_frame.paragraphs]
    paragraphs = [(level, text) for level, text in paragraphs if text]
    if len(paragraphs) > 1:
        out.add("list", "\n".join(f"{'  ' * level}- {text}" for level, text in paragraphs))
    elif paragraphs:
        out.add("paragraph", paragraphs[0][1])
