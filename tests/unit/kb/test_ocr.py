"""The OCR pipeline's own logic (kb/parse/ocr.py) without the model: boxes from a probability map, straightened
crops, CTC decoding, level stretching, reading order, and the reader end to end over fake graphs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inhouse.kb.parse.ocr import (
    OcrLine,
    OcrReader,
    TextBox,
    boxes_from_probability,
    ctc_decode,
    digit_zeros,
    is_sideways,
    join_row,
    line_image,
    load_characters,
    reading_order,
    recognition_batches,
    stretch_levels,
)


def test_regions_above_threshold_become_boxes_grown_by_the_unclip_margin() -> None:
    prob = np.zeros((100, 200), dtype=np.float32)
    prob[10:20, 20:120] = 0.9  # a text line
    prob[50:60, 30:90] = 0.4  # above the binary threshold, under the box threshold: noise
    prob[80:82, 10:50] = 0.9  # thinner than 3 pixels
    boxes = boxes_from_probability(prob)
    assert len(boxes) == 1
    b = boxes[0]
    d = 100 * 10 * 1.5 / (2 * 110)  # DB's unclip of a 100 x 10 region
    assert b.angle == 0.0
    assert (b.cx, b.cy) == pytest.approx((70, 15))
    assert (b.width, b.height) == pytest.approx((100 + 2 * d, 10 + 2 * d))


def test_a_slanted_line_gets_a_turned_box_that_does_not_take_in_its_neighbours() -> None:
    prob = np.zeros((200, 400), dtype=np.float32)
    slope = math.tan(math.radians(3))
    for x in range(20, 380):
        y = 100 + (x - 200) * slope  # 3 degrees down to the right (y grows downwards)
        prob[int(y) - 4:int(y) + 5, x] = 0.9
    (b,) = boxes_from_probability(prob)
    assert math.degrees(b.angle) == pytest.approx(3, abs=0.3)
    margin = 360 * 9 * 1.5 / (2 * 369)  # the unclip of a 360 x 9 band, on each side
    assert b.height < 12 + 2 * margin  # the band's thickness (9 pixels, 11 with the staircase) and the margins
    # The axis-aligned box of the same band is 360 * tan 3° ≈ 19 pixels higher: the lines above and below.
    assert b.bounds[3] - b.bounds[1] > b.height + 15


def test_a_square_region_stays_axis_aligned() -> None:
    prob = np.zeros((60, 60), dtype=np.float32)
    prob[10:40, 10:40] = 0.9
    (b,) = boxes_from_probability(prob)
    assert b.angle == 0.0


def test_line_image_straightens_a_turned_box() -> None:
    page = Image.new("RGB", (400, 200), "white")
    bar = Image.new("L", (300, 20), 0)
    mask = bar.rotate(-5, expand=True, fillcolor=0)  # the canvas of a bar turned 5° clockwise on screen
    page.paste(Image.new("RGB", mask.size, "black"), (50, 60), Image.new("L", (300, 20), 255).rotate(
        -5, expand=True, fillcolor=0))
    centre = (50 + mask.width / 2, 60 + mask.height / 2)
    crop = line_image(page, TextBox(centre[0], centre[1], 280, 16, math.radians(5)))
    a = np.asarray(crop.convert("L"), dtype=np.float32)
    assert crop.size == (280, 16)
    assert a.mean() < 60  # the straightened crop is (almost) all bar, not white page


def test_vertical_lines_are_turned_upright() -> None:
    crop = line_image(Image.new("RGB", (100, 300), "white"), TextBox(50, 150, 20, 200))
    assert crop.size == (200, 20)


def test_ctc_merges_repeats_drops_blanks_and_maps_the_last_class_to_a_space() -> None:
    chars = ["a", "b", "c"]
    steps = [0, 1, 1, 0, 1, 2, 4, 3, 3]  # blank a a blank a b space c c
    scores = np.full((len(steps), 5), 0.01, dtype=np.float32)
    for t, c in enumerate(steps):
        scores[t, c] = 0.9
    text, conf = ctc_decode(scores, chars)
    assert text == "aab c"
    assert conf == pytest.approx(0.9)
    assert ctc_decode(np.eye(5, dtype=np.float32)[[0, 0]], chars) == ("", 0.0)


def test_stretch_levels_whitens_jpeg_grey_and_leaves_a_flat_crop_alone() -> None:
    a = np.full((48, 100, 3), 235.0, dtype=np.float32)  # a JPEG's grey background
    a[20:28, 10:90] = 30.0  # ink
    out = stretch_levels(a)
    assert out[0, 0, 0] == 255.0 and out[24, 50, 0] == 0.0
    flat = np.full((48, 100, 3), 200.0, dtype=np.float32)
    assert stretch_levels(flat) is flat


def test_recognition_batches_group_similar_widths_and_pad() -> None:
    crops = [Image.new("RGB", (w, 24), "white") for w in (240, 24, 48, 480, 50)]
    batches = recognition_batches(crops)
    assert sorted(i for idx, _b in batches for i in idx) == [0, 1, 2, 3, 4]
    (idx, batch), = batches  # five crops: one batch, ordered by width
    assert idx == [1, 2, 4, 0, 3]
    assert batch.shape == (5, 3, 48, 960) and batch.dtype == np.float32


def _line(text: str, x0: float, y0: float, x1: float, y1: float) -> OcrLine:
    return OcrLine(text, TextBox((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), 0.9, y1 - y0)


def test_reading_order_makes_rows_left_to_right_top_to_bottom() -> None:
    lines = [_line("right", 300, 10, 400, 30), _line("below", 10, 50, 100, 70), _line("left", 10, 12, 100, 28),
             _line("second", 120, 8, 250, 32)]
    rows = reading_order(lines)
    assert [[ln.text for ln in row] for row in rows] == [["left", "second", "right"], ["below"]]


def test_join_row_spaces_latin_pieces_not_chinese_ones_and_separates_cells() -> None:
    def row(*parts: tuple[str, float, float]) -> list[OcrLine]:
        return [_line(text, x0, 10, x1, 30) for text, x0, x1 in parts]

    assert join_row(row(("Code", 0, 80), ("E01", 85, 145)), 20) == "Code E01"
    assert join_row(row(("工作", 0, 40), ("时间", 42, 82)), 20) == "工作时间"
    assert join_row(row(("版本", 0, 40), ("v2", 45, 75)), 20) == "版本 v2"
    # 20 pixels an em: a 200-pixel gap is a table's next cell.
    assert join_row(row(("Input voltage", 0, 140), ("24 V DC", 340, 420)), 20) == "Input voltage | 24 V DC"


def test_digit_zeros_fix_part_numbers_only() -> None:
    assert digit_zeros("X20o Motor Controller") == "X200 Motor Controller"
    assert digit_zeros("1o5 units, 20O.") == "105 units, 200."
    for kept in ("H2O", "20oz of water", "Room 2 or 3", "Go to 10 offices", "3D"):
        assert digit_zeros(kept) == kept


def test_load_characters_reads_one_per_line() -> None:
    assert load_characters("a\nb\n　\n") == ["a", "b", "　"]


class BarGraphs:
    """Fake graphs: the detector sees dark pixels as text; the recognizer reads each line crop as one character
    per 48 x 48 square of its (straightened, 48-pixel-high) image, ``characters[k]`` for the k-th line it is given
    in a batch, so every line of the page comes back in reading order as a distinct string."""

    def __init__(self, confidence: float = 0.95) -> None:
        self.confidence = confidence
        self.calls = 0

    def detect(self, image: np.ndarray) -> np.ndarray:
        gray = image[0].mean(axis=0)
        return np.where(gray < -1.0, 0.95, 0.0).astype(np.float32)

    def recognize(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        for batch in batches:
            n, _c, _h, w = batch.shape
            scores = np.full((n, w // 8, 4), 0.0, dtype=np.float32)
            scores[:, :, 0] = 1.0 - self.confidence
            for row in range(n):
                used = int((batch[row, 0].max(axis=0) > -0.999).sum()) // 8
                scores[row, 0, 0] = 0.0
                scores[row, 0, 1 + (self.calls % 3)] = self.confidence
                scores[row, 1:max(2, used), 0] = 1.0
                self.calls += 1
            out.append(scores)
        return out


def _page_with_bars(bars: Sequence[tuple[int, int, int, int]]) -> Image.Image:
    page = Image.new("RGB", (600, 400), "white")
    draw = ImageDraw.Draw(page)
    for box in bars:
        draw.rectangle(box, fill="black")
    return page


def test_reader_finds_each_line_once_in_reading_order() -> None:
    graphs = BarGraphs()
    reader = OcrReader(lambda: (graphs, ["x", "y", "z"]))
    rows = reader.read(_page_with_bars([(40, 40, 300, 60), (40, 120, 200, 140), (320, 122, 500, 138)]))
    assert len(rows) == 2
    assert len(rows[0].text) == 1 and len(rows[1].text.split(" ")) == 2  # the second row holds two lines
    assert rows[0].height == pytest.approx(rows[1].height, rel=0.4)


def test_reader_drops_lines_under_the_confidence_floor_and_loads_once() -> None:
    loads = []

    def load() -> tuple[BarGraphs, list[str]]:
        loads.append(1)
        return BarGraphs(confidence=0.3), ["x", "y", "z"]

    reader = OcrReader(load)
    assert reader.read(_page_with_bars([(40, 40, 300, 60)])) == []
    assert reader.read(Image.new("RGB", (100, 100), "white")) == []
    assert loads == [1]


def test_reading_order_measures_rows_across_the_slant_of_the_page() -> None:
    t = math.tan(math.radians(3))
    slanted = math.radians(3)

    def at(text: str, x0: float, x1: float, y_left: float, h: float) -> OcrLine:
        cx = (x0 + x1) / 2
        return OcrLine(text, TextBox(cx, y_left + cx * t, x1 - x0, h, slanted), 0.9, h)

    body1 = at("first body line", 100, 1100, 100, 30)
    heading = at("Heading", 100, 300, 150, 40)  # inside body1's axis-aligned box, not in its row
    body2 = at("second body line", 100, 1100, 200, 30)
    rows = reading_order([body2, heading, body1])
    assert [[ln.text for ln in row] for row in rows] == [["first body line"], ["Heading"], ["second body line"]]


class WedgeGraphs(BarGraphs):
    """Fake graphs that read only upright lines: each line is a wedge, thick at its start, and the recognizer is
    confident (0.95) when a crop has more ink in its left half than in its right, else not (0.35), as the real one
    is on upright and upside-down text. ``lines`` counts the lines recognized."""

    def __init__(self) -> None:
        super().__init__()
        self.lines = 0

    def recognize(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.lines += sum(b.shape[0] for b in batches)
        out = super().recognize(batches)
        for batch, scores in zip(batches, out, strict=True):
            for row in range(batch.shape[0]):
                ink = batch[row, 0] < 0.0
                used = int((batch[row, 0].max(axis=0) > -0.999).sum())
                left, right = ink[:, :used // 2].sum(), ink[:, used // 2:used].sum()
                scores[row, 0, 1:] = np.where(scores[row, 0, 1:] > 0, 0.95 if left > right else 0.35, 0.0)
        return out


def _page_with_wedges() -> Image.Image:
    page = Image.new("RGB", (600, 400), "white")
    draw = ImageDraw.Draw(page)
    for x0, y, length in ((40, 40, 300), (40, 120, 420), (40, 200, 360), (40, 280, 240)):
        draw.rectangle((x0, y, x0 + length // 3, y + 24), fill="black")
        draw.rectangle((x0 + length // 3, y + 6, x0 + length, y + 18), fill="black")
    return page


@pytest.mark.parametrize("turn", [0, 90, 180, 270])
def test_a_page_scanned_sideways_or_upside_down_is_turned_upright(turn: int) -> None:
    graphs = WedgeGraphs()
    rows = OcrReader(lambda: (graphs, ["x", "y", "z"])).read(_page_with_wedges().rotate(turn, expand=True))
    assert len(rows) == 4  # every line read upright (an upside-down line reads under the confidence floor)
    assert all(row.confidence == pytest.approx(0.95) for row in rows)
    assert graphs.lines == (4 if turn in (0, 90) else 8)  # upside down: read, then the widest 8 (here all) turned


def test_sideways_means_most_of_the_text_runs_up_and_down() -> None:
    across = [TextBox(100, 50, 400, 20), TextBox(100, 90, 300, 20)]
    labels = [TextBox(20, 200, 20, 150)]  # a vertical label beside the lines
    squares = [TextBox(300, 300, 30, 30)] * 40  # single characters count for neither way
    assert not is_sideways(across + labels + squares)
    assert is_sideways([TextBox(b.cy, b.cx, b.height, b.width) for b in across] + squares)
    assert not is_sideways([])


def test_half_turned_box_is_where_the_line_lands_on_the_turned_page() -> None:
    box = TextBox(100, 40, 200, 20, 0.05)
    assert box.half_turned(600, 400) == TextBox(500, 360, 200, 20, 0.05)


def _at(text: str, x0: float, x1: float, y: float, h: float = 30.0, tilt: float = 0.0) -> OcrLine:
    """A line from x0 to x1 at height y on a page turned by ``tilt`` degrees about its top left corner."""
    t = math.radians(tilt)
    cx, cy = (x0 + x1) / 2, y
    return OcrLine(text, TextBox(cx * math.cos(t) - cy * math.sin(t), cx * math.sin(t) + cy * math.cos(t),
                                 x1 - x0, h, t), 0.9, h)


def _texts(rows: list[list[OcrLine]]) -> list[str]:
    return [" / ".join(ln.text for ln in row) for row in rows]


@pytest.mark.parametrize("tilt", [0.0, 3.0])
def test_a_page_in_two_columns_is_read_column_by_column_between_its_title_and_footer(tilt: float) -> None:
    prose = "a line of prose that fills its column"
    lines = [_at("Title across the columns", 100, 1500, 50, 45, tilt)]
    for k in range(6):
        lines.append(_at(f"left {k} {prose}", 100, 760 if k != 5 else 400, 150 + 50 * k, tilt=tilt))
        if k < 4:  # the right column is shorter
            lines.append(_at(f"right {k} {prose}", 840, 1500, 150 + 50 * k, tilt=tilt))
    lines.append(_at("footer across the page, page 1 of 2, confidential", 100, 1500, 500, tilt=tilt))
    assert _texts(reading_order(lines)) == (["Title across the columns"] + [f"left {k} {prose}" for k in range(6)]
                                            + [f"right {k} {prose}" for k in range(4)]
                                            + ["footer across the page, page 1 of 2, confidential"])


def test_three_columns_are_read_one_after_another() -> None:
    prose = "short column prose line"
    lines = [_at(f"{c}{k} {prose}", 100 + 480 * c, 520 + 480 * c, 100 + 50 * k) for k in range(4) for c in range(3)]
    assert _texts(reading_order(lines)) == [f"{c}{k} {prose}" for c in range(3) for k in range(4)]


def test_a_table_stays_rows_and_so_does_a_page_without_a_gutter() -> None:
    table = [_at(cell, x0, x1, 100 + 50 * k)
             for k in range(5) for cell, x0, x1 in ((f"E0{k}", 100, 180), ("steady red", 300, 520),
                                                    (f"Firmware checksum error {k}", 640, 1100))]
    assert _texts(reading_order(table)) == [f"E0{k} / steady red / Firmware checksum error {k}" for k in range(5)]
    # Two long pieces per row, but a line across the gap every other row: one column of text, not two.
    prose = "a line of prose that is long enough"
    lines = [_at(f"{k} {prose}", 100, 700, 100 + 50 * k) for k in range(6)]
    lines += [_at(f"{k} more {prose}", 800, 1400, 100 + 50 * k) for k in range(0, 6, 2)]
    lines += [_at(f"{k} across {prose}", 100, 1400, 100 + 50 * k + 25) for k in range(1, 6, 2)]
    order = _texts(reading_order(lines))
    assert order[0] == f"0 {prose} / 0 more {prose}" and len(order) == 9
