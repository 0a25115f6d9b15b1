"""Builders of small test files in every supported format (written by the same libraries, or by hand for PDF)."""

from __future__ import annotations

import io
import zipfile


def make_pdf(pages: list[list[tuple[float, str]]], *, encrypt: bool = False, info_title: str = "") -> bytes:
    """A minimal text PDF (Helvetica, ASCII): each page a list of (font size, line)."""
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
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_obj
    objects[pages_obj - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    info = add(b"<< /Title (%s) /Author (Jane Doe) /CreationDate (D:20260102030405Z) >>" % info_title.encode())
    encrypt_ref = b""
    if encrypt:  # a standard security handler whose user password is not empty: PDFium must refuse it
        enc = add(b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -44 >>")
        encrypt_ref = b" /Encrypt %d 0 R" % enc
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
    out.write(
        b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R /ID [<00112233445566778899aabbccddeeff> "
        b"<00112233445566778899aabbccddeeff>]%s >>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, catalog, info, encrypt_ref, xref)
    )
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


def make_pptx() -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    prs.core_properties.title = "Q3 Review"
    slide = prs.slides.add_slide(prs.slide_layouts[1])
    slide.shapes.title.text = "Results"
    body = slide.placeholders[1].text_frame
    body.text = "Revenue grew 12%"
    body.add_paragraph().text = "Margin stable"
    slide.notes_slide.notes_text_frame.text = "Mention the new plant."
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
