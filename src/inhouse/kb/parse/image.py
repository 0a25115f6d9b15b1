"""Image files (PNG, JPEG, TIFF with all its pages, WebP, BMP, GIF's first frame): a scan, a photo or a screenshot of
a document, read by OCR (``kb/parse/ocr.py``). Each image (TIFF page) is a page, turned into blocks exactly as a
scanned PDF page is (``pdf.ocr_lines``, ``pdf.lines_to_blocks``: wrapped lines re-joined, taller rows headings).

The size is checked from the header before any pixel is decoded (``limits.max_image_pixels``), so a small file
that declares a huge canvas (a decompression bomb) is refused without allocating it.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from inhouse.errors import DocumentRejected
from inhouse.kb.document import ParsedDocument
from inhouse.kb.parse.blocks import guess_language, pick_title
from inhouse.kb.parse.pdf import Line, lines_to_blocks, ocr_lines, read_scan
from inhouse.kb.parse.safety import ParseLimits

if TYPE_CHECKING:
    from PIL import Image

    from inhouse.kb.parse.ocr import PageReader

# An attached image smaller than this (a signature logo, an icon) is not worth a second of OCR.
MIN_ATTACHMENT_PIXELS = 300 * 300
_MIMES = {"PNG": "image/png", "JPEG": "image/jpeg", "TIFF": "image/tiff", "WEBP": "image/webp", "BMP": "image/bmp",
          "GIF": "image/gif", "MPO": "image/jpeg"}


def parse(data: bytes, filename: str, limits: ParseLimits, ocr: PageReader | None, *, attachment: bool = False,
          on_page: Callable[[int, int], None] | None = None) -> ParsedDocument:
    """``attachment``: the image came inside another file (an e-mail): a small one is a logo or an icon and is
    skipped unread."""
    if ocr is None:
        raise DocumentRejected(filename, "an image is read with OCR, which is off or not installed here (kb.ocr; "
                                         "`inhouse models pull ppocr-v5`)")
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # the size is checked below, against our own limit
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            image = PILImage.open(io.BytesIO(data))
    except PILImage.DecompressionBombError:
        raise DocumentRejected(filename, "the image declares far more pixels than any page (a decompression "
                                         "bomb?)") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DocumentRejected(filename, f"not an image that can be read ({exc})") from None
    fmt = image.format or "image"
    if attachment and image.width * image.height < MIN_ATTACHMENT_PIXELS:
        raise DocumentRejected(filename, f"a small picture ({image.width}×{image.height} pixels: a logo or an "
                                         "icon), not read")
    frames = getattr(image, "n_frames", 1) if fmt == "TIFF" else 1
    if frames > limits.max_ocr_pages:
        raise DocumentRejected(filename, f"the TIFF has {frames} pages, above the limit of {limits.max_ocr_pages} "
                                         "pages read with OCR (kb.ocr_max_pages)")
    pages: list[list[Line]] = []
    for index in range(frames):
        if frames > 1:
            image.seek(index)
        rows = read_scan(ocr, _decoded(image, filename, limits, index + 1), filename, "an image needs")
        pages.append(ocr_lines(rows, index + 1 if frames > 1 else None))
        if on_page is not None:
            on_page(index + 1, frames)
    texts = [line.text for page in pages for line in page if line.text]
    if not texts:
        raise DocumentRejected(filename, "OCR found no text in the image")
    out = lines_to_blocks(pages)
    return ParsedDocument(
        title=pick_title([], out.blocks, filename),
        blocks=tuple(out.blocks),
        language=guess_language("\n".join(texts)),
        filename=filename,
        mime=_MIMES.get(fmt, "image/" + fmt.lower()),
        metadata={"ocr": f"{ocr.name}: {frames} of {frames} pages" if frames > 1 else ocr.name},
        page_count=frames if frames > 1 else None,
    )


def _decoded(image: Image.Image, filename: str, limits: ParseLimits, page: int) -> Image.Image:
    width, height = image.size
    if width * height > limits.max_image_pixels:
        where = f"page {page} is" if page > 1 or getattr(image, "n_frames", 1) > 1 else "it is"
        raise DocumentRejected(filename, f"{where} {width}×{height} pixels, above the limit of "
                                         f"{limits.max_image_pixels / 1e6:.0f} megapixels")
    from PIL import ImageOps

    try:
        image.load()
        # A camera or phone stores the sensor's pixels and the way it was held in the EXIF Orientation tag.
        return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt pixel data
        raise DocumentRejected(filename, f"the image data is damaged ({exc})") from None
