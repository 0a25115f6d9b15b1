"""How deep a browser would nest a page's elements, told by a linear scan before Lexbor builds the tree.

Lexbor checks the open elements at each tag, so building a page nested N deep costs N² (200,000 nested ``<div>``s
held a parser worker for the full 300 s timeout), and a stray formatting tag opened again in every paragraph makes
its memory grow with the square of the paragraphs. ``kb/parse/html.py`` refuses a page past
``ParseLimits.max_html_depth`` or ``MAX_REOPENED`` before Lexbor sees it.
"""

from __future__ import annotations

import bisect
import collections
import re
from typing import Any


def _tags(names: str) -> frozenset[str]:
    return frozenset(names.split())


# The tree builder's nesting, told by a linear scan before Lexbor runs: Lexbor checks the open elements at each tag,
# so building a page nested N deep costs N² (200,000 nested <div>s held a parser worker for the full 300 s timeout).
# The scan follows the HTML standard's rules closely enough to count what a browser nests (an unclosed <p>, <li> or
# <td> is closed by the next one; </span> does not close a <div> it is inside; a stray <font> is opened again in each
# paragraph), and needs no more: a miscount of a few levels does not matter against a limit hundreds deep. It counts
# the stack of open elements, which is what the tree builder walks (an element moved out of a table or by a
# misnested </b> can leave the page's tree a little shallower).
_VOID = _tags("area base basefont bgsound br col embed frame hr image img input keygen link meta param source track "
              "wbr")
_RAW_TEXT = _tags("script style textarea title xmp iframe noembed noframes")  # their content is text
_RAW_TEXT_END = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.I) for name in _RAW_TEXT}
_FORMATTING = _tags("a b big code em font i nobr s small strike strong tt u")
_IGNORED = frozenset(("html", "head", "body", "frameset"))  # never nested: a second one merges into the first
_SPECIAL = _tags(
    "address applet area article aside base basefont bgsound blockquote body br button caption center col colgroup dd "
    "details dialog dir div dl dt embed fieldset figcaption figure footer form frame frameset h1 h2 h3 h4 h5 h6 head "
    "header hgroup hr html iframe img input keygen li link listing main marquee menu meta nav noembed noframes "
    "noscript object ol p param plaintext pre script search section select source style summary table tbody td "
    "template textarea tfoot th thead title tr track ul wbr xmp")
_CLOSES_P = _tags(
    "address article aside blockquote center details dialog dir div dl fieldset figcaption figure footer form header "
    "hgroup hr listing main menu nav ol p plaintext pre search section summary table ul xmp h1 h2 h3 h4 h5 h6 li dd "
    "dt")
_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_SCOPE = _tags("applet caption html table td th marquee object template")
# The elements that end a search down the open elements ("in scope"), by the kind of search.
_BOUNDARIES = {
    "default": _SCOPE,
    "button": _SCOPE | {"button"},
    "list": _SCOPE | {"ol", "ul"},
    "table": frozenset(("html", "table", "template")),
    "li": _SPECIAL - {"address", "div", "p"},  # what stops an <li>, <dt> or <dd> from closing an open one
    "special": _SPECIAL,
    "foreign": frozenset(("svg", "math")),
    "html": frozenset(("foreignobject", "desc", "annotation-xml")),  # HTML again inside SVG or MathML
}
_KINDS = {name: tuple(kind for kind, names in _BOUNDARIES.items() if name in names)
          for name in frozenset().union(*_BOUNDARIES.values())}
_END_SCOPE = {"p": "button", "li": "list", "table": "table", "caption": "table", "tbody": "table", "thead": "table",
              "tfoot": "table", "tr": "table", "td": "table", "th": "table"}
_TABLE_PARTS = {"td": ("td", "th"), "th": ("td", "th"), "tr": ("tr",), "tbody": ("tbody", "thead", "tfoot"),
                "thead": ("tbody", "thead", "tfoot"), "tfoot": ("tbody", "thead", "tfoot")}
# Start tags that leave SVG or MathML for HTML (the standard's list, less <font> with attributes).
_BREAKOUT = _tags("b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i img li "
                  "listing menu meta nobr ol p pre ruby s small span strong strike sub sup table tt u ul var")
# Elements a browser opens again that the page never wrote: a stray <b> in each paragraph makes a few each. Lexbor
# makes them as a browser does: 2,000 paragraphs of "<p><font color=#N>x" (48 KB) made 2 million and took 733 MB.
MAX_REOPENED = 1_000_000
_MARKERS = frozenset(("td", "th", "caption", "applet", "marquee", "object", "template"))
_REOPENING = frozenset(("img", "image", "br", "input", "embed", "area", "wbr", "keygen", "applet", "marquee", "object",
                        "select"))  # special elements the standard reopens formatting for
_START_RULES = _IGNORED | _CLOSES_P | _TABLE_PARTS.keys() | {"option", "optgroup", "a", "nobr", "button"}
# What a cell or row can follow, or sit in, with nothing to close but that element.
_CELL_PARENT = {"td": ("tr", "td", "th"), "th": ("tr", "td", "th"), "tr": ("tbody", "thead", "tfoot", "tr")}
_CLOSE_P_ONLY = _CLOSES_P - {"li", "dd", "dt", "table", *_HEADING_TAGS}
# Tags with more to them than a push or a pop (the fast path of ``html_nesting``).
_RULED = _START_RULES | _FORMATTING | _MARKERS | _VOID | _RAW_TEXT | _KINDS.keys() | {"plaintext"}
# A tag's start, and its name (to the tag's end, ``>``, found apart: a pattern running to it backtracked, and 4 KB of
# "<a<a<a..." took 22 s), or a comment's, a doctype's or a processing instruction's.
_MARKUP = re.compile(r"<(/?)([A-Za-z][^\t\n\f\r />]*)|<!--|<[!?/]")


class _Level:
    """The active formatting elements since the last marker: by name and attributes, and those off the stack."""

    def __init__(self) -> None:
        self.alike: dict[tuple[str, str], collections.deque[list[Any]]] = {}
        self.off: list[list[Any]] = []


def _remove_sorted(positions: list[int], position: int) -> None:
    del positions[bisect.bisect_left(positions, position)]


class _OpenElements:
    """The stack of open elements, by name only, with an index of where each name and each scope boundary is."""

    def __init__(self) -> None:
        self.names: list[str | None] = []  # None: an element the adoption agency took out of the stack
        self.at: dict[str, list[int]] = {}
        self.bounds: dict[str, list[int]] = {kind: [] for kind in _BOUNDARIES}
        self.depth = 0
        # The active formatting elements, each [name, attributes, where on the stack], the place -1 once another
        # tag closed it (the next text or inline tag opens it again), -2 once it is no longer active. A cell (a
        # "marker") starts a level of its own, dropped with the cell. Kept indexed, so no tag costs more than a few
        # steps however many are open: a per-tag scan made the count itself slow on hostile pages.
        self.levels: list[_Level] = [_Level()]
        self.by_name: dict[str, list[list[Any]]] = {}  # by name, oldest first; dead entries are dropped lazily
        self.linked: dict[int, list[Any]] = {}  # stack position -> its entry
        self.closed = False  # an entry of this level is off the stack
        self.reopened = 0
        self.copies: dict[int, int] = {}  # the adoption agency's copies, counted with the block they are under

    def push(self, name: str) -> None:
        if name in _MARKERS:
            self.levels.append(_Level())
            self.closed = False
        self.at.setdefault(name, []).append(len(self.names))
        for kind in _KINDS.get(name, ()):
            self.bounds[kind].append(len(self.names))
        self.names.append(name)
        self.depth += 1

    def pop_to(self, index: int) -> None:
        """Close the element at ``index`` and every element opened inside it."""
        while len(self.names) > index:
            name = self.names.pop()
            self.depth -= self.copies.pop(len(self.names), 0)
            if name is None:
                continue
            self.at[name].pop()
            for kind in _KINDS.get(name, ()):
                self.bounds[kind].pop()
            self.depth -= 1
            entry = self.linked.pop(len(self.names), None)
            if entry is not None and entry[2] >= 0:
                entry[2] = -1
                self.levels[-1].off.append(entry)
                self.closed = True
            elif name in _MARKERS:
                for alike in self.levels.pop().alike.values():
                    for dropped in alike:
                        dropped[2] = -2
                self.closed = bool(self.levels[-1].off)

    def _adopt(self, index: int) -> None:
        """The adoption agency, for ``</b>`` with a block opened inside the ``<b>``: the ``<b>`` and the elements
        between it and that block (but formatting ones) leave the stack, and a copy of the ``<b>`` is put under the
        block (counted with it here)."""
        specials = self.bounds["special"]
        block = specials[bisect.bisect_right(specials, index)]
        for i in range(index, block):
            name = self.names[i]
            if name is None or (i != index and i in self.linked):
                continue
            self.names[i] = None
            _remove_sorted(self.at[name], i)
            for kind in _KINDS.get(name, ()):
                _remove_sorted(self.bounds[kind], i)
            self.depth -= 1
        self.copies[block] = self.copies.get(block, 0) + 1
        self.depth += 1

    def open_formatting(self, name: str, attributes: str) -> None:
        """Push a formatting element; a level keeps three alike at most (the standard's "Noah's Ark" clause)."""
        alike = self.levels[-1].alike.setdefault((name, attributes), collections.deque())
        if len(alike) >= 3:
            alike.popleft()[2] = -2
        entry: list[Any] = [name, attributes, len(self.names)]
        alike.append(entry)
        self.by_name.setdefault(name, []).append(entry)
        self.linked[entry[2]] = entry
        self.push(name)

    def forget(self, name: str) -> bool:
        """An end tag's element is no longer active; whether one of this level was."""
        entries = self.by_name.get(name)
        while entries and entries[-1][2] == -2:
            entries.pop()
        if not entries:
            return False
        entry = entries[-1]
        alike = self.levels[-1].alike.get((name, entry[1]))
        if not alike or alike[-1] is not entry:  # the last one of this name is of an outer level
            return False
        alike.pop()
        entries.pop()
        if entry[2] >= 0:
            self.linked.pop(entry[2], None)
        entry[2] = -2
        return True

    def reopen(self) -> None:
        """Open again the active formatting elements a tag closed (the standard's reconstruction), outermost first:
        ``pop_to`` closed them innermost first."""
        off = self.levels[-1].off
        for entry in reversed(off):
            if entry[2] == -1:
                entry[2] = len(self.names)
                self.linked[entry[2]] = entry
                self.push(entry[0])
                self.reopened += 1
        off.clear()
        self.closed = False

    def last(self, *names: str) -> int:
        index = -1
        for name in names:
            where = self.at.get(name)
            if where and where[-1] > index:
                index = where[-1]
        return index

    def bound(self, kind: str) -> int:
        return self.bounds[kind][-1] if self.bounds[kind] else -1

    def in_scope(self, kind: str, *names: str) -> int:
        """The innermost open element of ``names`` no boundary of ``kind`` is inside of, or -1."""
        index = self.last(*names)
        return index if index >= 0 and index >= self.bound(kind) else -1

    def close(self, kind: str, *names: str) -> None:
        index = self.in_scope(kind, *names)
        if index >= 0:
            self.pop_to(index)

    def start(self, name: str, attributes: str) -> None:
        if self.closed and (name not in _SPECIAL or name in _REOPENING):
            self.reopen()
        if not self.bounds["foreign"] and (  # most tags: a <span>, an <img>, a <div> with no <p> open
                name not in _START_RULES or (name in _CLOSE_P_ONLY and not self.at.get("p"))):
            if name in _FORMATTING:
                self.open_formatting(name, attributes)
            elif name not in _VOID:
                self.push(name)
            return
        self_closing = attributes.endswith("/")
        top = self.names[-1] if self.names else None
        if top in _CELL_PARENT.get(name, ()):  # the next cell or row of a table: the common case, made cheap
            if top == name or top in ("td", "th"):
                self.pop_to(len(self.names) - 1)
            self.push(name)
            return
        foreign = self.bound("foreign") > self.bound("html")
        while foreign and name in _BREAKOUT:
            self.pop_to(self.bound("foreign"))
            foreign = self.bound("foreign") > self.bound("html")
        if foreign:
            if not self_closing:
                self.push(name)
            return
        if name in _IGNORED:
            return
        if name in _CLOSES_P:
            self.close("button", "p")
        if name in ("li", "dd", "dt"):
            self.close("li", *(("li",) if name == "li" else ("dd", "dt")))
        elif name in _HEADING_TAGS and self.names and self.names[-1] in _HEADING_TAGS:
            self.pop_to(len(self.names) - 1)
        elif name in _TABLE_PARTS or name == "table":
            if not self._table_start(name):
                return
        elif name in ("option", "optgroup") and self.names and self.names[-1] == "option":
            self.pop_to(len(self.names) - 1)
        elif name in ("a", "nobr", "button") and self.last(name) >= 0:
            self.end(name)
        if name in _FORMATTING:
            self.open_formatting(name, attributes)
        elif name not in _VOID:
            self.push(name)

    def _table_start(self, name: str) -> bool:
        """Close what a table's cell, row, section or another table ends, push the row and section it implies;
        whether ``name`` itself is pushed. Elements written between the parts of a table are moved out of it in the
        page, but stay open until the next part: "clearing the stack back to a table context"."""
        table = self.in_scope("table", "table")
        if table < 0:
            return name == "table"  # a cell or row outside a table is ignored
        cell = self.last("td", "th", "caption")
        if cell > table:
            if name == "table":  # a table in a cell
                return True
            self.pop_to(cell)
        elif name == "table":  # a table straight in a table ends it
            self.pop_to(table)
            return True
        row, section = self.last("tr"), self.last("tbody", "thead", "tfoot")
        in_row = name in ("td", "th")
        if in_row and row > table:
            self.pop_to(row + 1)
            return True
        part = "tr" if in_row else name  # a cell straight in a table or section: in a row the page adds
        if part == "tr" and row > table:
            self.pop_to(row)
        if part == "tr" and section > table:
            self.pop_to(section + 1)
        elif part != "tr" and section > table:  # a section ends the one open
            self.pop_to(section)
        else:
            self.pop_to(table + 1)
            if part == "tr":
                self.push("tbody")
        if in_row:
            self.push("tr")
        return True

    def end(self, name: str) -> None:
        active = name in _FORMATTING and self.forget(name)  # closed by its own end tag: never reopened
        if self.names and self.names[-1] == name:  # most end tags close the element last opened
            self.pop_to(len(self.names) - 1)
        elif self.bound("foreign") > self.bound("html"):
            self.close("html", name)
        elif name in _FORMATTING and active:
            index = self.last(name)
            if index < 0:
                return
            if self.bound("special") > index:
                self._adopt(index)
            else:
                self.pop_to(index)
        elif name in _HEADING_TAGS:
            self.close("default", *_HEADING_TAGS)
        elif name in _SPECIAL:
            self.close(_END_SCOPE.get(name, "default"), name)
        else:  # </span> closes the innermost <span>, but not through a <div> or a <td>
            self.close("special", name)


def html_nesting(html: str, limit: int) -> tuple[int, int]:
    """How deep a browser nests ``html``'s elements (in ``<body>``; counted until it passes ``limit``), and how many
    elements it opens again that the page closed (``<p><font color=red>`` without ``</font>``, in each paragraph)."""
    stack = _OpenElements()
    names, at, foreign = stack.names, stack.at, stack.bounds["foreign"]
    pos = deepest = 0
    for match in _MARKUP.finditer(html):
        if match.start() < pos:  # in a comment or a script
            continue
        if stack.depth > deepest:
            deepest = stack.depth
            if deepest > limit:
                break
        if stack.closed and html[pos:match.start()].strip():  # text reopens the formatting a tag closed
            stack.reopen()
        end, name = match.groups()
        if name is None:  # a comment, a doctype, a processing instruction
            closing = "-->" if match.group(0) == "<!--" else ">"
            stop = html.find(closing, match.end())
            if stop < 0:  # left open: it takes the rest of the page
                break
            pos = stop + len(closing)
            continue
        stop = html.find(">", match.end())
        if stop < 0:
            break
        pos = stop + 1
        name = name.lower()
        plain = name not in _RULED and not stack.closed and not foreign
        if end:
            if plain and names and names[-1] == name and not stack.copies:  # most end tags: the last element opened
                names.pop()
                at[name].pop()
                stack.depth -= 1
            else:
                stack.end(name)
            continue
        if plain:  # most start tags: a <span>, a <code>, an <a>... with nothing to close
            at.setdefault(name, []).append(len(names))
            names.append(name)
            stack.depth += 1
            continue
        attributes = html[match.end():stop]
        stack.start(name, attributes)
        if name in _RAW_TEXT and not attributes.endswith("/"):
            raw_end = _RAW_TEXT_END[name].search(html, pos)
            pos = len(html) if raw_end is None else raw_end.start()
        elif name == "plaintext":  # the rest of the page is text
            break
        if stack.reopened > MAX_REOPENED:
            break
    return max(deepest, stack.depth), stack.reopened


def html_depth(html: str, limit: int) -> int:
    return html_nesting(html, limit)[0]
