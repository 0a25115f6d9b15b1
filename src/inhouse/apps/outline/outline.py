"""Document → hierarchical outline.

The structure comes from the parsed document, not the model: headings (with their levels) become the tree,
numbered ``1``, ``1.1``, … and tagged with the page they start on (PDF page, slide, sheet). A document without
headings is cut into parts by page, or by size. The model is asked only for the key points of each section
(JSON-schema constrained, at most ``max_points`` per section, at most ``max_sections`` sections get points, each
section's text trimmed to a budget), and a key point must share its terms with the section's text to be kept —
the same lexical check the minutes use for evidence.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from inhouse.apps.context import AppContext, complete_json
from inhouse.apps.minutes.verify import supports
from inhouse.errors import ContextLengthExceeded, EngineFailure, InvalidRequest
from inhouse.kb.document import Block, ParsedDocument

if TYPE_CHECKING:
    from inhouse.config import Settings
    from inhouse.kb.parse.isolated import IsolatedParser
    from inhouse.kb.parse.ocr import PageReader

log = logging.getLogger(__name__)

POINTS_SYSTEM = ("You list the key points of one section of a document. Each key point is one short sentence "
                 "that restates a fact, rule, number or conclusion stated in the section, in the section's "
                 "language. Do not add anything the section does not say.")


class OutlineInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: bytes = Field(description="The document's bytes (PDF, DOCX, PPTX, XLSX, HTML, Markdown, text, a scan …).")
    filename: str = Field("document.txt", description="Its name; the extension picks the parser for text formats.")
    key_points: bool = Field(True, description="Ask the model for key points (False: headings only, no model).")


@dataclass(frozen=True)
class OutlineOptions:
    max_sections: int = 40  # sections that get key points (the rest keep their heading only)
    max_points: int = 5
    section_chars: int = 4000  # section text sent to the model
    concurrency: int = 2
    part_chars: int = 3000  # size of a part when the document has no headings
    max_file_bytes: int = 50 * 1024 * 1024


class Section(BaseModel):
    ref: str  # "2.1"
    title: str
    level: int
    page: int | None = None
    key_points: list[str] = Field(default_factory=list)
    children: list[Section] = Field(default_factory=list)
    rejected_points: int = 0  # points the model proposed that the section's text does not support


class Outline(BaseModel):
    title: str
    filename: str
    page_count: int | None = None
    sections: list[Section]
    source: dict[str, Any] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass
class _Node:
    title: str
    level: int
    page: int | None
    text: list[str]
    section: Section | None = None


def _nodes(doc: ParsedDocument, part_chars: int) -> list[_Node]:
    nodes: list[_Node] = []
    preface = _Node("", 1, None, [])
    for b in doc.blocks:
        if b.kind == "heading" and b.text.strip():
            nodes.append(_Node(" ".join(b.text.split())[:300], max(1, min(b.level or 1, 6)), b.page, []))
        elif nodes:
            nodes[-1].text.append(b.text)
        else:
            preface.text.append(b.text)
    if nodes:
        if "".join(preface.text).strip():
            nodes.insert(0, _Node("Introduction", min(n.level for n in nodes), _first_page(doc.blocks), preface.text))
        return nodes
    return _parts(doc.blocks, part_chars)


def _first_page(blocks: tuple[Block, ...]) -> int | None:
    return next((b.page for b in blocks if b.page is not None), None)


def _parts(blocks: tuple[Block, ...], part_chars: int) -> list[_Node]:
    """No headings: one part per page when pages exist, else parts of about ``part_chars`` characters."""
    parts: list[_Node] = []
    size = 0  # characters in the last part so far: re-summing them for every block was quadratic
    for b in blocks:
        if not b.text.strip():
            continue
        new_page = b.page is not None and (not parts or parts[-1].page != b.page)
        too_big = parts and b.page is None and size + len(b.text) > part_chars
        if not parts or new_page or too_big:
            title = f"Page {b.page}" if b.page is not None else f"Part {len(parts) + 1}"
            parts.append(_Node(title, 1, b.page, []))
            size = 0
        parts[-1].text.append(b.text)
        size += len(b.text)
    return parts


def _tree(nodes: list[_Node]) -> list[Section]:
    """Headings → nested sections, numbered by position (a level skip nests one step, never leaves a gap)."""
    roots: list[Section] = []
    stack: list[tuple[int, Section]] = []
    for node in nodes:
        while stack and stack[-1][0] >= node.level:
            stack.pop()
        siblings = stack[-1][1].children if stack else roots
        parent_ref = stack[-1][1].ref + "." if stack else ""
        section = Section(ref=f"{parent_ref}{len(siblings) + 1}", title=node.title, level=len(stack) + 1,
                          page=node.page)
        siblings.append(section)
        stack.append((node.level, section))
        node.section = section
    return roots


async def _points(ctx: AppContext, node: _Node, options: OutlineOptions) -> None:
    assert node.section is not None
    text = "\n".join(node.text).strip()
    if not text:
        return
    body = text[: options.section_chars]
    schema = {"type": "object", "additionalProperties": False, "required": ["key_points"],
              "properties": {"key_points": {"type": "array", "maxItems": options.max_points,
                                            "items": {"type": "string"}}}}
    messages = [{"role": "system", "content": POINTS_SYSTEM},
                {"role": "user", "content": f"Section: {node.title}\n\n{body}"}]
    try:
        out = await complete_json(ctx, messages, schema, name="key_points", max_tokens=400)
    except ContextLengthExceeded:
        body = body[: len(body) // 3]
        messages[1]["content"] = f"Section: {node.title}\n\n{body}"
        out = await complete_json(ctx, messages, schema, name="key_points", max_tokens=400)
    seen: set[str] = set()
    for point in out.get("key_points") or []:
        p = " ".join(str(point).split())
        if not p or p.casefold() in seen:
            continue
        if supports(p, body):
            node.section.key_points.append(p[:500])
            seen.add(p.casefold())
        else:
            node.section.rejected_points += 1


def parse_document(inp: OutlineInput, options: OutlineOptions, ocr: PageReader | None = None,
                   parser: IsolatedParser | None = None) -> ParsedDocument:
    """The document as ingestion parses it: in its worker processes when ``parser`` is given, else here (``ocr``
    reads a scanned one)."""
    from inhouse.kb.parse import ParseLimits, parse_file

    if not inp.data.strip():
        raise InvalidRequest("The document is empty.", param="file")
    limits = ParseLimits(max_file_bytes=options.max_file_bytes)
    if parser is not None:
        return parser(inp.data, inp.filename, limits=limits)
    return parse_file(inp.data, inp.filename, limits=limits, ocr=ocr)


def _structure(inp: OutlineInput, options: OutlineOptions, ocr: PageReader | None,
               parser: IsolatedParser | None) -> tuple[ParsedDocument, list[_Node], list[Section]]:
    """The parsed document, its sections' text and their tree: all of it in one worker thread, since a document of
    100,000 headings or paragraphs makes as many nodes and pydantic sections (seconds, not for the event loop)."""
    doc = parse_document(inp, options, ocr, parser)
    nodes = _nodes(doc, options.part_chars)
    if not nodes:
        raise InvalidRequest(f"{doc.filename}: the document has no text to outline.", param="file")
    return doc, nodes, _tree(nodes)


async def run(ctx: AppContext, inp: OutlineInput, options: OutlineOptions | None = None,
              ocr: PageReader | None = None, parser: IsolatedParser | None = None) -> Outline:
    options = options or OutlineOptions()
    doc, nodes, sections = await asyncio.to_thread(_structure, inp, options, ocr, parser)
    failed = 0
    if inp.key_points:
        gate = asyncio.Semaphore(max(1, options.concurrency))

        async def one(node: _Node) -> int:
            async with gate:
                try:
                    await _points(ctx, node, options)
                    return 0
                except EngineFailure as exc:  # one section's bad output must not sink the outline
                    log.warning("key points for %r failed: %s", node.title, exc)
                    return 1

        failed = sum(await asyncio.gather(*(one(n) for n in nodes[: options.max_sections])))
    title = doc.title or (sections[0].title if sections else doc.filename)
    return Outline(title=title, filename=doc.filename, page_count=doc.page_count, sections=sections,
                   source={"format": doc.mime, "sections": len(nodes), "model": ctx.model if inp.key_points else None,
                           "sections_with_points": min(len(nodes), options.max_sections) if inp.key_points else 0,
                           "failed_sections": failed, "language": doc.language})


@dataclass(frozen=True)
class OutlineAssistant:
    """``run`` with the configured options, built once by the composition root (``bootstrap.py``)."""

    options: OutlineOptions = field(default_factory=OutlineOptions)
    ocr: PageReader | None = None  # reads scanned documents (the knowledge base's reader)
    parser: IsolatedParser | None = None  # the knowledge base's parse workers

    async def run(self, ctx: AppContext, inp: OutlineInput) -> Outline:
        return await run(ctx, inp, self.options, self.ocr, self.parser)


def build_outline_assistant(settings: Settings, ocr: PageReader | None = None,
                            parser: IsolatedParser | None = None) -> OutlineAssistant:
    """From ``Settings``: documents up to ``apps.max_upload_mb``; ``ocr`` reads scanned ones, unless ``parser``'s
    worker processes parse them."""
    return OutlineAssistant(OutlineOptions(max_file_bytes=int(settings.apps.max_upload_mb * 1024 * 1024)), ocr,
                            parser)


def to_markdown(outline: Outline) -> str:
    out = [f"# {_md(outline.title)}", ""]

    def walk(sections: list[Section]) -> None:
        for s in sections:
            page = f" (p. {s.page})" if s.page is not None else ""
            out.append(f"{'#' * min(6, s.level + 1)} {s.ref} {_md(s.title)}{page}")
            out.append("")
            out.extend(f"- {_md(p)}" for p in s.key_points)
            if s.key_points:
                out.append("")
            walk(s.children)

    walk(outline.sections)
    return "\n".join(out).rstrip() + "\n"


def _md(text: str) -> str:
    return " ".join(text.replace("<", "&lt;").split())
