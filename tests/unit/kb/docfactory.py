"""Builders of small test files in every supported format (written by the same libraries, or by hand for PDF)."""

from __future__ import annotations

import io
import zipfile


def make_pdf(pages: list[list[tuple[float, str]]], *, encrypt: bool = False, info_title: str = "",
             info_extra: bytes = b"", xmp: bytes | None = None) -> bytes:
    """A minimal text PDF (Helvetica, ASCII): each page a list of (font size, line). ``info_extra``: more entries of
    the information dictionary (raw PDF syntax); ``xmp``: an XMP packet as the catalog's metadata stream."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled once the page tree's number is known
    pages_obj = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids = []
    for lines in pages:
        y = 750.0
        ops = []
        for size, text in lines:
            esc = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"BT /F1 {size} Tf 72 {y:.0f} Td ({esc}) Tj ET")
            y -= size * 1.6
        stream = "\n".join(ops).encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(add(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 %d 0 R >> >> "
            b"/Contents %d 0 R >>" % (pages_obj, font, content)
        ))
    metadata = b""
    if xmp is not None:
        metadata = b" /Metadata %d 0 R" % add(b"<< /Type /Metadata /Subtype /XML /Length %d >>\nstream\n" % len(xmp)
                                               + xmp + b"\nendstream")
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R%s >>" % (pages_obj, metadata)
    objects[pages_obj - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    info = add(b"<< /Title (%s) /Author (Jane Doe) /CreationDate (D:20260102030405Z)%s >>"
               % (info_title.encode(), info_extra))
    encrypt_ref = b""
    if encrypt:  # a standard security handler whose user password is not empty: PDFium must refuse it
        enc = add(b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -44 >>")
        encrypt_ref = b" /Encrypt %d 0 R" % enc
    return pdf_file(objects, b"/Root %d 0 R /Info %d 0 R /ID [<00112233445566778899aabbccddeeff> "
                             b"<00112233445566778899aabbccddeeff>]%s" % (catalog, info, encrypt_ref))


def pdf_file(objects: list[bytes], trailer: bytes) -> bytes:
    """A PDF of ``objects`` (numbered from 1), its cross-reference table and a trailer holding ``trailer``."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d %s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref))
    return out.getvalue()


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.author = "Li Wei"
    document.core_properties.title = "Travel Rules"
    document.add_heading("Travel Rules", level=1)
    document.add_paragraph("These rules apply to everyone.")
    document.add_heading("Hotels", level=2)
    table = document.add_table(rows=3, cols=2)
    for r, (a, b) in enumerate([("City", "Limit"), ("Shanghai", "1200 CNY"), ("Other", "500 CNY")]):
        table.cell(r, 0).text = a
        table.cell(r, 1).text = b
    document.add_heading("Approvals", level=2)
    document.add_paragraph("Up to 5000 CNY: manager.", style="List Bullet")
    document.add_paragraph("Above 5000 CNY: CFO.", style="List Bullet")
    document.add_heading("差旅", level=2)
    document.add_paragraph("员工出差须提前三天申请。")
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


# Word's watermark, as Word writes it into a header: WordArt (VML shape type 136) whose text path holds the words.
WATERMARK_VML = (
    '<w:pict xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" '
    'xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" '
    'xmlns:w10="urn:schemas-microsoft-com:office:word">'
    '<v:shapetype id="_x0000_t136" coordsize="21600,21600" o:spt="136" adj="10800" '
    'path="m@7,l@8,m@5,21600l@6,21600e"><v:path textpathok="t" o:connecttype="custom"/>'
    '<v:textpath on="t" fitshape="t"/><o:lock v:ext="edit" text="t" shapetype="t"/></v:shapetype>'
    '<v:shape id="PowerPlusWaterMarkObject357476642" o:spid="_x0000_s2050" type="#_x0000_t136" '
    'style="position:absolute;margin-left:0;margin-top:0;width:527.85pt;height:131.95pt;rotation:315;'
    'z-index:-251657216;mso-position-horizontal:center;mso-position-horizontal-relative:margin;'
    'mso-position-vertical:center;mso-position-vertical-relative:margin" o:allowincell="f" fillcolor="silver" '
    'stroked="f"><v:fill opacity=".5"/><v:textpath style="font-family:&quot;Calibri&quot;;font-size:1pt" '
    'string="{words}"/><w10:wrap anchorx="margin" anchory="margin"/></v:shape></w:pict>')


def make_watermarked_docx(words: str = "CONFIDENTIAL") -> bytes:
    """A one-page memo whose header shows a line of text and Word's diagonal watermark (``words``), its footer
    another line."""
    import docx
    from docx.oxml import parse_xml

    document = docx.Document()
    document.core_properties.title = "Acquisition plan"
    document.add_heading("Acquisition plan", level=1)
    document.add_paragraph("Kestrel Ltd would be bought for 40-45 million.")
    header = document.sections[0].header.paragraphs[0]
    header.text = "Board of Directors"
    header.add_run()._r.append(parse_xml(WATERMARK_VML.format(words=words)))
    document.sections[0].footer.paragraphs[0].text = "Qinglan Components"
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def make_pptx(footer: str | None = None) -> bytes:
    """Two slides; ``footer``: the first slide also shows its layout's footer (that text), date and number."""
    from pptx import Presentation
    from pptx.enum.shapes import PP_PLACEHOLDER
    from pptx.util import Inches

    prs = Presentation()
    prs.core_properties.title = "Q3 Review"
    slide = prs.slides.add_slide(prs.slide_layouts[1])
    slide.shapes.title.text = "Results"
    body = slide.placeholders[1].text_frame
    body.text = "Revenue grew 12%"
    body.add_paragraph().text = "Margin stable"
    slide.notes_slide.notes_text_frame.text = "Mention the new plant."
    if footer is not None:
        running = {PP_PLACEHOLDER.FOOTER: footer, PP_PLACEHOLDER.DATE: "2026-12-01", PP_PLACEHOLDER.SLIDE_NUMBER: "1"}
        for placeholder in prs.slide_layouts[1].placeholders:
            if placeholder.placeholder_format.type in running:
                slide.shapes.clone_placeholder(placeholder)
        for shape in slide.placeholders:
            if shape.placeholder_format.type in running:
                shape.text_frame.text = running[shape.placeholder_format.type]
    slide2 = prs.slides.add_slide(prs.slide_layouts[5])
    slide2.shapes.title.text = "Regions"
    shape = slide2.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1))
    for r, row in enumerate([("Region", "Sales"), ("East", "42")]):
        for c, value in enumerate(row):
            shape.table.cell(r, c).text = value
    buf = io.BytesIO()
    prs.save(buf)
    return buf.getvalue()


def make_xlsx(rows: int = 3) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Prices"
    ws.append(["Item", "Price"])
    for i in range(rows):
        ws.append([f"item-{i}", 10.0 + i])
    ws2 = wb.create_sheet("人员")
    ws2.append(["姓名", "部门"])
    ws2.append(["张三", "财务部"])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def make_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


CUSTOM_PROPERTIES_NS = "http://schemas.openxmlformats.org/officeDocument/2006/custom-properties"
VT_NS = "http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes"


def purview_properties(label_id: str, name: str | None, *, enabled: str = "true") -> dict[str, str]:
    """The custom properties Office writes for a Microsoft Purview sensitivity label."""
    props = {f"MSIP_Label_{label_id}_Enabled": enabled, f"MSIP_Label_{label_id}_Method": "Privileged",
             f"MSIP_Label_{label_id}_SiteId": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
             f"MSIP_Label_{label_id}_SetDate": "2026-11-02T08:15:00Z", f"MSIP_Label_{label_id}_ContentBits": "0"}
    if name is not None:
        props[f"MSIP_Label_{label_id}_Name"] = name
    return props


def with_ooxml_parts(data: bytes, *, custom: dict[str, str] | None = None, label_info: str | None = None) -> bytes:
    """A .docx/.xlsx/.pptx with custom document properties (``docProps/custom.xml``) and/or a
    ``docMetadata/LabelInfo.xml`` part added, registered in the content types and package relationships as Office
    does."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    overrides, relationships = b"", b""
    extra: dict[str, str] = {}
    if custom is not None:
        props = "".join(
            f'<property fmtid="{{D5CDD505-2E9C-101B-9397-08002B2CF9AE}}" pid="{n}" name="{name}">'
            f"<vt:lpwstr>{value}</vt:lpwstr></property>" for n, (name, value) in enumerate(custom.items(), 2))
        extra["docProps/custom.xml"] = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Properties '
                                        f'xmlns="{CUSTOM_PROPERTIES_NS}" xmlns:vt="{VT_NS}">{props}</Properties>')
        overrides += (b'<Override PartName="/docProps/custom.xml" '
                      b'ContentType="application/vnd.openxmlformats-officedocument.custom-properties+xml"/>')
        relationships += (b'<Relationship Id="rIdCustom" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                          b'relationships/custom-properties" Target="docProps/custom.xml"/>')
    if label_info is not None:
        extra["docMetadata/LabelInfo.xml"] = label_info
        overrides += (b'<Override PartName="/docMetadata/LabelInfo.xml" '
                      b'ContentType="application/vnd.ms-office.classificationlabels+xml"/>')
        relationships += (b'<Relationship Id="rIdLabels" Type="http://schemas.microsoft.com/office/2020/02/relationships'
                          b'/classificationlabels" Target="docMetadata/LabelInfo.xml"/>')
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in src.infolist():
            part = src.read(info)
            if info.filename == "[Content_Types].xml":
                part = part.replace(b"</Types>", overrides + b"</Types>")
            elif info.filename == "_rels/.rels":
                part = part.replace(b"</Relationships>", relationships + b"</Relationships>")
            zf.writestr(info, part)
        for name, text in extra.items():
            zf.writestr(name, text)
    return out.getvalue()


def label_info_xml(*labels: tuple[str, str, str]) -> str:
    """A LabelInfo part: (label id, enabled "1"/"0", removed "1"/"0") per label, as [MS-OFFCRYPTO] 2.6.4 shows."""
    items = "".join(f'<clbl:label id="{{{label_id}}}" enabled="{enabled}" method="Privileged" '
                    f'siteId="{{9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d}}" removed="{removed}"/>'
                    for label_id, enabled, removed in labels)
    return ('<?xml version="1.0" encoding="utf-8" standalone="yes"?>'
            '<clbl:labelList xmlns:clbl="http://schemas.microsoft.com/office/2020/mipLabelMetadata">'
            f"{items}</clbl:labelList>")
