"""HTML main content via selectolax (Lexbor): navigation, headers, footers, asides, scripts and styles removed.

A small readability-style pass: drop the elements that are never content (by tag and ARIA role) and those a
reader does not see (the ``hidden`` attribute, an inline ``display:none`` or ``visibility:hidden``), then take
``<main>`` (or ``[role=main]``, or the single ``<article>``) as the root when the page has one. A page with none has
its menus, sidebars, breadcrumbs and cookie banners told by class or id (a whole token such as ``menu`` or
``cookie-banner``; ``menu-card`` or ``social-insurance`` is content) and removed, and its single ``<article>`` or else
its ``<body>`` is the root. Inside the root class and id names decide nothing: a ``<section id="social-insurance">``
of ``<main>`` is content. Headings, paragraphs, lists, tables, ``<pre>`` and ``<blockquote>`` become blocks in
document order; loose inline text becomes paragraphs.

Text keeps the breaks a browser shows: a table cell's, list item's or heading's ``<br>``, ``<p>`` and ``<div>``
become a space, a quote's a line break (selectolax's ``text()`` glued "Shanghai<br>Building A" into
"ShanghaiBuilding A"). A layout table (``role=presentation``, or one holding a heading or another table: old intranet
pages lay out their columns so) is walked as content, its cells read like ``<div>``s; only a data table becomes a
``table`` block.

Reference pages keep their entries apart: each ``<dt>`` of a definition list (a function's signature in Sphinx or
javadoc output, a configuration parameter, a glossary term) becomes a ``term`` block and its ``<dd>`` is walked
under it, so the entry's blocks carry the term in their section path and the chunker cuts at entries. Permalink
anchors (``a.headerlink``, a trailing ¶) are dropped from headings and terms.

Before Lexbor sees a page, a linear scan (``html_nesting``) counts how deep a browser would nest its elements and how
many it would open again that the page closed; a page past ``ParseLimits.max_html_depth`` (or a million reopened
elements) is refused: Lexbor's time grows with the square of the depth, its memory with the reopened elements.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from typing import Any

from inhouse.errors import DocumentRejected
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
from inhouse.kb.parse.html_nesting import MAX_REOPENED, html_nesting
from inhouse.kb.parse.safety import ParseLimits
from inhouse.kb.parse.text import codec_declared_in_ascii, decode_text

# <meta name=...> elements that declare how sensitive a page is (markings, ``kb/markings.py``).
_CLASSIFICATION_META = ("classification", "sensitivity", "security-classification", "confidentiality")
_NEVER_CONTENT = (
    "script, style, noscript, template, nav, aside, footer, form, iframe, svg, canvas, button, select, "
    "[role=navigation], [role=banner], [role=contentinfo], [role=complementary], [role=search], "
    # hidden="until-found" is collapsed content the browser's find-in-page opens: a reader can see it
    "[aria-hidden=true], [hidden]:not([hidden=until-found i])"
)
# An inline style that hides the element (a mail's preheader, a page's internal note): not what a reader sees.
_HIDDEN_STYLE = re.compile(r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*hidden)\s*(?:!important\s*)?(?:;|$)",
                           re.I)
# Class and id names of page furniture, matched against whole tokens: a regex over the attribute matched "share" in
# "employee-share-plan" and "social" in "social-insurance" and dropped those sections of <main>.
_BOILERPLATE = frozenset((
    "nav", "navbar", "nav-bar", "navigation", "site-nav", "main-nav", "top-nav", "menu", "main-menu", "sidebar",
    "breadcrumb", "breadcrumbs", "footer", "site-footer", "page-footer", "cookie", "cookies", "cookie-banner",
    "cookie-consent", "cookie-notice", "consent", "banner", "advert", "ads", "social", "social-links", "share",
    "share-buttons", "related", "related-links", "related-posts", "skip-link",
))
_KEEP = {"html", "body", "main", "article"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_CONTAINERS = {
    "body", "main", "article", "section", "div", "header", "figure", "figcaption", "details", "summary", "center",
    "address", "fieldset", "dd", "dt", "li", "td", "th", "hgroup", "font",
}
# Elements a browser shows on a line of their own: their text is kept apart from the text around them. Inside a table
# cell every break is a space, so a table in a list item or quote reads a row a line.
_CELLS = frozenset(("td", "th"))
_CELL_END = object()
_BREAKS = frozenset(_BLOCK_CONTAINERS - _CELLS | _HEADINGS.keys() | {
    "p", "br", "ul", "ol", "dl", "table", "caption", "tr", "blockquote", "hr",
})
# One of them in a node's markup (text has its "<" escaped; a comment may hold one: then the slow path, still right).
_BREAK_TAG = re.compile(rf"<(?:{'|'.join(sorted(_BREAKS | _CELLS | {'pre'}))})[\s/>]", re.I)
_LAYOUT = "table, h1, h2, h3, h4, h5, h6"  # a table holding one of these lays out a page: it is not data
_PERMALINK = "a.headerlink, a.anchorjs-link, a.hash-link, a.header-anchor"
_PILCROW = re.compile(r"\s*[¶§#]\s*$")
_MAX_TERM_CHARS = 300  # a longer <dt> is not a label: its text is kept as a paragraph
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-]+)""", re.I)


def decode_html(data: bytes, filename: str) -> tuple[str, str]:
    """A declared ``<meta charset>`` wins (with replacement: the web is messy); else the plain-text policy.

    A ``<meta>`` that says UTF-16 or UTF-32 was readable as ASCII, so the file is not in it (Word's "Unicode" web
    page re-saved): as in the HTML standard, it is read as UTF-8 (here: by the plain-text policy, UTF-8 first).
    """
    if not data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        match = _META_CHARSET.search(data[:4096])
        if match:
            codec = codec_declared_in_ascii(match.group(1).decode("ascii"))
            if codec:
                with contextlib.suppress(LookupError):  # a codec that is not a text encoding ("base64")
                    return data.decode(codec, errors="replace"), codec
    return decode_text(data, filename)


def parse(data: bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
    text, encoding = decode_html(data, filename)
    return parse_str(text, filename, limits, metadata={"encoding": encoding})


def parse_str(html: str, filename: str, limits: ParseLimits, *, metadata: dict[str, str]) -> ParsedDocument:
    from selectolax.lexbor import LexborHTMLParser  # lazy: only HTML needs it

    depth, reopened = html_nesting(html, limits.max_html_depth)
    if depth > limits.max_html_depth:
        raise DocumentRejected(filename, f"HTML elements nested more than {limits.max_html_depth} deep (browsers show "
                                         "no deeper; no page a person wrote nests so deep)")
    if reopened > MAX_REOPENED:
        raise DocumentRejected(filename, f"HTML whose unclosed formatting tags (<font>, <b>...) a browser would open "
                                         f"again more than {MAX_REOPENED:,} times (possible HTML bomb)")
    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    page_title = title_node.text() if title_node else None
    for name, key in (("author", "author"), ("description", "subject"), ("date", "date")):
        node = tree.css_first(f'meta[name="{name}"]')
        value = meaningful(node.attributes.get("content")) if node else None
        if value:
            metadata[key] = value
    markings = [Marking("property", f"{name}: {value}") for name in _CLASSIFICATION_META
                for node in tree.css(f'meta[name="{name}" i]')[:5]
                if (value := meaningful(node.attributes.get("content")))]
    # A page's header and footer are not content, but they are where an intranet page says "Internal use only".
    for source, selector in (("header", "header, [role=banner]"), ("footer", "footer, [role=contentinfo]")):
        for node in tree.css(selector)[:5]:
            text = clean_inline(node.text(separator=" "))
            if text and len(text) <= 300:
                markings.append(Marking(source, text))  # type: ignore[arg-type]
    html_node = tree.css_first("html")
    if html_node is not None and html_node.attributes.get("lang"):
        metadata["lang"] = str(html_node.attributes["lang"])

    for node in tree.css(f"{_NEVER_CONTENT}, {_PERMALINK}"):
        node.decompose()
    for node in tree.css("[style]"):
        if _HIDDEN_STYLE.search(node.attributes.get("style") or ""):
            node.decompose()
    for node in tree.css("header"):
        if not _inside(node, ("article", "main")):
            node.decompose()

    root = tree.css_first("main") or tree.css_first("[role=main]") or _single(tree.css("article"))
    if root is None:  # no marked content: page furniture is told by its class or id
        for node in tree.css("[class], [id]"):
            if node.tag not in _KEEP and _boilerplate(node):
                node.decompose()
        root = _single(tree.css("article")) or tree.body or tree.root
    out = BlockList()
    if root is not None:
        _Walker(out, limits).walk(root)
    return ParsedDocument(
        title=pick_title([page_title], out.blocks, filename),
        blocks=tuple(out.blocks),
        language=guess_language("\n".join(b.text for b in out.blocks)),
        filename=filename,
        mime="text/html",
        metadata=metadata,
        markings=tuple(markings),
    )


def _inside(node: Any, tags: tuple[str, ...]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag in tags:
            return True
        parent = parent.parent
    return False


def _single(nodes: list[Any]) -> Any:
    return nodes[0] if len(nodes) == 1 else None


def _boilerplate(node: Any) -> bool:
    names = f"{node.attributes.get('class') or ''} {node.attributes.get('id') or ''}"
    return any(name in _BOILERPLATE for name in names.lower().split())


def _lines(node: Any) -> list[str]:
    """``node``'s text a line per line a browser shows: a break at ``<br>`` and around every block (``<p>``, ``<div>``,
    ``<li>``, a row), inline elements joined as written, the source's own line breaks white space (but in ``<pre>``).
    Iterative, like the walker."""
    if not _BREAK_TAG.search(node.html or "", 1):  # no break inside, past its own tag (most cells and items)
        text = clean_inline(node.text(deep=True, separator=""))
        return [text] if text else []
    parts: list[str] = []
    stack: list[Any] = [node]  # nodes, and what to do once a node's children are done
    cells = 0  # the table cells open: inside one, a break is a space (a row a line)
    while stack:
        item = stack.pop()
        if item is _CELL_END:
            cells -= 1
            parts.append(" ")
            continue
        if isinstance(item, str):
            parts.append(item)
            continue
        tag = item.tag
        if tag == "-text":
            parts.append(item.text(deep=False).replace("\n", " "))
            continue
        if tag == "pre":
            text = item.text(deep=True)
            parts += ("\n", text.replace("\n", " ") if cells else text, "\n")
            continue
        if tag in _CELLS:
            cells += 1
            parts.append(" ")
            stack.append(_CELL_END)
        elif tag in _BREAKS:
            separator = " " if cells else "\n"
            parts.append(separator)
            stack.append(separator)
        stack.extend(reversed(list(item.iter(include_text=True))))
    return [line for raw in "".join(parts).split("\n") if (line := clean_inline(raw))]


def _text(node: Any) -> str:
    """One line: the lines of ``node`` joined with a space."""
    return " ".join(_lines(node))


def _is_layout(table: Any) -> bool:
    """A table that lays out a page rather than holding data (Readability's test, and headings): walked as content."""
    return (str(table.attributes.get("role") or "").lower() in ("presentation", "none")
            or any(part.css_first(_LAYOUT) is not None for part in table.iter()))  # a node's css() matches itself


def _label(node: Any) -> str:
    """A heading's or term's text without a trailing permalink mark."""
    return _PILCROW.sub("", _text(node))


class _Walker:
    """Depth-first walk emitting blocks; inline runs are buffered and flushed as one paragraph.

    Iterative (an explicit stack), so pages nested thousands of ``<div>`` deep cannot exhaust Python's stack.
    """

    def __init__(self, out: BlockList, limits: ParseLimits) -> None:
        self.out = out
        self.limits = limits
        self.inline: list[str] = []
        self.stack: list[tuple[str, Any]] = []
        self.terms: list[int] = []  # depths of the open definition-list terms

    def walk(self, root: Any) -> None:
        self._children(root)
        while self.stack:
            op, node = self.stack.pop()
            if op == "flush":
                self._flush()
            elif op == "term":
                self._flush()
                depth = self.out.enter_term(node)
                self.terms.append(-1 if depth is None else depth)
            elif op == "leave":
                self._flush()
                depth = self.terms.pop()
                if depth >= 0:
                    self.out.leave_term(depth)
            elif op == "text":
                self._flush()
                self.out.add("paragraph", node)
            else:
                self._node(node)
        self._flush()

    def _flush(self) -> None:
        text = clean_text("".join(self.inline))
        self.inline = []
        if text:
            self.out.add("paragraph", "\n".join(clean_inline(line) for line in text.split("\n")))

    def _children(self, node: Any, *, flush_after: bool = False) -> None:
        """Schedule ``node``'s children (then a paragraph break when ``flush_after``) before anything pending."""
        if flush_after:
            self.stack.append(("flush", None))
        self.stack.extend(("node", child) for child in reversed(list(node.iter(include_text=True))))

    def _node(self, node: Any) -> None:
        tag = node.tag
        if tag == "-text":
            self.inline.append(node.text(deep=False))
            return
        if tag == "br":
            self.inline.append("\n")
            return
        if tag in _HEADINGS:
            self._flush()
            self.out.heading(_label(node), _HEADINGS[tag])
        elif tag == "dl":
            self._flush()
            self._definitions(node)
        elif tag == "p" or tag in _BLOCK_CONTAINERS:
            self._flush()
            self._children(node, flush_after=True)
        elif tag in ("ul", "ol"):
            self._flush()
            self.out.add("list", self._list(node, ordered=tag == "ol"))
        elif tag == "table" and _is_layout(node):
            self._flush()
            self._children(node, flush_after=True)
        elif tag == "table":
            self._flush()
            self.out.add("table", self._table(node))
        elif tag == "pre":
            self._flush()
            self.out.add("code", clean_code(node.text(deep=True)).strip("\n"))  # as Markdown's code: spaces kept
        elif tag == "blockquote":
            self._flush()
            self.out.add("quote", "\n".join(_lines(node)))
        elif tag == "hr":
            self._flush()
        elif tag not in ("img", "input", "link", "meta", "head", "title", "-comment"):
            self._children(node)  # inline element: its text joins the current paragraph

    def _definitions(self, node: Any) -> None:
        """Schedule a definition list: per entry, its term (consecutive ``<dt>`` joined with " / "), the walk of
        its ``<dd>`` under it, then the term's end. A ``<dd>`` with no term is plain content; a term too long to be
        a label, or one with no definition, is a paragraph."""
        ops: list[tuple[str, Any]] = []
        terms: list[str] = []
        for child in node.iter():
            if child.tag == "dt":
                terms.append(_label(child))
            elif child.tag == "dd":
                label = " / ".join(t for t in terms if t)
                terms = []
                entry = bool(label) and len(label) <= _MAX_TERM_CHARS
                if entry:
                    ops.append(("term", label))
                elif label:
                    ops.append(("text", label))
                ops += [("node", c) for c in child.iter(include_text=True)]
                ops.append(("leave", None) if entry else ("flush", None))
        if any(terms):
            ops.append(("text", " / ".join(t for t in terms if t)))
        self.stack.extend(reversed(ops))

    def _list(self, node: Any, *, ordered: bool) -> str:
        items = [child for child in node.iter() if child.tag == "li"]
        lines = []
        for n, item in enumerate(items, 1):
            text = _text(item)
            if text:
                lines.append(f"{n}. {text}" if ordered else f"- {text}")
        return "\n".join(lines)

    def _table(self, node: Any) -> str:
        """A data table's rows (it holds no other table: ``_is_layout``), a cell's lines joined with a space."""
        rows: list[list[str]] = []
        for tr in node.css("tr"):
            if len(rows) >= self.limits.max_table_rows:
                break
            cells = [_text(c) for c in tr.iter() if c.tag in ("td", "th")]
            rows.append(cells[: self.limits.max_table_cols])
        return format_table(rows)

