"""Reference pages: definition-list entries become sections of their own; titles are not repeated in prefixes."""

from __future__ import annotations

from inhouse.kb.chunk import chunk_document
from inhouse.kb.parse import ParseLimits, parse_file
from inhouse.kb.parse.blocks import MAX_TERM_DEPTH

PAGE = """<html><head><title>os — Operating system interfaces — Python 3.11 documentation</title></head><body>
<div role="main"><h1>os — Operating system interfaces<a class="headerlink" href="#os">¶</a></h1>
<p>This module provides a portable way of using operating system dependent functionality.</p>
<h2>Files and Directories<a class="headerlink" href="#files">¶</a></h2>
<p>Functions that work on paths.</p>
<dl class="py function"><dt class="sig" id="os.chmod">os.chmod(path, mode)<a class="headerlink" href="#c">¶</a></dt>
<dd><p>Change the mode of path to the numeric mode.</p><p>Availability: Unix, Windows.</p></dd></dl>
<dl class="py function"><dt id="os.chown">os.chown(path, uid, gid)</dt><dt id="os.lchown">os.lchown(path, uid, gid)</dt>
<dd><p>Change the owner and group id of path.</p>
<dl class="py data"><dt>os.UID_NOBODY</dt><dd><p>Nested entry inside a definition.</p></dd></dl></dd></dl>
<dl class="simple"><dt>orphan term</dt></dl>
<p>Text after the list belongs to the section again.</p>
</div></body></html>"""


def _doc():  # type: ignore[no-untyped-def]
    return parse_file(PAGE.encode(), "os.html", limits=ParseLimits.from_mb(5))


def test_terms_open_sections_and_permalinks_are_dropped() -> None:
    doc = _doc()
    by_text = {b.text: b for b in doc.blocks}
    assert by_text["os — Operating system interfaces"].kind == "heading"  # no "¶"
    assert by_text["os.chmod(path, mode)"].kind == "term"
    assert by_text["Change the mode of path to the numeric mode."].section == (
        "os — Operating system interfaces", "Files and Directories", "os.chmod(path, mode)")
    assert by_text["os.chown(path, uid, gid) / os.lchown(path, uid, gid)"].kind == "term"
    assert by_text["Nested entry inside a definition."].section[-2:] == (
        "os.chown(path, uid, gid) / os.lchown(path, uid, gid)", "os.UID_NOBODY")
    assert by_text["orphan term"].kind == "paragraph"
    assert by_text["Text after the list belongs to the section again."].section == (
        "os — Operating system interfaces", "Files and Directories")


def test_each_entry_is_its_own_chunk_under_a_short_prefix() -> None:
    chunks = chunk_document(_doc())
    chmod = next(c for c in chunks if "numeric mode" in c.text)
    assert chmod.text.startswith("os — Operating system interfaces > Files and Directories > os.chmod(path, mode)\n")
    assert "owner and group" not in chmod.text  # the next entry starts its own chunk
    assert "Python 3.11 documentation" not in chmod.text  # the title repeats the first heading: not prefixed
    intro = next(c for c in chunks if "Functions that work on paths." in c.text)
    assert "numeric mode" not in intro.text  # section text before the entries is not glued to the first entry


def test_small_entries_may_share_a_chunk_when_asked() -> None:
    together = chunk_document(_doc(), small_entry_tokens=64)
    assert any("numeric mode" in c.text and "owner and group" in c.text for c in together)


def test_a_long_signature_is_shortened_in_the_path_but_kept_whole() -> None:
    sig = "f(" + ", ".join(f"argument_{i}=None" for i in range(12)) + ")"
    html = f"<html><body><h1>Mod</h1><dl><dt>{sig}</dt><dd><p>Does things.</p></dd></dl></body></html>"
    chunks = chunk_document(parse_file(html.encode(), "m.html", limits=ParseLimits.from_mb(5)))
    (c,) = [c for c in chunks if "Does things." in c.text]
    first_line = c.text.split("\n", 1)[0]
    assert first_line.endswith("…") and len(first_line) < len(sig) and sig in c.text


def test_deeply_nested_definition_lists_stop_opening_sections_at_the_cap() -> None:
    depth = 200
    html = ("<html><body>" + "".join(f"<dl><dt>term{i}</dt><dd><p>text {i}</p>" for i in range(depth))
            + "</dd></dl>" * depth + "<p>after</p></body></html>")
    doc = parse_file(html.encode(), "deep.html", limits=ParseLimits.from_mb(5))
    assert max(len(b.section) for b in doc.blocks) == MAX_TERM_DEPTH
    by_text = {b.text: b for b in doc.blocks}
    assert by_text["text 15"].section[-1] == "term15"  # the last term that opens its own section
    assert by_text["text 150"].section == by_text["text 15"].section  # deeper ones join it
    assert by_text["term150"].kind == "term" and by_text["after"].section == ()
