"""Rebuild the legacy Office fixtures here: sources written with python-docx/openpyxl, saved as Word 97,
Excel 97, PowerPoint 97 and RTF by LibreOffice (a real office suite: these files reach a company from other programs).

    apt-get install libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui
    python tests/unit/kb/data/legacy/make_fixtures.py

The outputs are committed, so the tests need no LibreOffice. They are ours: made from the text below.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).parent

RICH_HTML = """<html><head><meta charset="utf-8"><title>Security Handbook</title></head><body>
<h1>Security Handbook</h1>
<p>See the <a href="https://intranet.example/vpn">VPN guide</a> before travel.<br>Second line after a break.</p>
<h2>Accounts</h2>
<ol><li>Use a password manager.</li><li>Turn on two-factor sign-in.</li></ol>
<table border="1"><tr><th>System</th><th>Owner</th></tr>
<tr><td>Mail</td><td>IT<table border="1"><tr><td>inner a</td><td>inner b</td></tr></table></td></tr>
<tr><td></td><td>Finance</td></tr></table>
<h3>账户安全</h3><p>密码至少十二位。</p>
</body></html>
"""


def travel_docx(path: Path) -> None:
    import docx

    d = docx.Document()
    d.core_properties.author = "Li Wei"
    d.core_properties.title = "Travel Rules"
    d.core_properties.subject = "Expenses"
    d.add_heading("Travel Rules", level=1)
    d.add_paragraph("These rules apply to everyone. ").add_run("Bold part.").bold = True
    d.add_heading("Hotels", level=2)
    table = d.add_table(rows=3, cols=3)
    rows = [("City", "Limit", "Note"), ("Shanghai", "1200 CNY", ""), ("Other", "500 CNY", "per night")]
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    d.add_heading("Approvals", level=2)
    d.add_paragraph("Up to 5000 CNY: manager.", style="List Bullet")
    d.add_paragraph("Above 5000 CNY: CFO.", style="List Bullet")
    d.add_heading("差旅", level=2)
    d.add_paragraph("员工出差须提前三天申请。")
    d.add_heading("Receipts", level=3)
    for i in range(150):  # enough paragraphs for several pages of paragraph properties
        d.add_paragraph(f"Receipt rule {i}: keep the original and scan it within a week of the trip.")
    d.save(path)


def budget_xlsx(path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Budget"
    ws.append(["Item", "Amount", "Date"])
    ws.append(["Hotel", 1200, dt.date(2026, 3, 1)])
    ws.append(["Taxi", 35.5, dt.datetime(2026, 3, 2, 14, 30)])
    ws.append(["合计", "=B2+B3", None])  # LibreOffice calculates it when it saves
    wb.create_sheet("空表")
    wb.create_sheet("Notes").append(["Approved by CFO"])
    wb.properties.title = "Budget 2026"
    wb.properties.creator = "Li Wei"
    wb.save(path)


def payroll_xlsx(path: Path) -> None:
    """A sheet whose page header says "Confidential" and whose footer holds Excel's codes (a sheet name, a literal
    "&&", a date, the page number and count), and a sheet with no header; Excel 97 keeps them in HEADER and FOOTER
    records."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Payroll"
    ws.append(["Employee", "Grade", "Salary"])
    ws.append(["Chen Jing", "P3", 240000])
    ws.append(["Wang Fang", "P2", 185000])
    ws.oddHeader.left.text = "&A"
    ws.oddHeader.center.text = "Confidential"
    ws.oddFooter.left.text = "Qinglan Components && Partners"
    ws.oddFooter.center.text = "&D"
    ws.oddFooter.right.text = "Page &P of &N"
    wb.create_sheet("Notes").append(["Bands reviewed each March."])
    wb.save(path)


def deck_pptx(path: Path) -> None:
    import sys

    sys.path.insert(0, str(HERE.parent.parent))
    from docfactory import make_pptx

    path.write_bytes(make_pptx())


# Footnotes, an endnote and a text box, as LibreOffice's flat XML (it writes them into .docx and .doc the way Word
# does: notes parts and references, a drawing with a VML fallback copy; the Word 97 note and text-box stories).
NOTES_FODT = """<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
 xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"
 office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.text">
 <office:body><office:text>
  <text:h text:outline-level="1">Expense Rules</text:h>
  <text:p>Hotels in Shanghai are reimbursed up to 1,200 CNY a night.<text:note text:id="ftn1"
   text:note-class="footnote"><text:note-citation>1</text:note-citation><text:note-body><text:p>Except during the
   trade fair week, when the limit is 1,800 CNY.</text:p></text:note-body></text:note></text:p>
  <text:list><text:list-item><text:p>Book through the travel desk.<text:note text:id="ftn2"
   text:note-class="footnote"><text:note-citation>2</text:note-citation><text:note-body><text:p>Travel desk: extension
   8100.</text:p></text:note-body></text:note></text:p></text:list-item>
   <text:list-item><text:p>Keep every receipt.</text:p></text:list-item></text:list>
  <text:p>Taxi receipts must show the route.<text:note text:id="edn1" text:note-class="endnote"><text:note-citation>i
   </text:note-citation><text:note-body><text:p>Ride-hailing screenshots count as receipts.</text:p></text:note-body>
   </text:note></text:p>
  <text:p><draw:frame draw:name="Box1" text:anchor-type="paragraph" svg:width="6cm" svg:height="2cm"><draw:text-box>
   <text:p>Approval hotline: extension 8123.</text:p></draw:text-box></draw:frame>Questions go to the finance
   desk.</text:p>
  <text:p>员工出差须提前三天申请。<text:note text:id="ftn3" text:note-class="footnote"><text:note-citation>3
   </text:note-citation><text:note-body><text:p>紧急出差可事后补办。</text:p></text:note-body></text:note></text:p>
 </office:text></office:body>
</office:document>
"""
# A footnote referred to from a table cell: read after the table.
TABLE_NOTE_FODT = """<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"
 office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.text"><office:body><office:text>
<text:p>Limits by city.</text:p>
<table:table><table:table-column table:number-columns-repeated="2"/>
<table:table-row><table:table-cell><text:p>City</text:p></table:table-cell>
 <table:table-cell><text:p>Limit</text:p></table:table-cell></table:table-row>
<table:table-row><table:table-cell><text:p>Shanghai</text:p></table:table-cell>
 <table:table-cell><text:p>1200 CNY<text:note text:id="f1" text:note-class="footnote"><text:note-citation>1
 </text:note-citation><text:note-body><text:p>1800 CNY during the trade fair.</text:p></text:note-body>
 </text:note></text:p></table:table-cell></table:table-row>
</table:table><text:p>After the table.</text:p></office:text></office:body></office:document>
"""
BOARD_LABEL_ID = "3f1c2b4a-9d8e-4f7a-b6c5-1a2b3c4d5e6f"


def board_docx(path: Path) -> None:
    """A Word document with a Purview sensitivity label in its custom properties (Word 97 keeps them in the
    user-defined section of its DocumentSummaryInformation)."""
    import io
    import sys

    import docx

    sys.path.insert(0, str(HERE.parent.parent))
    from docfactory import purview_properties, with_ooxml_parts

    d = docx.Document()
    d.add_heading("Board pack", level=1)
    d.add_paragraph("Acquisition of Kestrel Ltd: the price range the board discussed.")
    buf = io.BytesIO()
    d.save(buf)
    path.write_bytes(with_ooxml_parts(buf.getvalue(), custom=purview_properties(BOARD_LABEL_ID, "Highly Confidential")))


def footer_pptx(path: Path) -> None:
    """The deck with its first slide showing a footer, a date and a slide number (PowerPoint 97 keeps the footer
    text in the slide's HeadersFooters container)."""
    import sys

    sys.path.insert(0, str(HERE.parent.parent))
    from docfactory import make_pptx

    path.write_bytes(make_pptx(footer="Qinglan Components | Confidential"))


def watermark_docx(path: Path) -> None:
    """A memo with a header line, Word's "CONFIDENTIAL" watermark (WordArt in the header) and a footer line: Word 97
    keeps the header lines in the header story and the watermark's words in the headers' Office Art drawing, RTF in
    a shape's ``gtextUNICODE`` property."""
    import sys

    sys.path.insert(0, str(HERE.parent.parent))
    from docfactory import make_watermarked_docx

    path.write_bytes(make_watermarked_docx())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        travel_docx(work / "travel.docx")
        budget_xlsx(work / "budget.xlsx")
        payroll_xlsx(work / "payroll.xlsx")
        deck_pptx(work / "deck.pptx")
        board_docx(work / "board.docx")
        footer_pptx(work / "footer.pptx")
        watermark_docx(work / "watermark.docx")
        (work / "notes.fodt").write_text(NOTES_FODT, encoding="utf-8")
        (work / "table-note.fodt").write_text(TABLE_NOTE_FODT, encoding="utf-8")
        (work / "rich.html").write_text(RICH_HTML, encoding="utf-8")
        for source, target in (("travel.docx", "doc"), ("rich.html", "doc:MS Word 97"), ("budget.xlsx", "xls"),
                               ("payroll.xlsx", "xls"),
                               ("deck.pptx", "ppt"), ("board.docx", "doc"), ("notes.fodt", "doc"),
                               ("notes.fodt", "docx"), ("notes.fodt", "rtf"), ("travel.docx", "rtf"),
                               ("footer.pptx", "ppt"), ("table-note.fodt", "docx"), ("table-note.fodt", "doc"),
                               ("table-note.fodt", "rtf"), ("watermark.docx", "doc"), ("watermark.docx", "rtf")):
            subprocess.run(["soffice", "--headless", "--convert-to", target, "--outdir", str(HERE),
                            str(work / source)], check=True, capture_output=True)
    # The summary information holds a 580 KB thumbnail of the first slide and no text the tests need (the other
    # fixtures test it): the deck keeps every other stream.
    import olefile

    from inhouse.testing.outlook import write_compound

    for name in ("deck.ppt", "footer.ppt"):
        deck = olefile.OleFileIO(str(HERE / name))
        streams = {"/".join(p): deck.openstream(p).read() for p in deck.listdir()
                   if p != ["\x05SummaryInformation"]}
        deck.close()
        (HERE / name).write_bytes(write_compound(streams))


if __name__ == "__main__":
    main()
