"""PDF running headers and footers (kb/parse/pdf.py): left out of the content, passed on as markings, and a paragraph
that goes on over a page break kept whole. The PDFs are written by hand, text placed where a word processor puts a
header (top margin) and a footer (bottom margin), drawn before the body as ReportLab's page templates do."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from docfactory import pdf_file

from inhouse.governance.labels import Label
from inhouse.kb.access import Acl
from inhouse.kb.chunk import chunk_document
from inhouse.kb.document import Marking
from inhouse.kb.index.sqlite import SqliteIndexStore
from inhouse.kb.ingest import FileSource, Ingestor
from inhouse.kb.markings import MarkingReader
from inhouse.kb.parse import parse_file
from inhouse.testing.fake_embedder import FakeEmbedder

Text = tuple[float, float, float, str]  # x, y (baseline, points from the bottom), font size, text

HEADER = "Acme Robotics Ltd - Travel Expense Policy 2026"


def positioned_pdf(pages: list[list[Text]]) -> bytes:
    """A text PDF (Helvetica, ASCII, A4) with each text where it is given."""
    objects: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
                                      b"/Encoding /WinAnsiEncoding >>"]
    kids = []
    for texts in pages:
        ops = []
        for x, y, size, text in texts:
            esc = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"BT /F1 {size} Tf {x} {y} Td ({esc}) Tj ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> "
                       b"/Contents %d 0 R >>" % len(objects))
        kids.append(len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    return pdf_file(objects, b"/Root 1 0 R")


def body(lines: list[str], top: float = 740.0) -> list[Text]:
    return [(72.0, top - 14 * i, 10.0, line) for i, line in enumerate(lines)]


def running(page: int, header: str = HEADER, footer: str = "CONFIDENTIAL - Page {n}") -> list[Text]:
    return [(72.0, 800.0, 9.0, header), (72.0, 30.0, 9.0, footer.format(n=page))]


def rules() -> list[str]:
    """39 lines of rules, wrapped as a typesetter would: most lines end inside a sentence."""
    text = " ".join(f"Rule {i}: employees travelling for clause {i} must keep every receipt and submit it within "
                    f"thirty days of return." for i in range(1, 31))
    return textwrap.wrap(text, 90)


# --- B: running text is not content; a paragraph goes on over the page break --------------------------------------

def test_running_header_and_footer_are_not_content_and_a_sentence_goes_on_over_the_page_break() -> None:
    lines = rules()
    assert not lines[15].endswith(".")  # the page break falls inside a sentence
    pages = [[*running(1), (72.0, 760.0, 18.0, "Travel Expense Policy"), *body(lines[:16], 730.0)],
             running(2) + body(lines[16:30]), running(3) + body(lines[30:])]
    doc = parse_file(positioned_pdf(pages), "policy.pdf")

    assert doc.page_count == 3 and doc.title == "Travel Expense Policy"
    texts = [b.text for b in doc.blocks]
    assert not [t for t in texts if "Acme" in t or "CONFIDENTIAL" in t or "Page" in t], texts
    assert doc.markings == (Marking("header", HEADER), Marking("footer", "CONFIDENTIAL - Page 1"))
    # The sentence across the break is one paragraph, cited on the page it starts on.
    across = f"{lines[15]} {lines[16]}"
    (block,) = [b for b in doc.blocks if across in b.text]
    assert block.page == 1
    (chunk,) = [c for c in chunk_document(doc) if across in c.text]
    assert chunk.page_start == 1
    # Nothing of the body is lost.
    assert " ".join(texts[1:]).replace("\n", " ") == " ".join(lines)


def test_a_title_page_and_headings_numbered_like_page_numbers_stay_content() -> None:
    """A title page without the header, the title in the header of the other pages, and a heading opening each of
    them that differs only in its number, as a page number does."""
    lines = [line.rstrip(".") + "." for line in rules()]  # each line a paragraph
    pages = [[(72.0, 700.0, 20.0, "Travel Expense Policy"), *body(lines[:3], 660.0)]]
    for n in range(2, 5):
        pages.append([*running(n, header="Travel Expense Policy", footer="{n}"),
                      (72.0, 760.0, 14.0, f"Section {n}"), *body(lines[n * 5:n * 5 + 5], 730.0)])
    doc = parse_file(positioned_pdf(pages), "policy.pdf")

    assert doc.title == "Travel Expense Policy"
    assert [(b.text, b.page) for b in doc.blocks if b.kind == "heading"] == [
        ("Travel Expense Policy", 1), ("Section 2", 2), ("Section 3", 3), ("Section 4", 4)]
    assert doc.markings == (Marking("header", "Travel Expense Policy"), Marking("footer", "2"))
    assert [b.text for b in doc.blocks if b.kind == "paragraph"] == lines[:3] + lines[10:25]


@pytest.mark.parametrize(("count", "with_header"), [
    (2, {1, 2}),  # two pages: too few to tell a running header from a line that happens to repeat
    (6, {1, 2}),  # on two pages of six: not on most pages
])
def test_a_line_on_too_few_pages_stays_content(count: int, with_header: set[int]) -> None:
    lines = rules()
    pages = [(running(n, header="Acme Robotics Ltd - HR", footer="") if n in with_header else [])
             + body(lines[n * 5:n * 5 + 5]) for n in range(1, count + 1)]
    doc = parse_file(positioned_pdf(pages), "memo.pdf")
    assert doc.markings == ()
    assert sum(b.text == "Acme Robotics Ltd - HR" for b in doc.blocks) == 2


def test_strip_running_ignores_digits_and_needs_half_the_pages() -> None:
    from inhouse.kb.parse.pdf import Line, strip_running

    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight"]

    def page(n: int, footer: str) -> list[Line]:
        return [Line("Quarterly report", 9.0, n, y=800.0), Line(f"Sales rose {n}% in region {n}.", 10.0, n, y=700.0),
                Line(f"Body text {words[n]}.", 10.0, n, y=686.0),
                Line(footer.format(n=n), 9.0, n, y=30.0, margin="footer")]

    pages = [page(n, "Page {n} of 7") for n in range(1, 8)]
    kept, found = strip_running(pages)
    assert found == [("header", "Quarterly report"), ("footer", "Page 1 of 7")]
    assert [line.text for line in kept[0]] == ["Sales rose 1% in region 1.", "Body text one."]  # digits count here
    # Odd pages with one footer, even pages with another (a book's left and right pages): each on half the pages.
    pages = [page(n, "Acme - Page {n}" if n % 2 else "Page {n} - Acme") for n in range(1, 9)]
    assert [text for _, text in strip_running(pages)[1]] == ["Quarterly report", "Acme - Page 1", "Page 2 - Acme"]
    # Every line the same on every page: they are the content.
    same = [[Line("Sign here", 10.0, n, y=700.0), Line("Date", 10.0, n, y=600.0)] for n in range(1, 4)]
    assert strip_running(same) == (same, [])


def test_a_paragraph_ending_the_page_on_a_short_line_is_not_carried_over() -> None:
    from inhouse.kb.parse.pdf import Line, lines_to_blocks

    full = "Employees keep every receipt and submit it within thirty days of their return from the"
    pages = [[Line(full, 10.0, 1), Line("Contacts", 10.0, 1)],  # a short last line (a list, an address) ends it
             [Line(full, 10.0, 2), Line(full, 10.0, 2)],  # a full last line without a full stop goes on
             [Line("trip.", 10.0, 3)]]
    blocks = lines_to_blocks(pages).blocks
    assert [(b.text, b.page) for b in blocks] == [(f"{full} Contacts", 1), (f"{full} {full} trip.", 2)]


# --- A: CONFIDENTIAL in the footer marks the document ---------------------------------------------------------------

def bands_pdf(pages: int) -> bytes:
    """Salary bands: header "Acme Robotics Ltd - HR" on the left, footer "CONFIDENTIAL" centred and "Page N" on the
    right, two texts on one baseline (which PDFium reads as one line, "CONFIDENTIAL Page 1")."""
    para = [f"Band P{i} pays between {i}00000 and {i}50000 CNY a year, reviewed every April by the committee."
            for i in range(1, 5)]
    return positioned_pdf([[(72.0, 800.0, 9.0, "Acme Robotics Ltd - HR"), (270.0, 30.0, 9.0, "CONFIDENTIAL"),
                            (490.0, 30.0, 9.0, f"Page {n}"), (72.0, 760.0, 18.0, "Salary bands 2027"),
                            *body(para, 730.0)] for n in range(1, pages + 1)])


def test_confidential_in_the_footer_of_every_page_marks_the_pdf() -> None:
    doc = parse_file(bands_pdf(3), "bands.pdf")
    assert Marking("footer", "CONFIDENTIAL") in doc.markings  # apart from "Page 1", on the same line
    assert Marking("header", "Acme Robotics Ltd - HR") in doc.markings
    assert not [b.text for b in doc.blocks if "CONFIDENTIAL" in b.text or "Acme" in b.text]
    marked = MarkingReader().read(doc)
    assert marked is not None and (marked.label, marked.reason) == (Label.CONFIDENTIAL, '"CONFIDENTIAL" in the footer')


def test_confidential_in_the_footer_of_a_single_page_marks_the_pdf() -> None:
    """One page: nothing recurs, so the footer stays content, but paragraphs of its own, one for each of its texts
    set apart (kb/markings.py does not split a text at a line break or spaces)."""
    doc = parse_file(bands_pdf(1), "bands.pdf")
    assert doc.markings == ()
    assert [b.text for b in doc.blocks[:3]] == ["Acme Robotics Ltd - HR", "CONFIDENTIAL", "Page 1"]
    marked = MarkingReader().read(doc)
    assert marked is not None and (marked.label, marked.reason) == (Label.CONFIDENTIAL,
                                                                     '"CONFIDENTIAL" in the paragraph')


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = SqliteIndexStore(tmp_path / "kb.db", dim=384)
    yield s
    s.close()


def test_ingesting_a_pdf_with_a_confidential_footer_as_internal_stores_it_confidential(
        store: SqliteIndexStore) -> None:
    col = store.create_collection("hr", acl=Acl(groups=frozenset({"hr"})))
    data = bands_pdf(3)
    outcome = Ingestor(store, FakeEmbedder(), markings=MarkingReader()).ingest(
        col.id, [FileSource("bands.pdf", lambda: data, "bands.pdf")], label="internal").outcomes[0]
    assert (outcome.label, outcome.marking) == (Label.CONFIDENTIAL, '"CONFIDENTIAL" in the footer')
    assert store.get_document(outcome.document_id or "").label == Label.CONFIDENTIAL


# --- a table over several pages repeats its column header row: content on every page --------------------------------

def table_row(y: float, cells: list[str]) -> list[Text]:
    return [(x, y, 10.0, cell) for x, cell in zip((72.0, 200.0, 330.0, 460.0), cells, strict=True)]


def salary_table_pdf(pages: int) -> bytes:
    """A salary table of three rows a page under its column header row, which Word, Excel and report writers repeat
    on each page, flush with the rows (20 points above the first, rows 16 apart); a company header and "Page N"."""
    out = []
    for p in range(pages):
        texts = [(72.0, 810.0, 9.0, "Acme Robotics Ltd - Salary review 2026"), (280.0, 30.0, 9.0, f"Page {p + 1}"),
                 *table_row(780.0, ["Employee", "Base salary", "Bonus", "Stock units"])]
        for i in range(3):
            n = p * 3 + i
            texts += table_row(760.0 - 16 * i, [f"Employee {n}", f"{9000 + 500 * n}", f"{1000 + 100 * n}", f"{10 * n}"])
        out.append(texts)
    return positioned_pdf(out)


def test_a_tables_repeated_column_header_row_stays_with_the_rows_of_each_page() -> None:
    doc = parse_file(salary_table_pdf(4), "salaries.pdf")

    assert doc.markings == (Marking("header", "Acme Robotics Ltd - Salary review 2026"), Marking("footer", "Page 1"))
    # One paragraph a page, cited on its page: the column row, then the rows a line each (not glued to the next page).
    rows = [f"Employee {n} {9000 + 500 * n} {1000 + 100 * n} {10 * n}" for n in range(12)]
    assert [(b.page, b.text) for b in doc.blocks] == [
        (p + 1, "\n".join(["Employee Base salary Bonus Stock units", *rows[p * 3:p * 3 + 3]])) for p in range(4)]


def test_strip_running_keeps_a_recurring_line_flush_with_the_body() -> None:
    """A line recurring at the top of every page is running text only when a gap of 1.5 line spacings sets it apart
    from the body on half its pages at least: a header may come close to the body now and then, a table's column
    header row (one line spacing above its rows here) never leaves it."""
    from inhouse.kb.parse.pdf import Line, strip_running

    def page(n: int, header_y: float) -> list[Line]:
        return [Line("Shared MIME-info Database", 10.0, n, y=header_y), Line("Name Type Size", 10.0, n, y=700.0),
                Line(f"row {n}a", 10.0, n, y=686.0), Line(f"row {n}b", 10.0, n, y=672.0),
                Line(f"row {n}c", 10.0, n, y=658.0), Line(f"row {n}d", 10.0, n, y=644.0)]

    # 24.5 points above the body (DocBook's header: 1.75 line spacings of 14, under 2.5 font sizes) or 30 on three
    # pages of four, one line spacing on one: running text, on all four.
    kept, found = strip_running([page(1, 724.5), page(2, 714.0), page(3, 730.0), page(4, 730.0)])
    assert found == [("header", "Shared MIME-info Database")]
    assert [line.text for line in kept[1]] == ["Name Type Size", "row 2a", "row 2b", "row 2c", "row 2d"]
    # Close to the body on three pages of four: content, as "Name Type Size" is everywhere.
    kept, found = strip_running([page(1, 730.0), page(2, 714.0), page(3, 714.0), page(4, 714.0)])
    assert found == []
    assert all(page[0].text == "Shared MIME-info Database" for page in kept)


def test_a_tables_rows_do_not_go_on_over_a_page_break_into_the_next_pages_text() -> None:
    from inhouse.kb.parse.pdf import Line, lines_to_blocks

    text = "Employees keep every receipt and submit it within thirty days of their return from the"
    pages = [[Line("Li Wei 9000 1000 0", 10.0, 1, runs=("Li Wei", "9000", "1000", "0")),  # a table's rows (cells
              Line("Wang Fang 10000 1200 20", 10.0, 1, runs=("Wang Fang", "10000", "1200", "20"))],  # set apart)
             [Line("trip and the hotel.", 10.0, 2)],
             [Line(text, 10.0, 3)],  # a full line of text at the end of the page...
             [Line("Zhao Lei 11500 1500 50", 10.0, 4, runs=("Zhao Lei", "11500", "1500", "50")),  # ...a row next
              Line("Zhou Tao 12500 1700 70", 10.0, 4, runs=("Zhou Tao", "12500", "1700", "70"))]]
    blocks = lines_to_blocks(pages).blocks
    assert [(b.text, b.page) for b in blocks] == [
        ("Li Wei 9000 1000 0\nWang Fang 10000 1200 20", 1), ("trip and the hotel.", 2), (text, 3),
        ("Zhao Lei 11500 1500 50\nZhou Tao 12500 1700 70", 4)]
