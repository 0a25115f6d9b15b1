"""HTML nested deeper than ``ParseLimits.max_html_depth`` is refused before Lexbor builds its tree (Lexbor's time
grows with the square of the depth: 200,000 nested <div>s held a parser worker for the whole 300 s timeout), while
messy pages (unclosed <p>, <li>, <td>, never given their end tags) are not taken for deep ones."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inhouse.errors import DocumentRejected
from inhouse.kb.parse import parse_file
from inhouse.kb.parse.html_nesting import html_depth, html_nesting


@pytest.fixture
def no_lexbor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tree builder, made to fail the test if the page reaches it."""
    import selectolax.lexbor

    def refuse(html: str) -> None:
        raise AssertionError("the page reached Lexbor")

    monkeypatch.setattr(selectolax.lexbor, "LexborHTMLParser", refuse)


def test_the_reviewers_page_of_200000_nested_divs_is_refused_before_lexbor(no_lexbor: None) -> None:
    n = 200_000
    page = ("<html><body>" + "<div>" * n + "x" + "</div>" * n + "</body></html>").encode()
    with pytest.raises(DocumentRejected, match="nested more than 512 deep") as err:
        parse_file(page, "deep.html")
    assert err.value.filename == "deep.html"


@pytest.mark.parametrize("unit", [
    "<div/>",  # a slash does not close an HTML element
    "<table><td>",  # a table in a cell: table, tbody, tr, td
    "<span><div></span>",  # </span> does not close the <div> it is in
    "<b>",  # nor are formatting elements closed by the next one
    "<li><ul>",  # a list in an unclosed item
    "<svg><g>",
])
def test_nesting_built_by_other_means_is_refused(unit: str, no_lexbor: None) -> None:
    page = ("<!doctype html><p>Intro" + unit * 2000).encode()
    with pytest.raises(DocumentRejected, match="nested more than 512 deep"):
        parse_file(page, "deep.html")


def test_a_deep_mail_body_does_not_reach_lexbor(no_lexbor: None) -> None:
    mail = EmailMessage()
    mail["Subject"] = "Generated"
    mail.set_content("<html><body>" + "<div>" * 5000 + "x</body></html>", subtype="html")
    with pytest.raises(DocumentRejected, match="no readable text body"):  # eml.py words it so
        parse_file(mail.as_bytes(), "generated.eml")


@pytest.mark.parametrize(("page", "depth"), [
    ("<p>Paragraph <b>bold</b> text" * 10_000, 2),  # each <p> ends the one before
    ("<ul>" + "<li>item <a href=x>link</a>" * 3000 + "</ul>", 3),
    ("<table>" + ("<tr>" + "<td><font face=Arial>cell" * 8) * 1000 + "</table>", 5),  # table, tbody, tr, td, font
    ("<table><tr><td>a</td></tr></table>" * 3000, 4),
    ("<dl>" + "<dt>term<dd>definition" * 3000 + "</dl>", 2),
    ("<select>" + "<option>choice" * 3000 + "</select>", 2),
    ("<h2>Heading<h3>Unclosed" * 3000, 1),
    ("<table>" + "<tr><td>x<div>unclosed" * 3000 + "</table>", 5),  # a row ends the cell and what it holds
    ("<!-- " + "<div>" * 3000 + " -->text", 0),
    ("<script>document.write('" + "<div>" * 3000 + "')</script>text", 1),
    ("<textarea>" + "<div>" * 3000 + "</textarea>", 1),
    ("<svg>" + '<circle r="1"/>' * 3000 + "</svg>", 1),
])
def test_messy_pages_are_counted_as_a_browser_nests_them(page: str, depth: int) -> None:
    assert html_depth(page, 512) == depth


def test_a_page_of_10000_unclosed_paragraphs_still_parses() -> None:
    page = "<html><body>" + "".join(f"<p>Paragraph {i} of the minutes" for i in range(10_000)) + "</body></html>"
    parsed = parse_file(page.encode(), "minutes.html")
    assert "Paragraph 9999 of the minutes" in parsed.text


def test_word_html_nesting_a_few_dozen_deep_parses() -> None:
    page = "<html><body>" + "<div class=WordSection1><table><tr><td><p class=MsoNormal><span>" * 12 + "Budget"
    assert "Budget" in parse_file(page.encode(), "export.htm").text
    # div, table, tbody, tr, td a level (the next <div> ends the <p> and its <span>), and p, span at the last
    assert html_depth(page, 512) == 11 * 5 + 7


def test_unclosed_formatting_tags_a_browser_opens_again_in_each_paragraph_are_counted(no_lexbor: None) -> None:
    # Each <p> closes the <font>s before it and a browser opens them all again inside it: 2,000 such paragraphs
    # (48 KB) made Lexbor build 2 million elements in 733 MB, 5,000 more than 3 GB.
    page = "".join(f"<p><font color=#{i:06x}>Line {i}" for i in range(20_000)).encode()
    with pytest.raises(DocumentRejected, match="nested more than 512 deep"):
        parse_file(page, "colours.html")
    # Three alike at most are kept open (the standard's "Noah's Ark"): 150 colours stay under the depth limit, but
    # every paragraph opens 450 elements again.
    page = "".join(f"<p><font color=#{i % 150:06x}>Line {i}" for i in range(5_000)).encode()
    with pytest.raises(DocumentRejected, match="open again more than 1,000,000 times"):
        parse_file(page, "colours.html")


def test_a_stray_unclosed_tag_in_every_paragraph_still_parses() -> None:
    page = "".join(f"<p><font face=Arial><b>Item {i}</b> of the list" for i in range(10_000))
    assert "Item 9999 of the list" in parse_file(page.encode(), "list.html").text


_TREE = st.recursive(st.just("text"), lambda children: st.tuples(
    st.sampled_from(["div", "span", "section", "b", "em", "blockquote", "ul", "li", "p", "table"]),
    st.lists(children, max_size=4)), max_leaves=60)


def _markup(tree: object) -> str:
    if isinstance(tree, str):
        return tree
    name, children = tree  # type: ignore[misc]
    inner = "".join(_markup(child) for child in children)
    if name == "table":  # a well-formed table: its cells hold the children
        return f"<table><tbody><tr><td>{inner}</td></tr></tbody></table>"
    return f"<{name}>{inner}</{name}>"


def _lexbor_depth(page: str) -> int:
    from selectolax.lexbor import LexborHTMLParser

    body = LexborHTMLParser(page).body
    deepest, stack = 0, [(body, 0)] if body is not None else []
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node.iter())
    return deepest


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_TREE)
def test_pages_of_closed_elements_are_counted_as_deep_as_lexbor_builds_them(tree: object) -> None:
    page = "<!doctype html><body>" + _markup(tree)
    assert html_depth(page, 10_000) == _lexbor_depth(page)


@settings(max_examples=300, deadline=None)
@given(page=st.text(alphabet="<>/!-= abdipstrlfonuhe1'\"", max_size=300))
def test_any_text_is_counted_without_error(page: str) -> None:
    depth, reopened = html_nesting(page, 512)
    assert depth >= 0 and reopened >= 0
