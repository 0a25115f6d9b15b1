"""Markdown via markdown-it-py (CommonMark + tables): headings, paragraphs, lists, code fences, tables, quotes.

Block text is the Markdown source of the block (inline markup kept: it reads fine and embeds fine), except tables,
which are re-rendered in the shared ``a | b`` row format, and code, which keeps its fence and language tag. Text is
cleaned as every parser cleans it (``blocks.clean_text``: NFC, control and zero-width characters and soft hyphens
dropped, full-width letters and digits half-width), list and quote lines keeping their indentation; code only loses
control characters (``blocks.clean_code``).
A leading YAML front matter block supplies ``title``/``author``/``date``/``subject`` when present, and a declared
``classification``/``sensitivity``/``label`` (also ``密级``) becomes a marking (``kb/markings.py``).
"""

from __future__ import annotations

import re
from typing import Any

from inhouse.kb.document import Marking, ParsedDocument
from inhouse.kb.parse.blocks import (
    BlockList,
    clean_code,
    clean_inline,
    clean_text,
    format_table,
    guess_language,
    meaningful,
    pick_title,
)
from inhouse.kb.parse.safety import ParseLimits
from inhouse.kb.parse.text import decode_text

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
_FM_LINE = re.compile(r"^([^\W\d][\w-]*)\s*:\s*(.+?)\s*$", re.M)
CLASSIFICATION_KEYS = frozenset(("classification", "sensitivity", "label", "security-classification",
                                 "confidentiality", "密级"))
_HTML_TAG = re.compile(r"<[^>]+>")
_HTML_CODE = re.compile(r"<(script|style)\b[^>]*>.*?(?:</\1\s*>|\Z)", re.I | re.S)
_QUOTE_MARK = re.compile(r"^[ \t]{0,3}> ?", re.M)


def parse(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    text, encoding = decode_text(data, filename)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    metadata: dict[str, str] = {"encoding": encoding}
    fm_title = None
    markings: list[Marking] = []
    match = _FRONT_MATTER.match(text)
    if match:
        for key, value in _FM_LINE.findall(match.group(1)):
            key = key.lower()
            value = meaningful(value.strip("'\""))
            if value and key == "title":
                fm_title = value
            elif value and key in ("author", "date", "subject", "description"):
                metadata["subject" if key == "description" else key] = value
            elif value and key in CLASSIFICATION_KEYS:
                markings.append(Marking("property", f"{key}: {value}"))
        text = text[match.end() :]
    out = BlockList()
    _walk(text, out, limits)
    return ParsedDocument(
        title=pick_title([fm_title], out.blocks, filename),
        blocks=tuple(out.blocks),
        language=guess_language(text),
        filename=filename,
        mime="text/markdown",
        metadata=metadata,
        markings=tuple(markings),
    )


def _walk(text: str, out: BlockList, limits: ParseLimits) -> None:
    from markdown_it import MarkdownIt  # lazy: only Markdown files need it

    lines = text.split("\n")
    tokens = MarkdownIt("commonmark").enable("table").parse(text)

    def source(tok: Any) -> str:
        start, end = tok.map if tok.map else (0, 0)
        return "\n".join(lines[start:end])

    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.level != 0 or tok.type.endswith("_close"):
            i += 1
            continue
        close = _matching_close(tokens, i)
        if tok.type == "heading_open":
            out.heading(tokens[i + 1].content, int(tok.tag[1:]))
        elif tok.type == "paragraph_open":
            out.add("paragraph", clean_text(tokens[i + 1].content))
        elif tok.type in ("bullet_list_open", "ordered_list_open"):
            out.add("list", _clean_lines(source(tok), _code_lines(tokens[i + 1:close], tok.map)))
        elif tok.type == "blockquote_open":
            out.add("quote", _clean_lines(_QUOTE_MARK.sub("", source(tok)), _code_lines(tokens[i + 1:close], tok.map)))
        elif tok.type == "table_open":
            out.add("table", format_table(_table_rows(tokens[i:close], limits)))  # cells cleaned there
        elif tok.type == "fence":
            out.add("code", f"```{clean_inline(tok.info)}\n{clean_code(tok.content.rstrip())}\n```")
        elif tok.type == "code_block":
            out.add("code", clean_code(tok.content.rstrip()))
        elif tok.type == "html_block":
            # A <script> or <style> block's body is code for a browser, not text to index (nor to quote).
            out.add("paragraph", clean_inline(_HTML_TAG.sub(" ", _HTML_CODE.sub(" ", tok.content))))
        i = close + 1


def _code_lines(inner: list[Any], block: list[int] | None) -> frozenset[int]:
    """The lines (counted from the block's first) of the code fences and indented code inside a list or quote."""
    if not block:
        return frozenset()
    return frozenset(n - block[0] for t in inner if t.type in ("fence", "code_block") and t.map
                     for n in range(t.map[0], t.map[1]))


def _clean_lines(text: str, code: frozenset[int] = frozenset()) -> str:
    """Markdown source lines, each cleaned (``clean_inline``) after its indentation, which nests list items; the
    lines of code inside (``code``) keep their spaces and characters (``clean_code``), as code outside does."""
    lines = []
    for n, line in enumerate(text.split("\n")):
        if n in code:
            lines.append(clean_code(line))
            continue
        body = line.lstrip(" \t")
        lines.append(line[:len(line) - len(body)] + cleaned if (cleaned := clean_inline(body)) else "")
    return "\n".join(lines)


def _matching_close(tokens: list[Any], i: int) -> int:
    """Index of the token closing ``tokens[i]`` (itself for self-contained tokens such as fences)."""
    if tokens[i].nesting != 1:
        return i
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j
    return len(tokens) - 1


def _table_rows(tokens: list[Any], limits: ParseLimits) -> list[list[str]]:
    rows: list[list[str]] = []
    for tok in tokens:
        if tok.type == "tr_open":
            if len(rows) > limits.max_table_rows:
                break
            rows.append([])
        elif tok.type == "inline" and rows and len(rows[-1]) < limits.max_table_cols:
            rows[-1].append(tok.content)
    return rows
