"""Text a reader does not see is not indexed: Word text formatted Hidden, hidden Excel sheets, hidden HTML elements.

Before: a hidden Word run ("DRAFT NOTE: the CFO wants to cut bonuses...") was the top search snippet, a hidden
"Salaries" sheet was indexed, and HTML in ``style="display:none"`` was read as content.
"""

from __future__ import annotations

import io

from inhouse.kb.parse import parse_file

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def _docx_with_hidden_runs() -> bytes:
    import docx
    from docx.oxml import parse_xml

    d = docx.Document()
    p = d.add_paragraph("The annual bonus is paid in March. ")
    p.add_run("DRAFT NOTE: the CFO wants to cut bonuses by 40 percent.").font.hidden = True
    d.add_paragraph().add_run("Hidden paragraph, all of it.").font.hidden = True
    cell = d.add_table(rows=1, cols=2).cell(0, 0)
    cell.text = "Grade P3"
    cell.paragraphs[0].add_run(" secret cell note").font.hidden = True
    # Hidden switched off (w:val="0"), and Word's style separator (w:vanish with w:specVanish): both are shown.
    d.element.body[-1].addprevious(parse_xml(
        f'<w:p xmlns:w="{W}"><w:r><w:rPr><w:vanish w:val="0"/></w:rPr><w:t>Shown again.</w:t></w:r>'
        '<w:r><w:rPr><w:vanish/><w:specVanish/></w:rPr><w:t> Run-in heading.</w:t></w:r></w:p>'))
    d.sections[0].footer.paragraphs[0].text = "Acme Robotics"
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def test_word_runs_formatted_hidden_are_not_read() -> None:
    doc = parse_file(_docx_with_hidden_runs(), "bonus.docx")
    assert [(b.kind, b.text) for b in doc.blocks] == [
        ("paragraph", "The annual bonus is paid in March."),
        ("table", "Grade P3"),
        ("paragraph", "Shown again. Run-in heading."),
    ]


def test_hidden_and_very_hidden_sheets_are_not_read() -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Headcount"
    ws.append(["Team", "People"])
    ws.append(["Robotics", 12])
    for name, state in (("Salaries", "hidden"), ("Lookup", "veryHidden")):
        sheet = wb.create_sheet(name)
        sheet.sheet_state = state
        sheet.append(["Name", "Salary"])
        sheet.append(["Zhang Wei", 980000])
    wb.create_sheet("Notes").append(["Visible after the hidden ones"])
    buf = io.BytesIO()
    wb.save(buf)
    doc = parse_file(buf.getvalue(), "headcount.xlsx")
    assert [(b.kind, b.text, b.page) for b in doc.blocks] == [
        ("heading", "Headcount", 1), ("table", "Team | People\nRobotics | 12", 1),
        ("heading", "Notes", 4), ("table", "Visible after the hidden ones", 4)]  # a sheet's page: its place
    assert "Zhang Wei" not in doc.text and "Salaries" not in doc.text


def test_hidden_html_elements_are_not_read() -> None:
    page = ("<html><body><main><h1>Benefits</h1><p>Shares vest after two years.</p>"
            '<p style="display:none">Internal note: the discount may be illegal in Germany.</p>'
            '<div style="color: grey; visibility: hidden !important">Draft figure 18 %.</div>'
            "<p hidden>Old policy text.</p>"
            '<details><summary>FAQ</summary><div hidden="until-found">Ask HR about vesting.</div></details>'
            '<p style="display: block">Questions go to HR.</p></main></body></html>')
    doc = parse_file(page.encode(), "benefits.html")
    assert [b.text for b in doc.blocks] == [
        "Benefits", "Shares vest after two years.", "FAQ", "Ask HR about vesting.", "Questions go to HR."]
