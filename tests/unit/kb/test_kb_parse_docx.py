"""Word text python-docx does not hand over on its own: content controls, tracked changes, fields, nested tables."""

from __future__ import annotations

import io

from inhouse.kb.parse import parse_file

W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def _docx_with(*body_xml: str, header_xml: str = "") -> bytes:
    import docx
    from docx.oxml import parse_xml

    d = docx.Document()
    d.add_paragraph("Intro paragraph.")
    table = d.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "Outer cell"
    inner = table.cell(0, 1).add_table(rows=2, cols=2)
    for r, (a, b) in enumerate((("Level", "Limit"), ("NESTED-P3", "1800 CNY"))):
        inner.cell(r, 0).text, inner.cell(r, 1).text = a, b
    sect = d.element.body[-1]
    for xml in body_xml:
        sect.addprevious(parse_xml(xml))
    if header_xml:
        d.sections[0].header._element.append(parse_xml(header_xml))
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def test_docx_reads_content_controls_insertions_fields_and_nested_tables_not_deletions() -> None:
    data = _docx_with(
        f'<w:p {W}><w:r><w:t xml:space="preserve">Allowance is </w:t></w:r>'
        '<w:ins w:id="1" w:author="HR"><w:r><w:t>INSERTED-300</w:t></w:r></w:ins>'
        '<w:del w:id="2" w:author="HR"><w:r><w:delText>DELETED-200</w:delText></w:r></w:del>'
        '<w:moveFrom w:id="3" w:author="HR"><w:r><w:t>MOVED-AWAY</w:t></w:r></w:moveFrom>'
        '<w:r><w:t xml:space="preserve"> CNY per day.</w:t></w:r></w:p>',
        f'<w:sdt {W}><w:sdtPr><w:alias w:val="Policy"/></w:sdtPr><w:sdtContent><w:p><w:r>'
        '<w:t>SDT-BLOCK booked via the portal.</w:t></w:r></w:p></w:sdtContent></w:sdt>',
        f'<w:p {W}><w:r><w:t xml:space="preserve">Owner: </w:t></w:r><w:sdt><w:sdtPr/><w:sdtContent><w:r>'
        '<w:t>SDT-INLINE Zhang San</w:t></w:r></w:sdtContent></w:sdt></w:p>',
        f'<w:p {W}><w:r><w:t xml:space="preserve">Version </w:t></w:r><w:fldSimple w:instr=" DOCPROPERTY V ">'
        '<w:r><w:t>FIELD-7.2</w:t></w:r></w:fldSimple><w:smartTag w:uri="urn:x" w:element="place"><w:r>'
        '<w:t xml:space="preserve"> SMARTTAG-Shanghai</w:t></w:r></w:smartTag><w:customXml w:element="x"><w:r>'
        '<w:t xml:space="preserve"> CUSTOMXML-Beijing</w:t></w:r></w:customXml></w:p>',
        header_xml=f'<w:sdt {W}><w:sdtContent><w:p><w:r><w:t>Internal use only</w:t></w:r></w:p></w:sdtContent>'
                   '</w:sdt>',
    )
    doc = parse_file(data, "lost.docx")
    texts = [b.text for b in doc.blocks]
    assert texts == [
        "Intro paragraph.",
        "Outer cell | Level Limit NESTED-P3 1800 CNY",  # the nested table, a row a line, inside its cell
        "Allowance is INSERTED-300 CNY per day.",
        "SDT-BLOCK booked via the portal.",
        "Owner: SDT-INLINE Zhang San",
        "Version FIELD-7.2 SMARTTAG-Shanghai CUSTOMXML-Beijing",
    ]
    assert "DELETED" not in doc.text and "MOVED-AWAY" not in doc.text
    assert [m.text for m in doc.markings] == ["Internal use only"]
