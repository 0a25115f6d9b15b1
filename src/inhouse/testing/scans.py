"""Scanned copies of documents, for the OCR tests and ``benchmarks/ocr.py``: text typeset onto A4 page images
(Pillow, a CJK font), then degraded the way an office scanner does it (grayscale, a lower resolution, JPEG inside
an image-only PDF). The text is known exactly, so what OCR reads can be scored against it.

A PDF with a text layer can also be scanned as it is: its pages are rasterised by PDFium (``scan_pdf``).
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

A4_MM = (210.0, 297.0)
MARGIN_MM = 20.0


@dataclass(frozen=True)
class Scanner:
    """How a page is scanned: resolution, colour, and the JPEG quality of the image stored in the PDF (None: PNG,
    lossless)."""

    dpi: int = 150
    jpeg_quality: int | None = 75
    grayscale: bool = True
    skew_deg: float = 0.0  # the sheet fed in at an angle
    noise: float = 0.0  # standard deviation of sensor noise, in grey levels (0-255)
    faded: bool = False  # a copy of a copy: grey paper (215), grey ink (70), slightly out of focus
    turn: int = 0  # the sheet fed in sideways (90, 270: degrees anticlockwise) or upside down (180)
    photo: bool = False  # a phone photo of the page on a desk: seen at an angle, lit unevenly, in warm light


def cjk_font_path() -> Path:
    """A font with Chinese and Latin glyphs (Debian's fonts-noto-cjk), found through fontconfig."""
    out = subprocess.run(["fc-match", "-f", "%{file}", "Noto Sans CJK SC"], capture_output=True, text=True,
                         timeout=30, check=False).stdout.strip()
    path = Path(out)
    if not out or "cjk" not in path.name.lower() or not path.is_file():
        raise FileNotFoundError("no CJK font: apt-get install fonts-noto-cjk")
    return path


def _px(mm: float, dpi: int) -> int:
    return round(mm / 25.4 * dpi)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Lines of at most ``width`` pixels: Latin text breaks at spaces, Chinese anywhere."""
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for token in _tokens(para):
            trial = line + token
            if line and draw.textlength(trial, font=font) > width:
                lines.append(line.rstrip())
                line = token.lstrip()
            else:
                line = trial
        lines.append(line.rstrip())
    return lines


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    word = ""
    for ch in text:
        if ord(ch) > 0x2E80:  # CJK: each character is a break opportunity
            if word:
                out.append(word)
                word = ""
            out.append(ch)
        elif ch == " ":
            out.append(word + " ")
            word = ""
        else:
            word += ch
    if word:
        out.append(word)
    return out


def typeset(blocks: Sequence[tuple[str, str]], *, dpi: int = 200, font_path: Path | None = None,
            body_pt: float = 11.0, columns: int = 1, gutter_mm: float = 8.0) -> list[Image.Image]:
    """``(kind, text)`` blocks (``heading``, ``title`` or anything else) set on white A4 pages at ``dpi``: headings
    and titles at 1.5× the body size, a blank line after each block. With ``columns`` > 1 the text flows down each
    column in turn, ``gutter_mm`` apart; a ``title`` spans the columns (set it first on its page)."""
    font_file = str(font_path or cjk_font_path())
    body = ImageFont.truetype(font_file, round(body_pt / 72 * dpi))
    head = ImageFont.truetype(font_file, round(body_pt * 1.5 / 72 * dpi))
    w, h = _px(A4_MM[0], dpi), _px(A4_MM[1], dpi)
    margin, gutter = _px(MARGIN_MM, dpi), _px(gutter_mm, dpi)
    column_width = (w - 2 * margin - gutter * (columns - 1)) // columns
    pages: list[Image.Image] = []
    page = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(page)
    y = top = margin
    column = 0
    for kind, text in blocks:
        font = body if kind not in ("heading", "title") else head
        step = round(font.size * 1.45)
        across = kind == "title"
        for line in _wrap(draw, text, font, w - 2 * margin if across else column_width):
            if y + step > h - margin:
                if column + 1 < columns and not across:
                    column, y = column + 1, top
                else:
                    pages.append(page)
                    page = Image.new("L", (w, h), 255)
                    draw = ImageDraw.Draw(page)
                    y = top = margin
                    column = 0
            draw.text((margin if across else margin + column * (column_width + gutter), y), line, font=font, fill=0)
            y += step
        y += round(body.size * 0.8)
        if across:
            top = y
    pages.append(page)
    return pages


def scan(page: Image.Image, scanner: Scanner, *, from_dpi: int) -> Image.Image:
    """``page`` (rendered at ``from_dpi``) at the scanner's resolution and colour (its JPEG encoder runs when the
    scan is stored: ``image_pdf``, ``image_file``)."""
    k = scanner.dpi / from_dpi
    img = page.convert("L" if scanner.grayscale else "RGB")
    if scanner.skew_deg:
        img = img.rotate(scanner.skew_deg, resample=Image.Resampling.BICUBIC, expand=False, fillcolor="white")
    if scanner.turn:
        img = img.rotate(scanner.turn, expand=True)
    if scanner.photo:
        img = _photographed(img.convert("RGB"))
    if scanner.faded:
        img = img.filter(ImageFilter.GaussianBlur(1.5 * from_dpi / 300)).point(lambda v: 70 + v * 145 // 255)
    if k != 1:
        img = img.resize((max(1, round(img.width * k)), max(1, round(img.height * k))), Image.Resampling.LANCZOS)
    if scanner.noise:
        import numpy as np

        a = np.asarray(img, dtype=np.float64)
        a = a + np.random.default_rng(0).normal(0.0, scanner.noise, a.shape)
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), img.mode)
    return img


def _photographed(page: Image.Image) -> Image.Image:
    """``page`` as a phone sees it on a desk: the camera tilted towards the top (the top edge 12 % narrower than the
    bottom, the page 2° off square), on a grey-brown desk showing around it, lit from the top left (the bottom right
    corner at 55 % of the light), in warm light (blue at 85 %), slightly out of focus."""
    import numpy as np

    w, h = page.size
    out_w, out_h = round(w * 1.12), round(h * 1.08)
    t = np.radians(2.0)
    # Where the page's corners land in the photo: top-left, top-right, bottom-right, bottom-left.
    corners = [(0.11 * w, 0.05 * h), (1.01 * w, 0.04 * h), (1.07 * w, 1.03 * h), (0.05 * w, 1.04 * h)]
    cx, cy = out_w / 2, out_h / 2
    landed = [(cx + (x - cx) * np.cos(t) - (y - cy) * np.sin(t), cy + (x - cx) * np.sin(t) + (y - cy) * np.cos(t))
              for x, y in corners]
    source = [(0, 0), (w, 0), (w, h), (0, h)]
    # The perspective coefficients map a photo pixel back to the page: solve the eight unknowns from the corners.
    rows, rhs = [], []
    for (X, Y), (x, y) in zip(landed, source, strict=True):
        rows += [[X, Y, 1, 0, 0, 0, -x * X, -x * Y], [0, 0, 0, X, Y, 1, -y * X, -y * Y]]
        rhs += [x, y]
    coeffs = tuple(float(c) for c in np.linalg.solve(np.array(rows), np.array(rhs)))
    photo = page.transform((out_w, out_h), Image.Transform.PERSPECTIVE, coeffs, resample=Image.Resampling.BICUBIC,
                           fillcolor=(120, 105, 90))
    yy, xx = np.mgrid[0:out_h, 0:out_w]
    light = 1.0 - 0.45 * (xx / out_w + yy / out_h) / 2
    a = np.asarray(photo, dtype=np.float64) * light[:, :, None] * np.array([1.0, 0.95, 0.85])
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB").filter(ImageFilter.GaussianBlur(0.8))


def image_pdf(pages: Sequence[Image.Image], scanner: Scanner) -> bytes:
    """An image-only PDF of ``pages`` (no text layer), as a scanner writes it: each page one JPEG (at quality 95
    for a scanner without JPEG settings: Pillow stores grayscale and colour PDF pages as JPEG)."""
    buf = io.BytesIO()
    first, *rest = [p.convert("L" if scanner.grayscale else "RGB") for p in pages]
    first.save(buf, "PDF", resolution=float(scanner.dpi), save_all=True, append_images=rest,
               quality=scanner.jpeg_quality or 95)
    return buf.getvalue()


def image_file(page: Image.Image, scanner: Scanner) -> bytes:
    """One scanned page as an image file: JPEG, or PNG for a scanner without JPEG settings."""
    buf = io.BytesIO()
    if scanner.jpeg_quality:
        page.save(buf, "JPEG", quality=scanner.jpeg_quality)
    else:
        page.save(buf, "PNG")
    return buf.getvalue()


def scan_pdf(data: bytes, scanner: Scanner) -> tuple[bytes, list[str]]:
    """A PDF with a text layer scanned page by page: the image-only PDF and each page's true text."""
    from inhouse.kb.parse.pdf import render_pages

    render_dpi = 300
    pages = render_pages(data, render_dpi)
    return image_pdf([scan(img, scanner, from_dpi=render_dpi) for img, _text in pages], scanner), [t for _i, t in pages]
