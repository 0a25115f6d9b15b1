"""Text in images: scanned PDF pages, photos and screenshots of documents, read by PP-OCRv5 (``models/ocr.py``) on
ONNX Runtime (``engine/backends/ort/ocr.py``). Chinese and English, mixed in one line too.

The pipeline is ours (numpy, SciPy, Pillow; the model package's own code needs OpenCV and is never imported):

1. **Detect** text lines: the page, scaled so its longer side is at most ``det_max_side`` pixels (multiples of
   32), gives a per-pixel text probability (DB, "differentiable binarization"). Pixels above 0.3 form connected
   regions; a region whose mean probability is under 0.6 is noise (pictures, stamps). Each region's rectangle
   follows its principal axis (a line on a sheet fed in at an angle is a slanted band), and since DB is trained on
   text regions shrunk by a margin, it is grown back by ``area × 1.5 / perimeter`` (DB's "unclip").
2. **Recognize** each line: cut out of the full-resolution page straightened (an affine resampling of its
   rectangle), turned 90° when taller than 1.5× its width (vertical writing), levels stretched (JPEG noise made
   the recognizer drop simple characters), scaled to 48 pixels high, batched with lines of similar width, decoded
   by CTC (best path: repeats merged, blanks dropped). Lines whose mean character confidence is under
   ``min_confidence`` are dropped.
3. **Order**: lines whose vertical centres fall inside each other's span form one row, read left to right; rows
   top to bottom. Where a run of rows has a gutter, a gap no line crosses, with prose on both sides (long lines,
   not table cells), the run is read column by column: a two- or three-column page reads as its author wrote it,
   and a title or a footer across the columns stays where it is. Table cells that wrap over several lines come out
   interleaved: the words are all there for search. Each row carries two font-size signals for the parsers: the
   ink height of its lines and their width per character.

**Orientation.** A sheet scanned sideways or upside down is turned before it is read. Sideways: most of the
detected text runs up and down (boxes taller than wide, ``is_sideways``), so the page is turned a quarter clockwise
and detected again. Upside down: the recognizer, trained on upright lines, reads a turned line with low confidence
(0.3-0.4 against 0.97 on the corpus scans), so when the page's longest lines read under ``UPRIGHT_CONFIDENCE`` they
are read again turned half round, and the page is turned if that reads clearly better. An upright page costs
nothing extra (the whole page is read before the check: reading the widest lines first cost upright pages 12-18 %,
as that first batch runs on one core); a page turned anticlockwise costs one more detection, an upside-down page its
recognition once more (its widest lines, read turned for the check, are kept). (The package's 0°/180° line
classifier was tried and voted wrong on about half the lines of these pages.) A page of genuinely vertical writing
is taken for a sideways one and reads poorly either way: vertical Chinese is not supported.

Measured speed and accuracy, and why each step is there: docs/knowledge.md ("Scanned documents and images").
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from inhouse.hardware.cpu import return_free_heap

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

# Detection (PaddleOCR's DB defaults for PP-OCRv5).
_DET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_DET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
BINARY_THRESHOLD = 0.3
BOX_THRESHOLD = 0.6
UNCLIP_RATIO = 1.5
MIN_BOX_SIDE = 3  # pixels at detection scale
MAX_SKEW = math.radians(20)  # a line leaning more than this is not straightened (vertical text is turned instead)
# Recognition.
REC_HEIGHT = 48
REC_MAX_WIDTH = 3200  # a longer line is squeezed to this width (~60 characters of 48-pixel text)
REC_BATCH = 8
VERTICAL_RATIO = 1.5
# Orientation: the longest lines of a page that read at this mean confidence or better are taken as upright; else
# they are read turned half round, and the page is turned when that is better by the margin.
ORIENTATION_SAMPLE = 8
UPRIGHT_CONFIDENCE = 0.8
TURN_MARGIN = 0.15
# Lines of one row further apart than this (in ems, edge to edge of their boxes) are cells. The boxes carry DB's
# margin, so words of one line never come this far apart; the cells of the corpus tables measured 1.4-16 ems.
CELL_GAP_EM = 1.0
# Columns: a gutter is at least this many line heights wide (a line box is about 1.5 ems high), has text on each side
# in at least COLUMN_ROWS rows, and that text is prose: its pieces between gaps are, as a median, at least COLUMN_EMS
# long (a table's cells are shorter, and are read across as rows).
GUTTER_HEIGHTS = 0.8
COLUMN_ROWS = 3
COLUMN_EMS = 8.0
# A letter o read where a zero belongs: after two digits at the end of a word ("X20o"), or between digits ("1o5").
_DIGIT_O = re.compile(r"(?<=\d\d)[oO](?![A-Za-z])|(?<=\d)[oO](?=\d)")
_WIDE = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")


class TextGraphs(Protocol):
    """The two networks (``OrtOcrGraphs``; a fake in unit tests)."""

    def detect(self, image: np.ndarray) -> np.ndarray: ...

    def recognize(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]: ...


class PageReader(Protocol):
    """What the parsers need of OCR: a name for the document's metadata and a page image's rows of text
    (``OcrReader``; a fake in the parser tests)."""

    name: str

    def read(self, image: Image.Image) -> list[OcrRow]: ...


@dataclass(frozen=True)
class TextBox:
    """A text line's rectangle in page pixels, turned by ``angle`` (radians, from the x axis) about its centre:
    ``width`` runs along the line, ``height`` across it."""

    cx: float
    cy: float
    width: float
    height: float
    angle: float = 0.0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """The axis-aligned box around it: x0, y0, x1, y1."""
        c, s = abs(math.cos(self.angle)), abs(math.sin(self.angle))
        hw, hh = (self.width * c + self.height * s) / 2, (self.width * s + self.height * c) / 2
        return self.cx - hw, self.cy - hh, self.cx + hw, self.cy + hh

    def scaled(self, fx: float, fy: float) -> TextBox:
        """From detection pixels to image pixels (the two scales differ by the rounding to multiples of 32 only)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        return TextBox(self.cx * fx, self.cy * fy, self.width * math.hypot(c * fx, s * fy),
                       self.height * math.hypot(s * fx, c * fy), math.atan2(s * fy, c * fx))

    def half_turned(self, width: float, height: float) -> TextBox:
        """The same box on its ``width`` × ``height`` page turned half round (the angle of a line is unchanged)."""
        return TextBox(width - self.cx, height - self.cy, self.width, self.height, self.angle)


@dataclass(frozen=True)
class OcrLine:
    """One line of text found on a page."""

    text: str
    box: TextBox
    confidence: float
    ink: float  # the height of its ink (tallest glyph top to lowest bottom): a font-size proxy


@dataclass(frozen=True)
class OcrRow:
    """One row of a page: the lines side by side, joined (a table row, a heading, a line of prose)."""

    text: str
    height: float  # the median ink height of its lines, in page pixels
    em: float  # its width per character, in page pixels per em (see ``em_count``)
    confidence: float


class OcrReader:
    """Page image → rows of text. The model loads on first use (``load`` gives the graphs and the character
    list: class ``i`` of the recognizer is ``characters[i - 1]``, class 0 is the CTC blank). Thread-safe: pages of
    concurrent ingests are read one at a time (each already uses every core)."""

    def __init__(self, load: Callable[[], tuple[TextGraphs, Sequence[str]]], *, det_max_side: int = 1600,
                 min_confidence: float = 0.5, name: str = "ppocr-v5") -> None:
        self._load = load
        self._model: tuple[TextGraphs, Sequence[str]] | None = None
        self._lock = threading.Lock()
        self.det_max_side = det_max_side
        self.min_confidence = min_confidence
        self.name = name

    def _loaded(self) -> tuple[TextGraphs, Sequence[str]]:
        if self._model is None:
            self._model = self._load()
        return self._model

    def read(self, image: Image.Image) -> list[OcrRow]:
        """The rows of text in ``image``, in reading order (see the module doc)."""
        from PIL import Image as PILImage

        rgb = image.convert("RGB")
        with self._lock:
            graphs, characters = self._loaded()
            boxes = detect_boxes(graphs, rgb, self.det_max_side)
            turned = 0
            if is_sideways(boxes):
                # Clockwise: text that ran bottom to top now runs left to right; text that ran top to bottom is
                # now upside down, and is found so below.
                rgb = rgb.transpose(PILImage.Transpose.ROTATE_270)
                boxes = detect_boxes(graphs, rgb, self.det_max_side)
                turned = 90
            if not boxes:
                return []
            crops = [line_image(rgb, box) for box in boxes]
            texts = recognize_lines(graphs, crops, characters)
            read_turned = upside_down_reading(graphs, crops, texts, characters)
            if read_turned is not None:
                w, h = rgb.size
                boxes = [box.half_turned(w, h) for box in boxes]
                crops = [crop.transpose(PILImage.Transpose.ROTATE_180) for crop in crops]
                rest = [i for i in range(len(crops)) if i not in read_turned]  # the sample is read turned already
                texts = [read_turned.get(i, ("", 0.0)) for i in range(len(crops))]
                for i, text in zip(rest, recognize_lines(graphs, [crops[i] for i in rest], characters), strict=True):
                    texts[i] = text
                turned += 180
            if turned:
                log.info("OCR: a page scanned turned %d° was turned upright", turned)
            lines = [OcrLine(digit_zeros(text), box, conf, ink_height(crop))
                     for box, crop, (text, conf) in zip(boxes, crops, texts, strict=True)
                     if text.strip() and conf >= self.min_confidence]
            del crops, rgb
            # What ONNX Runtime gives back after a page (engine/backends/ort/ocr.py) and the crops go to malloc's
            # per-thread arenas, not to the machine, unless handed back.
            return_free_heap()
        out = []
        for row in reading_order(lines):
            em = sum(ln.box.width for ln in row) / max(1.0, sum(em_count(ln.text) for ln in row))
            out.append(OcrRow(join_row(row, em), float(np.median([ln.ink for ln in row])), em,
                              min(ln.confidence for ln in row)))
        return out


def is_sideways(boxes: Sequence[TextBox]) -> bool:
    """Whether most of a page's text runs up and down: the length of its boxes taller than 1.5× their width is more
    than twice that of the boxes wider than 1.5× their height (single characters, square, count for neither). A page
    with a few vertical labels beside its lines is not sideways."""
    across = sum(b.width for b in boxes if b.width >= b.height * VERTICAL_RATIO)
    down = sum(b.height for b in boxes if b.height >= b.width * VERTICAL_RATIO)
    return down > 2 * across


def upside_down_reading(graphs: TextGraphs, crops: Sequence[Image.Image], texts: Sequence[tuple[str, float]],
                        characters: Sequence[str]) -> dict[int, tuple[str, float]] | None:
    """If a page's lines (``crops``, read as ``texts``) are upside down, the reading of its sample turned half round
    (crop index → text and confidence), else None. Upside down: its ``ORIENTATION_SAMPLE`` widest lines read under
    ``UPRIGHT_CONFIDENCE``, and turned half round they read better by ``TURN_MARGIN``."""
    from PIL import Image as PILImage

    sample = sorted(range(len(crops)), key=lambda i: -crops[i].width)[:ORIENTATION_SAMPLE]
    upright = float(np.mean([texts[i][1] for i in sample]))
    if upright >= UPRIGHT_CONFIDENCE:
        return None
    turned = recognize_lines(graphs, [crops[i].transpose(PILImage.Transpose.ROTATE_180) for i in sample], characters)
    if float(np.mean([conf for _text, conf in turned])) <= upright + TURN_MARGIN:
        return None
    return dict(zip(sample, turned, strict=True))


def detection_input(image: Image.Image, max_side: int) -> tuple[np.ndarray, float, float]:
    """The detector's input for an RGB image (BGR channel order, as the model was trained on OpenCV images) and
    the factors from detection pixels back to image pixels (x, y)."""
    from PIL import Image as PILImage

    w, h = image.size
    scale = min(1.0, max_side / max(w, h))
    dw, dh = (max(32, round(w * scale / 32) * 32), max(32, round(h * scale / 32) * 32))
    a = np.asarray(image.resize((dw, dh), PILImage.Resampling.BILINEAR), dtype=np.float32)[:, :, ::-1] / 255.0
    a = (a - _DET_MEAN) / _DET_STD
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32), w / dw, h / dh


def boxes_from_probability(prob: np.ndarray) -> list[TextBox]:
    """Text boxes (detection pixels) from DB's probability map: connected regions above the binary threshold, kept
    when their mean probability reaches the box threshold; each region's rectangle follows its principal axis
    (a line on a sheet fed in at an angle is a slanted band: its axis-aligned box would take in the lines above
    and below) and is grown back by the unclip margin."""
    from scipy import ndimage

    labels, _n = ndimage.label(prob > BINARY_THRESHOLD)
    boxes = []
    for index, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        ys, xs = where
        if min(ys.stop - ys.start, xs.stop - xs.start) < MIN_BOX_SIDE:
            continue
        region = labels[where] == index
        if float(prob[where][region].mean()) < BOX_THRESHOLD:
            continue
        py, px = np.nonzero(region)
        box = _region_box(px.astype(np.float64) + xs.start, py.astype(np.float64) + ys.start)
        if min(box.width, box.height) < MIN_BOX_SIDE:
            continue
        d = box.width * box.height * UNCLIP_RATIO / (2 * (box.width + box.height))
        boxes.append(TextBox(box.cx, box.cy, box.width + 2 * d, box.height + 2 * d, box.angle))
    return boxes


def _region_box(x: np.ndarray, y: np.ndarray) -> TextBox:
    """The rectangle of a region's pixels along its principal axis; axis-aligned when the region is not clearly
    longer one way (a single character) or leans more than ``MAX_SKEW`` (vertical writing: read upright below)."""
    angle = 0.0
    if len(x) > 2:
        cxx, cyy, cxy = np.var(x), np.var(y), float(np.mean((x - x.mean()) * (y - y.mean())))
        theta = 0.5 * math.atan2(2 * cxy, cxx - cyy)
        spread = math.hypot(cxx - cyy, 2 * cxy)
        major, minor = (cxx + cyy + spread) / 2, (cxx + cyy - spread) / 2
        if abs(theta) <= MAX_SKEW and major > 4 * max(minor, 1e-9):
            angle = theta
    c, s = math.cos(angle), math.sin(angle)
    u, v = x * c + y * s, -x * s + y * c
    u0, u1, v0, v1 = u.min(), u.max() + 1, v.min(), v.max() + 1
    um, vm = (u0 + u1) / 2, (v0 + v1) / 2
    return TextBox(um * c - vm * s, um * s + vm * c, u1 - u0, v1 - v0, angle)


def detect_boxes(graphs: TextGraphs, image: Image.Image, max_side: int) -> list[TextBox]:
    """Text boxes in image pixels; boxes whose centre falls outside the image, or thinner than 2 pixels, dropped."""
    x, fx, fy = detection_input(image, max_side)
    w, h = image.size
    out = []
    for box in boxes_from_probability(graphs.detect(x)):
        b = box.scaled(fx, fy)
        if 0 <= b.cx <= w and 0 <= b.cy <= h and b.width >= 2 and b.height >= 2:
            out.append(b)
    return out


def line_image(image: Image.Image, box: TextBox) -> Image.Image:
    """The crop of one line, straightened (an affine resampling of the turned rectangle; outside the page is
    white), and turned upright when it is a vertical line (taller than 1.5× its width)."""
    from PIL import Image as PILImage

    w, h = max(1, round(box.width)), max(1, round(box.height))
    c, s = math.cos(box.angle), math.sin(box.angle)
    # Output pixel (X, Y) reads input (a X + b Y + c0, d X + e Y + f0): the rectangle's frame in the page.
    coeffs = (c, -s, box.cx - c * w / 2 + s * h / 2, s, c, box.cy - s * w / 2 - c * h / 2)
    crop = image.transform((w, h), PILImage.Transform.AFFINE, coeffs, resample=PILImage.Resampling.BILINEAR,
                           fillcolor=(255, 255, 255))
    if crop.height >= crop.width * VERTICAL_RATIO:
        crop = crop.transpose(PILImage.Transpose.ROTATE_90)
    return crop


def em_count(text: str) -> float:
    """How many ems ``text`` takes in an ordinary font: a Chinese character (or full-width sign) 1, any other
    character about 0.52, a space 0.28. The width of a line ÷ this is its font size, give or take the letters: the
    font-size signal that does not depend on descenders (a heading without ``g``/``p``/``y`` has little more ink
    height than body text, but half again its width per character). Noisy on a few characters."""
    wide = len(_WIDE.findall(text))
    spaces = text.count(" ")
    return wide + 0.52 * (len(text) - wide - spaces) + 0.28 * spaces


def ink_height(crop: Image.Image) -> float:
    """Pixel rows of a straightened line crop that hold ink (darker than halfway between the crop's background and
    its darkest pixel), first to last. Why not the box height: the detector's box grows with the line's length
    (the unclip margin is area / perimeter) and with Latin ascenders and descenders, so a short heading could come
    out no taller than a long body line; the ink of a 16-point heading is 1.5× that of 11-point text either way."""
    gray = np.asarray(crop.convert("L"), dtype=np.float32)
    lo, hi = float(np.percentile(gray, 1)), float(np.median(gray))
    if hi - lo < 8:
        return float(gray.shape[0])
    rows = np.nonzero((gray < (lo + hi) / 2).any(axis=1))[0]
    return float(rows[-1] - rows[0] + 1) if rows.size else float(gray.shape[0])


def recognition_batches(crops: Sequence[Image.Image]) -> list[tuple[list[int], np.ndarray]]:
    """Crops scaled to 48 pixels high (BGR, [-1, 1]), grouped by width into zero-padded batches: (indices, batch)."""
    from PIL import Image as PILImage

    widths = [min(REC_MAX_WIDTH, max(REC_HEIGHT // 4, math.ceil(REC_HEIGHT * c.width / max(1, c.height))))
              for c in crops]
    order = sorted(range(len(crops)), key=lambda i: widths[i])
    out = []
    for start in range(0, len(order), REC_BATCH):
        idx = order[start:start + REC_BATCH]
        batch = np.zeros((len(idx), 3, REC_HEIGHT, max(widths[i] for i in idx)), dtype=np.float32)
        for row, i in enumerate(idx):
            a = np.asarray(crops[i].resize((widths[i], REC_HEIGHT), PILImage.Resampling.BILINEAR),
                           dtype=np.float32)[:, :, ::-1]
            batch[row, :, :, :widths[i]] = (stretch_levels(a) / 127.5 - 1.0).transpose(2, 0, 1)
        out.append((idx, batch))
    return out


def stretch_levels(a: np.ndarray) -> np.ndarray:
    """A line crop with its background made white and its darkest ink black: the crop's median brightness (the
    background, which covers most of a line box) and everything lighter → 255, its 1st percentile → 0, linear
    between. Why: JPEG noise around the strokes (most scans are JPEG inside the PDF) made the recognizer drop the
    simplest characters (一, 工, 日, 人: 8 % of the characters of a 150-dpi JPEG scan of the corpus handbook);
    stretched, the same crops read as the clean rendering does."""
    gray = a.mean(axis=2)
    lo, hi = float(np.percentile(gray, 1)), float(np.percentile(gray, 40))
    if hi - lo < 8:  # a flat crop: nothing to stretch
        return a
    return np.clip((a - lo) * (255.0 / (hi - lo)), 0.0, 255.0)


def ctc_decode(scores: np.ndarray, characters: Sequence[str]) -> tuple[str, float]:
    """Best-path CTC: the most likely class per step, repeats merged, blanks (class 0) dropped; the confidence is
    the mean probability of the characters kept (0 when none). The last class, one past ``characters``, is a
    space."""
    best = scores.argmax(axis=1)
    probs = scores.max(axis=1)
    keep = best != 0
    keep[1:] &= best[1:] != best[:-1]
    chars = [characters[c - 1] if c - 1 < len(characters) else " " for c in best[keep]]
    return "".join(chars).strip(), float(probs[keep].mean()) if keep.any() else 0.0


def recognize_lines(graphs: TextGraphs, crops: Sequence[Image.Image],
                    characters: Sequence[str]) -> list[tuple[str, float]]:
    planned = recognition_batches(crops)
    results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
    for (idx, _batch), scores in zip(planned, graphs.recognize([b for _i, b in planned]), strict=True):
        for row, i in enumerate(idx):
            results[i] = ctc_decode(scores[row], characters)
    return results


def reading_order(lines: Sequence[OcrLine]) -> list[list[OcrLine]]:
    """Rows top to bottom, each left to right, with runs of rows in columns read column by column (``in_columns``).
    Heights are measured across the page's slant (the median angle of its lines), so on a sheet fed in at an angle a
    short heading at the left is not taken into the row of the long line below it: a line joins the current row when
    its centre lies within half the height of the row's first line, or that line's centre within half its own."""
    if not lines:
        return []
    tan = math.tan(float(np.median([ln.box.angle for ln in lines])))

    def level(ln: OcrLine) -> float:  # the centre's height where the slanted row meets the page's left edge
        return ln.box.cy - ln.box.cx * tan

    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=level):
        if rows:
            first = rows[-1][0]
            gap = abs(level(line) - level(first))
            if gap <= first.box.height / 2 or gap <= line.box.height / 2:
                rows[-1].append(line)
                continue
        rows.append([line])
    rows = [sorted(row, key=lambda ln: ln.box.cx) for row in rows]
    return in_columns(rows, tan, GUTTER_HEIGHTS * float(np.median([ln.box.height for ln in lines])))


def in_columns(rows: list[list[OcrLine]], tan: float, min_gap: float) -> list[list[OcrLine]]:
    """``rows`` with each run of rows that stands in columns read column by column: the run's rows left of its
    gutter, then those right of it (each side split again: three columns). Positions along the rows are measured
    across the page's slant (``tan``), as the gutter of a sheet fed in at an angle leans with it."""
    out: list[list[OcrLine]] = []
    i = 0
    while i < len(rows):
        found = _column_run(rows, i, tan, min_gap)
        if found is None:
            out.append(rows[i])
            i += 1
            continue
        end, cut = found
        halves = [_split(row, tan, cut) for row in rows[i:end]]
        for side in (0, 1):
            out += in_columns([half[side] for half in halves if half[side]], tan, min_gap)
        i = end
    return out


def _span(line: OcrLine, tan: float) -> tuple[float, float]:
    """Where a line starts and ends along its row, measured across the page's slant."""
    u = line.box.cx + line.box.cy * tan
    return u - line.box.width / 2, u + line.box.width / 2


def _split(row: list[OcrLine], tan: float, cut: float) -> tuple[list[OcrLine], list[OcrLine]]:
    """A row's lines left and right of a gutter's middle (no line of a run in columns crosses its gutter)."""
    return ([ln for ln in row if sum(_span(ln, tan)) / 2 < cut], [ln for ln in row if sum(_span(ln, tan)) / 2 >= cut])


def _column_run(rows: list[list[OcrLine]], start: int, tan: float, min_gap: float) -> tuple[int, float] | None:
    """The run of rows in columns that starts at row ``start``, as (the row after it, the gutter's middle), or None.
    Each gap of at least ``min_gap`` in the first row is a candidate gutter; it is followed down the rows, narrowed by
    the lines that reach into it, until a line crosses it or it is narrower than ``min_gap``. A gap between two short
    pieces of text (table cells) is not followed: a column's first row has prose on at least one side, and without
    this the order of a dense table took seconds (3,000 cells: 6 s; now 6 ms)."""
    row = rows[start]
    spans = [_span(ln, tan) for ln in row]
    gaps = [k for k in range(1, len(row)) if spans[k][0] - spans[k - 1][1] >= min_gap]
    bounds = [0, *gaps, len(row)]
    ems = [sum(em_count(ln.text) for ln in row[i:j]) for i, j in itertools.pairwise(bounds)]
    for n, k in enumerate(gaps):
        if max(ems[n], ems[n + 1]) < COLUMN_EMS:
            continue
        a, b = spans[k - 1][1], spans[k][0]
        lo, hi, end = a, b, start + 1
        while end < len(rows):
            nlo, nhi = lo, hi
            for x0, x1 in (_span(ln, tan) for ln in rows[end]):
                if x1 <= nlo or x0 >= nhi:
                    continue
                if x0 <= nlo < x1 < nhi:
                    nlo = x1
                elif nlo < x0 < nhi <= x1:
                    nhi = x0
                else:  # across the gutter, or inside it
                    nhi = nlo
            if nhi - nlo < min_gap:
                break
            lo, hi, end = nlo, nhi, end + 1
        cut = (lo + hi) / 2
        if _is_columns(rows[start:end], tan, cut, min_gap):
            return end, cut
    return None


def _is_columns(rows: list[list[OcrLine]], tan: float, cut: float, min_gap: float) -> bool:
    """Whether rows split at ``cut`` are columns of prose: each side has text in at least ``COLUMN_ROWS`` rows (the
    two sides' rows need not line up: a heading or a paragraph break shifts one), and on each side the pieces of text
    between gaps of ``min_gap`` are, as a median, ``COLUMN_EMS`` long."""
    pieces: tuple[list[float], list[float]] = ([], [])
    for row in rows:
        for side, out in zip(_split(row, tan, cut), pieces, strict=True):
            length = 0.0
            for k, ln in enumerate(side):
                if k and _span(ln, tan)[0] - _span(side[k - 1], tan)[1] >= min_gap:
                    out.append(length)
                    length = 0.0
                length += em_count(ln.text)
            if side:
                out.append(length)
    return all(len(p) >= COLUMN_ROWS and float(np.median(p)) >= COLUMN_EMS for p in pieces)


def digit_zeros(text: str) -> str:
    """The recognizer's one confusion seen on the corpus scans that changes a fact: a part number's last zero read
    as the letter o ("X20o" for X200, in a 16-point title; the coverage check then took a question about the X900
    for one the manual answers). Only inside numbers: after two digits at a word's end, or between digits."""
    return _DIGIT_O.sub("0", text)


def join_row(row: Sequence[OcrLine], em: float) -> str:
    """The lines of one row joined: across a gap wider than ``CELL_GAP_EM`` ems (``em``: the row's pixels per em)
    as cells (`` | ``, as the parsers write table rows: a table, a form's label and value), else without a space
    between two Chinese characters (or Chinese punctuation) and with one otherwise."""
    out = ""
    prev: OcrLine | None = None
    for line in row:
        part = line.text
        if prev is not None:
            gap = (line.box.cx - line.box.width / 2) - (prev.box.cx + prev.box.width / 2)
            if gap > CELL_GAP_EM * em:
                out += " | "
            elif not (_is_han(out[-1]) and _is_han(part[0])):
                out += " "
        out += part
        prev = line
    return out


def _is_han(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or ch in "，。；：！？、（）《》“”"


def load_characters(text: str) -> list[str]:
    """The recognizer's character list from its dictionary file (one character per line)."""
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
