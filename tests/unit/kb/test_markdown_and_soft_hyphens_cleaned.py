"""Parsed text is cleaned alike in every format: Markdown paragraphs, lists, quotes and tables too (they kept zero-width
characters, control characters and decomposed accents, so ``欧阳\\u200b娜娜`` in a .md was not found by ``欧阳娜娜`` and
an NFD ``Köhler`` broke PostgreSQL's terms), and soft hyphens go in every format (``Reise&shy;kosten&shy;abrechnung``
was indexed as three pieces no query of ``Reisekostenabrechnung`` found). Code keeps its spaces and characters."""

from __future__ import annotations

import unicodedata

from inhouse.kb.parse import parse_file
from inhouse.kb.parse.blocks import clean_inline, clean_text

NFD_KOEHLER = unicodedata.normalize("NFD", "Jürgen Köhler")


def _blocks(data: str, name: str) -> list[tuple[str, str]]:
    return [(b.kind, b.text) for b in parse_file(data.encode(), name).blocks]


def test_markdown_text_is_cleaned_as_every_format_cleans_it() -> None:
    page = (f"# Owners\n\nSKU-48217 owner 欧阳\u200b娜娜, deputy {NFD_KOEHLER}\x07.\n\n"
            "- first\u200b item\n  - nested\u00a0\u00a0item\ufeff\n- Reise\u00adkosten\n\n"
            f"> quoted 欧阳\u200b娜娜\n> second line\n\n"
            f"| part | owner |\n|---|---|\n| SKU-1 | 欧阳\u200b娜娜 |\n")
    assert _blocks(page, "owners.md") == [
        ("heading", "Owners"),
        ("paragraph", "SKU-48217 owner 欧阳娜娜, deputy Jürgen Köhler."),
        ("list", "- first item\n  - nested item\n- Reisekosten"),  # nesting kept
        ("quote", "quoted 欧阳娜娜\nsecond line"),
        ("table", "part | owner\nSKU-1 | 欧阳娜娜"),
    ]


def test_markdown_code_keeps_its_spaces_and_characters() -> None:
    page = ("```python\n" "def f():\n" "    s = \"ＳＫＵ－１  x\"\u200b  # Ko\u0308hler\n" "```\n\n"
            "    indented  code\x1b block\n")
    assert _blocks(page, "code.md") == [
        ("code", "```python\ndef f():\n    s = \"ＳＫＵ－１  x\"  # Köhler\n```"),
        ("code", "indented  code block"),
    ]


def test_code_inside_a_markdown_list_or_quote_keeps_its_spaces_and_characters() -> None:
    page = ("1. Edit the config:\n\n   ```python\n   x    = 1      # aligned\n   name = \"ＩＳＯ\"\n   ```\n\n"
            "2. Then  run\u200b it.\n\n> Quoted code:\n>\n>     if a:\n>         b  =  2\n")
    blocks = dict(_blocks(page, "setup.md"))
    assert blocks["list"] == ("1. Edit the config:\n\n   ```python\n   x    = 1      # aligned\n   name = \"ＩＳＯ\"\n"
                              "   ```\n\n2. Then run it.")  # the prose around it cleaned as before
    assert blocks["quote"] == "Quoted code:\n\n    if a:\n        b  =  2"


def test_html_code_is_cleaned_as_markdown_code() -> None:
    page = "<html><body><pre>def f():\n    s = \"ＳＫＵ  x\"\u200b  # Ko\u0308hler\x07</pre></body></html>"
    assert _blocks(page, "code.html") == [("code", "def f():\n    s = \"ＳＫＵ  x\"  # Köhler")]


def test_soft_hyphens_go_in_every_format() -> None:
    html = "<html><body><p>Formular F-1: Reise&shy;kosten&shy;abrechnung, Vorlage.</p></body></html>"
    assert _blocks(html, "forms.html") == [("paragraph", "Formular F-1: Reisekostenabrechnung, Vorlage.")]
    text = "Formular F-1: Reise\u00adkosten\u00adabrechnung, Vorlage."
    for name in ("forms.txt", "forms.md"):
        assert _blocks(text, name) == [("paragraph", "Formular F-1: Reisekostenabrechnung, Vorlage.")], name
    assert clean_inline("Reise\u00adkosten") == clean_text("Reise\u00adkosten") == "Reisekosten"
    assert _blocks("```\nReise\u00adkosten\n```\n", "code.md") == [("code", "```\nReisekosten\n```")]


def test_full_width_letters_and_digits_are_stored_half_width_punctuation_stays() -> None:
    """A document typed in a Chinese IME's full-width mode is found by a question typed half-width (keywords.py folds
    the question alike); its full-width punctuation is its own and is quoted to users as written."""
    written = "通过ＩＳＯ９００１认证，见（附件ｂ）：ＳＫＵ－４８２１７。"
    assert clean_text(written) == "通过ISO9001认证，见（附件b）：SKU－48217。"
    assert clean_inline("Ｐ３级故障") == "P3级故障"
    assert _blocks("# 型号Ｘ２００\n\n库存：ＳＫＵ－４８２１７，１２件。\n", "stock.md") == [
        ("heading", "型号X200"), ("paragraph", "库存：SKU－48217，12件。")]
