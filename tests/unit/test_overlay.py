"""Overlay drawing on I420: colours after conversion to BGR, placement, scaling, clipping, and the all-off fast path."""

from __future__ import annotations

import re
from datetime import datetime

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vergence.pipeline.draw import Canvas, font_scale, parse_colour, rgb_to_yuv
from vergence.pipeline.overlay import OverlaySettings, RoiBox, TextItem, draw_overlays, format_timestamp

CAPTURE_NS = 1_795_000_000_123_456_789
GREY = 128


def grey_frame(width: int, height: int, luma: int = GREY) -> np.ndarray:
    image = np.full((height * 3 // 2, width), 128, np.uint8)
    image[:height] = luma
    return image


def to_bgr(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_YUV2BGR_I420).astype(np.int16)


def changed_box(before: np.ndarray, after: np.ndarray, height: int) -> tuple[int, int, int, int]:
    """Return (left, top, right, bottom), inclusive, of the luma pixels that differ."""
    rows, cols = np.nonzero(before[:height] != after[:height])
    assert rows.size, "nothing was drawn"
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


def assert_colour(bgr: np.ndarray, x: int, y: int, rgb: tuple[int, int, int], tolerance: int = 40) -> None:
    b, g, r = (int(c) for c in bgr[y, x])
    assert abs(r - rgb[0]) <= tolerance and abs(g - rgb[1]) <= tolerance and abs(b - rgb[2]) <= tolerance, (
        f"pixel ({x}, {y}) is RGB {(r, g, b)}, expected about {rgb}"
    )


@pytest.mark.parametrize(
    ("value", "rgb"),
    [
        ("red", (255, 0, 0)),
        ("Lime", (0, 255, 0)),
        (" grey ", (128, 128, 128)),
        ("gray", (128, 128, 128)),
        ("orange", (255, 165, 0)),
        ("#00ff00", (0, 255, 0)),
        ("#ABCDEF", (0xAB, 0xCD, 0xEF)),
        ("#0f8", (0x00, 0xFF, 0x88)),
    ],
)
def test_parse_colour_reads_names_and_hex(value: str, rgb: tuple[int, int, int]) -> None:
    assert parse_colour(value) == rgb


@pytest.mark.parametrize("value", ["blurple", "", "#12345", "#ggg", "00ff00", "rgb(1, 2, 3)", "#00ff00ff"])
def test_parse_colour_rejects_anything_else(value: str) -> None:
    message = f"unknown colour {value!r}: use a name (red, green, …) or #rrggbb"
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_colour(value)


def test_rgb_to_yuv_is_bt601_limited_range() -> None:
    assert rgb_to_yuv((255, 255, 255)) == (235, 128, 128)
    assert rgb_to_yuv((0, 0, 0)) == (16, 128, 128)
    assert rgb_to_yuv((255, 0, 0)) == (81, 90, 240)


def test_red_rectangle_is_red_on_its_edges_and_leaves_the_rest_grey() -> None:
    w, h = 320, 240
    image = grey_frame(w, h)
    x1, y1, x2, y2, thickness = 40, 30, 201, 151, 4
    Canvas(image, w, h).rectangle(x1, y1, x2, y2, (255, 0, 0), thickness)
    bgr = to_bgr(image)
    for x in range(x1, x2 + 1, 7):
        assert_colour(bgr, x, y1, (255, 0, 0))
        assert_colour(bgr, x, y2, (255, 0, 0))
    for y in range(y1, y2 + 1, 7):
        assert_colour(bgr, x1, y, (255, 0, 0))
        assert_colour(bgr, x2, y, (255, 0, 0))
    # Away from the strokes (half the thickness plus a chroma sample of slack), the picture is untouched grey.
    ys, xs = np.mgrid[0:h, 0:w]
    band = thickness // 2 + 2
    near_x = ((np.abs(xs - x1) <= band) | (np.abs(xs - x2) <= band)) & (ys >= y1 - band) & (ys <= y2 + band)
    near_y = ((np.abs(ys - y1) <= band) | (np.abs(ys - y2) <= band)) & (xs >= x1 - band) & (xs <= x2 + band)
    elsewhere = bgr[~(near_x | near_y)]
    grey_bgr = to_bgr(grey_frame(2, 2))[0, 0]
    assert np.abs(elsewhere - grey_bgr).max() == 0


def test_roi_box_is_drawn_in_its_colour_where_its_percentages_say() -> None:
    w, h = 640, 480
    image = grey_frame(w, h)
    roi = RoiBox("zone", 25, 25, 75, 75, "#00ff00")
    draw_overlays(image, w, h, OverlaySettings(), capture_ns=CAPTURE_NS, rois=[roi])
    bgr = to_bgr(image)
    left, top, right, bottom = 160, 120, 480, 360  # 25 % and 75 % of 640 x 480
    for x, y in ((320, top), (320, bottom), (left, 240), (right, 240), (right, bottom)):
        assert_colour(bgr, x, y, (0, 255, 0))
    b, g, r = (int(c) for c in to_bgr(grey_frame(2, 2))[0, 0])
    grey = (r, g, b)
    for x, y in ((320, top + 4), (320, top - 4), (320, bottom + 4), (left + 4, 240), (left - 4, 240), (320, 240)):
        assert_colour(bgr, x, y, grey, tolerance=0)


def test_roi_label_sits_above_the_box_in_its_colour() -> None:
    w, h = 640, 480
    image = grey_frame(w, h)
    draw_overlays(image, w, h, OverlaySettings(), capture_ns=CAPTURE_NS, rois=[RoiBox("zone", 25, 25, 75, 75, "red")])
    region = to_bgr(image)[90:118, 160:260]  # above the top edge at y = 120
    reddish = (region[..., 2] > 180) & (region[..., 1] < 80) & (region[..., 0] < 80)
    assert reddish.sum() > 20


def test_rois_are_not_drawn_when_switched_off() -> None:
    w, h = 320, 240
    image = grey_frame(w, h)
    draw_overlays(
        image, w, h, OverlaySettings(rois=False), capture_ns=CAPTURE_NS, rois=[RoiBox("a", 1, 1, 9, 9, "red")]
    )
    assert np.array_equal(image, grey_frame(w, h))


def test_timestamp_appears_in_the_bottom_left_corner() -> None:
    w, h = 1280, 720
    image = grey_frame(w, h)
    draw_overlays(image, w, h, OverlaySettings(timestamp=True), capture_ns=CAPTURE_NS)
    left, top, right, bottom = changed_box(grey_frame(w, h), image, h)
    assert left < 0.05 * w and right < 0.5 * w
    assert top > 0.85 * h and bottom < h
    assert (image[:h] != GREY).sum() > 1000


def test_format_timestamp_trims_microseconds_to_milliseconds() -> None:
    local = datetime.fromtimestamp(CAPTURE_NS // 1_000_000_000)
    assert format_timestamp(CAPTURE_NS, "%Y-%m-%d %H:%M:%S.%f") == local.strftime("%Y-%m-%d %H:%M:%S") + ".123"
    assert format_timestamp(CAPTURE_NS, "%H:%M %%f") == local.strftime("%H:%M") + " %f"


@pytest.mark.parametrize("background", [235, 16])
def test_outlined_text_is_readable_on_white_and_on_black(background: int) -> None:
    w, h = 640, 480
    image = grey_frame(w, h, background)
    left, top, right, bottom = Canvas(image, w, h).text("Readable 123", 40, 40, scale=font_scale(30))
    box = image[top:bottom, left:right].astype(int)
    assert box.size > 0
    bright, dark = (box > 200).mean(), (box < 50).mean()
    # White fill and a black outline both cover a real share of the box, whatever the background.
    assert bright > 0.05 and dark > 0.05, (bright, dark)
    # Text white on white must still be framed: the box holds more than background.
    assert 0.05 < (box != background).mean() < 0.95


def test_coloured_text_keeps_its_colour() -> None:
    w, h = 640, 480
    image = grey_frame(w, h)
    left, top, right, bottom = Canvas(image, w, h).text(
        "HHHH", 20, 20, scale=font_scale(40), colour_rgb=(255, 0, 0), outline_rgb=(0, 0, 0)
    )
    region = to_bgr(image)[top:bottom, left:right]
    reddish = (region[..., 2] > 180) & (region[..., 1] < 80) & (region[..., 0] < 80)
    assert reddish.sum() > 100


def test_text_scales_with_the_frame_height() -> None:
    heights = {}
    for w, h in ((1280, 720), (1920, 1080)):
        image = grey_frame(w, h)
        draw_overlays(image, w, h, OverlaySettings(timestamp=True), capture_ns=CAPTURE_NS)
        _, top, _, bottom = changed_box(grey_frame(w, h), image, h)
        heights[h] = bottom - top + 1
    assert heights[1080] / heights[720] == pytest.approx(1.5, rel=0.08)


def test_rec_is_drawn_only_while_recording() -> None:
    w, h = 640, 480
    on = OverlaySettings(rec=True)
    idle = grey_frame(w, h)
    draw_overlays(idle, w, h, on, capture_ns=CAPTURE_NS, recording=False)
    assert np.array_equal(idle, grey_frame(w, h))
    recording = grey_frame(w, h)
    draw_overlays(recording, w, h, on, capture_ns=CAPTURE_NS, recording=True)
    left, _, right, bottom = changed_box(idle, recording, h)
    assert left > w / 2 and bottom < h / 4  # top-right
    bgr = to_bgr(recording)
    red = (bgr[..., 2] > 180) & (bgr[..., 1] < 80) & (bgr[..., 0] < 80)
    assert red.sum() > 20  # the dot


def test_everything_off_leaves_the_image_unchanged() -> None:
    w, h = 320, 240
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (h * 3 // 2, w), dtype=np.uint8)
    before = image.copy()
    draw_overlays(image, w, h, OverlaySettings(), capture_ns=CAPTURE_NS, zoom=3.0, recording=True)
    assert np.array_equal(image, before)


def test_item_colours_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="unknown colour 'nope'"):
        RoiBox("a", 0, 0, 10, 10, "nope")
    with pytest.raises(ValueError, match="unknown colour"):
        TextItem("hi", 0, 0, colour="#12")


def test_canvas_rejects_a_picture_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="I420"):
        Canvas(np.zeros((240, 320), np.uint8), 320, 240)


coords = st.integers(min_value=-(10**30), max_value=10**30)
pcts = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    x1=coords,
    y1=coords,
    x2=coords,
    y2=coords,
    r=coords,
    thickness=st.integers(min_value=-1, max_value=40),
    anchor=st.sampled_from(["top-left", "top-right", "bottom-left", "bottom-right", "center"]),
)
def test_primitives_clip_anything_outside_the_frame(
    x1: int, y1: int, x2: int, y2: int, r: int, thickness: int, anchor: str
) -> None:
    w, h = 64, 48
    image = grey_frame(w, h)
    canvas = Canvas(image, w, h)
    canvas.rectangle(x1, y1, x2, y2, (255, 0, 0), thickness)
    canvas.line(x1, y1, x2, y2, (0, 255, 0), max(1, thickness))
    canvas.line(x1, y1, x1, y2, (0, 255, 0), max(1, thickness))
    canvas.circle(x1, y1, r, (0, 0, 255), thickness)
    canvas.circle(x2 % 200 - 100, y2 % 200 - 100, r % 300, (0, 0, 255), thickness)
    canvas.text("edge", x2, y2, scale=font_scale(12), anchor=anchor)  # type: ignore[arg-type]
    canvas.text("edge", x1 % 160 - 80, y1 % 120 - 60, scale=font_scale(12), anchor=anchor)  # type: ignore[arg-type]
    assert image.shape == (h * 3 // 2, w)


@settings(max_examples=40, deadline=None)
@given(
    box=st.tuples(pcts, pcts, pcts, pcts),
    text_at=st.tuples(pcts, pcts, st.floats(min_value=-1e6, max_value=1e6)),
    text=st.text(max_size=12),
)
def test_overlays_clip_percentages_outside_the_frame(
    box: tuple[float, float, float, float], text_at: tuple[float, float, float], text: str
) -> None:
    w, h = 64, 48
    image = grey_frame(w, h)
    everything = OverlaySettings(
        timestamp=True,
        crosshair=True,
        grid=True,
        rec=True,
        zoom=True,
        texts=[TextItem(text, text_at[0], text_at[1], "yellow", text_at[2])],
    )
    draw_overlays(
        image, w, h, everything, capture_ns=CAPTURE_NS, zoom=1e9, recording=True, rois=[RoiBox(text, *box, "red")]
    )
    assert image.shape == (h * 3 // 2, w)
