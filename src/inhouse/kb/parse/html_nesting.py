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
# <td> is closed by the next one; </span> or </noscript> does not close a <div> it is in; a stray <font> is opened
# again in each paragraph), and needs no more: a miscount of a few levels does not matter against a limit hundreds
# deep, but a tag counted as closing what the browser keeps open lets a page nest past the limit unseen. It counts
# the stack of open elements, which is what the tree builder walks (an element moved out of a table or by a
# misnested </b> can leave the page's tree a little shallower).
_VOID = _tags("area base basefont bgsound br col embed frame hr image img input keygen link meta param source track "
              "wbr")
_RAW_TEXT = _tags("script style textarea title xmp iframe noembed noframes")  # their content is text
_RAW_TEXT_END = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.I) for name in _RAW_TEXT}
_FORMATTING = _tags("a b big code em font i nobr s small strike strong tt u")
_IGNORED = frozenset(("html", "head", "body", "frameset"))  # never nested: a second one merges into the first
# Where SVG (the first three) or MathML holds HTML again: pushed as "desc^" and so on, apart from an HTML <desc>.
_HTML_POINTS = {"svg": _tags("foreignobject desc title"), "math": _tags("mi mo mn ms mtext annotation-xml")}
_POINTS = frozenset(name + "^" for names in _HTML_POINTS.values() for name in names)
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
# Lexbor (as the standard since 2025) ends no element through an open <select>: "<div><select></div>" keeps both.
_SCOPE = _tags("applet caption html table td th marquee object template select") | _POINTS
# The elements that end a search down the open elements ("in scope"), by the kind of search.
_BOUNDARIES = {
    "default": _SCOPE,
    "button": _SCOPE | {"button"},
    "list": _SCOPE | {"ol", "ul"},
    "table": frozenset(("html", "table", "template")),
    "li": _SPECIAL - {"address", "div", "p"} | _POINTS,  # what stops an <li>, <dt> or <dd> from closing an open one
    "special": _SPECIAL,
    "foreign": frozenset(("svg", "math")),
    "html": _POINTS,  # HTML again inside SVG or MathML
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
                        "select", "button", "xmp", "noscript"))  # special elements the standard reopens formatting for
_START_RULES = _IGNORED | _CLOSES_P | _TABLE_PARTS.keys() | _tags(
    "option optgroup a nobr button rb rp rt rtc select input keygen textarea caption colgroup col")
# What "generate implied end tags" closes: elements whose end tag may be left out.
_IMPLIED = _tags("dd dt li optgroup option p rb rp rt rtc")
# The end tags of special elements the standard closes back to an open element of that name; any other end tag
# ("</noscript>", "</span>") closes only an element no special element is open inside of.
_LISTED_END = _tags(
    "address applet article aside blockquote button center details dialog dir div dl fieldset figcaption figure "
    "footer header hgroup listing main marquee menu nav object ol pre search section select summary ul dd dt li p "
    "form template caption table tbody thead tfoot tr td th h1 h2 h3 h4 h5 h6")
_IMPLIED_BUT_OPTGROUP = _IMPLIED - {"optgroup"}
_IMPLIED_BUT_RTC = _IMPLIED - {"rtc"}
_RUBY_PARTS = _tags("rb rp rt rtc")  # not special, but the standard opens no formatting again for them
_IN_TABLE = _tags("table tbody thead tfoot tr")  # the current node in the standard's "in table" modes
# What a cell or row can follow, or sit in, with nothing to close but that element.
_CELL_PARENT = {"td": ("tr", "td", "th"), "th": ("tr", "td", "th"), "tr": ("tbody", "thead", "tfoot", "tr")}
_CLOSE_P_ONLY = _CLOSES_P - {"li", "dd", "dt", "table", "form", *_HEADING_TAGS}
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
        self.form: int | None = None  # the standard's form element pointer: where its element is on the stack
        self.peak = 0  # the depth of an element opened and closed by one tag (an empty <p> made by "</p>")

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
        block (counted with it here). The copy is the ``<b>`` of the next round: with no block opened in it, it is
        closed, and what is open in it ("<a><div>x<a>" leaves the second <a> in the <div>, not under a copy)."""
        block = self._adopt_round(index, index)
        for _ in range(7):  # the standard's eight rounds at most
            if self.bound("special") <= block:
                self._drop_copy(block)
                self.pop_to(block + 1)
                return
            block = self._adopt_round(block + 1, block)

    def _drop_copy(self, block: int) -> None:
        self.copies[block] -= 1
        if not self.copies[block]:
            del self.copies[block]
        self.depth -= 1

    def _adopt_round(self, start: int, index: int) -> int:
        """One round: the formatting element at ``index`` (or the copy under the block there, and ``start`` after
        it) is put under the next block; that block's place."""
        specials = self.bounds["special"]
        block = specials[bisect.bisect_right(specials, index)]
        if start > index:
            self._drop_copy(index)
        for i in range(start, block):
            name = self.names[i]
            if name is None or (i in self.linked and i != index):  # the formatting elements between stay
                continue
            self.names[i] = None
            _remove_sorted(self.at[name], i)
            for kind in _KINDS.get(name, ()):
                _remove_sorted(self.bounds[kind], i)
            self.depth -= 1
        self.copies[block] = self.copies.get(block, 0) + 1
        self.depth += 1
        return block

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

    def forget(self, name: str) -> int | None:
        """An end tag's element is no longer active; where the one of this level was on the stack (-1: closed by
        another tag), or None."""
        entries = self.by_name.get(name)
        while entries and entries[-1][2] == -2:
            entries.pop()
        if not entries:
            return None
        entry = entries[-1]
        alike = self.levels[-1].alike.get((name, entry[1]))
        if not alike or alike[-1] is not entry:  # the last one of this name is of an outer level
            return None
        alike.pop()
        entries.pop()
        where: int = entry[2]
        if where >= 0:
            self.linked.pop(where, None)
        entry[2] = -2
        return where

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
        if not self.bounds["foreign"] and (  # most tags: a <span>, an <img>, a <div> with no <p> open
                name not in _START_RULES or (name in _CLOSE_P_ONLY and not self.at.get("p"))):
            if self.closed and (name not in _SPECIAL or name in _REOPENING):
                self.reopen()
            if name in _FORMATTING:
                self.open_formatting(name, attributes)
            elif name not in _VOID:
                self.push(name)
            return
        self_closing = attributes.endswith("/")
        top = self.names[-1] if self.names else None
        if top in _CELL_PARENT.get(name, ()) and not self.bounds["foreign"]:  # the next cell or row: made cheap
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
                roots = self.bounds["foreign"]  # an <svg> in MathML is MathML's: the first root tells
                root = self.names[roots[bisect.bisect_right(roots, self.bound("html"))]]
                self.push(name + "^" if name in _HTML_POINTS.get(root or "", ()) else name)
            return
        if name in _IGNORED:
            return
        template = bool(self.at.get("template"))
        if name == "form" and self.form is not None and not template:
            return  # a form in a form is ignored: the rows of an old admin page, each a <form> never closed
        listed = name in ("li", "dd", "dt")
        if listed:  # before the <p>: "<li><p><noscript><li>" keeps the first <li> open
            self.close("li", *(("li",) if name == "li" else ("dd", "dt")))
        if name in _CLOSES_P:
            self.close("button", "p")
        if name in _HEADING_TAGS and self.names and self.names[-1] in _HEADING_TAGS:
            self.pop_to(len(self.names) - 1)
        elif name in _TABLE_PARTS or name in ("table", "caption", "colgroup", "col"):
            if not self._table_start(name):
                return
        elif name in ("option", "optgroup"):
            if self.in_scope("default", "select") >= 0:  # an <option> or <optgroup> ends the one before
                self._close_implied(_IMPLIED_BUT_OPTGROUP if name == "option" else _IMPLIED)
            elif self.names and self.names[-1] == "option":
                self.pop_to(len(self.names) - 1)
        elif name in ("rb", "rtc", "rp", "rt"):
            if self.in_scope("default", "ruby") >= 0:
                self._close_implied(_IMPLIED if name in ("rb", "rtc") else _IMPLIED_BUT_RTC)
        elif name in ("select", "input", "keygen", "textarea"):
            select = self.in_scope("default", "select")
            if select >= 0:  # they end an open <select> (a <select> in one is ignored)
                self.pop_to(select)
                if name == "select":
                    return
        elif name == "form" and self.names and self.names[-1] in _IN_TABLE:
            if not template:  # straight in a table: opened and closed at once, but it is the form from now on
                self.form = -1
                self.peak = max(self.peak, self.depth + 1)
            return
        elif name == "nobr":  # the <nobr>s a tag closed are opened again, and then the last of them ended
            if self.closed:
                self.reopen()
            if self.in_scope("default", "nobr") >= 0:
                self.end(name)
        elif name in ("a", "button") and self.last(name) >= 0:
            self.end(name)
        if self.closed and (name not in _SPECIAL or name in _REOPENING) and name not in _RUBY_PARTS:
            self.reopen()  # once what the tag ends is closed
        if name in _FORMATTING:
            self.open_formatting(name, attributes)
        elif name not in _VOID:
            self.push(name)
            if name == "form" and not template:
                self.form = len(self.names) - 1

    def _close_implied(self, names: frozenset[str]) -> None:
        """The standard's "generate implied end tags": close the elements of ``names`` at the top of the stack."""
        while self.names and self.names[-1] in names:
            self.pop_to(len(self.names) - 1)

    def _table_start(self, name: str) -> bool:
        """Close what a table's cell, row, section or another table ends, push the row and section it implies;
        whether ``name`` itself is pushed. Elements written between the parts of a table are moved out of it in the
        page, but stay open until the next part: "clearing the stack back to a table context"."""
        table = self.in_scope("table", "table")
        if table < 0:
            return name == "table"  # a cell or row outside a table is ignored
        if name in ("caption", "colgroup", "col"):  # they end the cell, row and section open
            self.pop_to(table + 1)
            if name == "col":
                self.push("colgroup")
            return True
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
        while name in ("br", "p") and self.bound("foreign") > self.bound("html"):  # they leave SVG and MathML
            self.pop_to(self.bound("foreign"))
        roots = self.bounds["foreign"]
        if roots and roots[-1] > self.bound("html"):  # in SVG or MathML: its element's end tag (since the <svg>
            index = self.last(name)  # or <math> opened in HTML), any other is read as in HTML
            if index >= roots[bisect.bisect_right(roots, self.bound("html"))]:
                self.pop_to(index)
                return
        if name == "form" and not self.at.get("template"):
            self._end_form()
            return
        where = self.forget(name) if name in _FORMATTING else None  # closed by its own end tag: never reopened
        if where is not None:  # the adoption agency: for the last <b> made active, wherever it is
            if where < 0 or where < self.bound("default"):  # closed already, or out of scope (a <select> is open
                return  # in it): no more
            if self.bound("special") > where:
                self._adopt(where)
            else:
                self.pop_to(where)
        elif self.names and self.names[-1] == name:  # most end tags close the element last opened
            self.pop_to(len(self.names) - 1)
        elif name in _HEADING_TAGS:
            self.close("default", *_HEADING_TAGS)
        elif name == "p" and self.in_scope("button", "p") < 0:  # a stray </p> makes an empty paragraph
            self.peak = max(self.peak, self.depth + 1)
        elif name == "br":  # read as <br>
            self.start("br", "")
        elif name == "template":
            index = self.last("template")
            if index >= 0:
                self.pop_to(index)
        elif name in _LISTED_END:
            self.close(_END_SCOPE.get(name, "default"), name)
        else:  # </span> or </noscript> closes the innermost of its name, but not through a <div> or a <td>
            self.close("special", name, name + "^")

    def _end_form(self) -> None:
        """``</form>`` (no ``<template>`` open) takes the form element out of the stack, and no more: what was opened
        in it stays open, in it."""
        index, self.form = self.form, None
        names = self.names
        if index is None or not 0 <= index < len(names) or names[index] != "form" or index < self.bound("default"):
            return
        while len(names) - 1 > index and names[-1] in _IMPLIED:
            self.pop_to(len(names) - 1)
        if len(names) - 1 == index:
            self.pop_to(index)
            return
        names[index] = None
        _remove_sorted(self.at["form"], index)
        for kind in _KINDS["form"]:
            _remove_sorted(self.bounds[kind], index)
        self.copies[index] = self.copies.get(index, 0) + 1  # still counted, until what is open in it is closed


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
        in_html = stack.bound("foreign") <= stack.bound("html")  # none of the raw-text tags leaves SVG or MathML
        stack.start(name, attributes)
        if name in _RAW_TEXT and in_html:  # an HTML element's text, even "<title/>"'s
            raw_end = _RAW_TEXT_END[name].search(html, pos)
            pos = len(html) if raw_end is None else raw_end.start()
        elif name == "plaintext" and in_html:  # the rest of the page is text
            break
        if stack.reopened > MAX_REOPENED:
            break
    return max(deepest, stack.depth, stack.peak), stack.reopened


def html_depth(html: str, limit: int) -> int:
    return html_nesting(html, limit)[0]
