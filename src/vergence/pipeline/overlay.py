"""The overlay set: what is drawn over each camera's pictures (time stamp, crosshair, grid, REC, zoom, ROIs, texts).

Pure: `draw_overlays` paints one I420 picture in place from an `OverlaySettings` and the facts of the moment (capture
time, zoom, recording); switching an overlay on or off is replacing a field between frames. Sizes are fractions of the
frame height, so 480p and 4K look alike.

Layout, chosen to keep clear of the test pattern's capture-time code in the top-left corner: time stamp bottom-left,
zoom bottom-right, REC top-right, free texts and ROIs where their percentages put them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

import numpy as np

from vergence.pipeline.draw import Anchor, Canvas, font_scale, parse_colour

HUD_TEXT_PCT = 3.0  # time stamp, zoom and REC: capital height as % of the frame height
LABEL_TEXT_PCT = 2.4  # ROI names
MARGIN_PCT = 2.0  # gap between the HUD texts and the frame edges
WHITE, BLACK, RED = (255, 255, 255), (0, 0, 0), (255, 0, 0)
_DIRECTIVE = re.compile(r"%(.)")


def _check_pct(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{owner}.{name} must be a finite percentage, got {value}")


@dataclass(slots=True)
class TextItem:
    """A fixed text at a place given in % of the frame (its top-left corner), `size_pct` tall (% of frame height)."""

    text: str
    x_pct: float
    y_pct: float
    colour: str = "white"
    size_pct: float = 4.0

    def __post_init__(self) -> None:
        parse_colour(self.colour)  # reject a bad colour now, not on every frame
        _check_pct("TextItem", x_pct=self.x_pct, y_pct=self.y_pct, size_pct=self.size_pct)


@dataclass(slots=True)
class RoiBox:
    """A named region of interest, corners in % of the frame (0..100), drawn as a labelled box."""

    name: str
    x1: float
    y1: float
    x2: float
    y2: float
    colour: str

    def __post_init__(self) -> None:
        parse_colour(self.colour)
        _check_pct("RoiBox", x1=self.x1, y1=self.y1, x2=self.x2, y2=self.y2)


@dataclass(slots=True)
class OverlaySettings:
    """Which overlays are on, per camera; everything off by default except ROI boxes (drawn only if there are any).

    `timestamp_format` is a `strftime` format of the local time, in which `%f` stands for milliseconds (three digits),
    not Python's microseconds.
    """

    timestamp: bool = False
    timestamp_format: str = "%Y-%m-%d %H:%M:%S.%f"
    crosshair: bool = False
    grid: bool = False  # rule of thirds
    rec: bool = False  # a red dot and "REC", while the recorder records
    zoom: bool = False  # the zoom factor, e.g. "2.0x"
    rois: bool = True
    texts: list[TextItem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Layout:
    """Pixel sizes for one frame size, worked out once."""

    margin_px: int
    hud_scale: float
    label_scale: float
    line_px: int  # grid, crosshair and ROI strokes
    grid: tuple[tuple[int, int, int, int], ...]
    cross_arm_px: int
    dot_px: int


@lru_cache(maxsize=16)
def _layout(width: int, height: int) -> _Layout:
    line_px = max(1, round(height / 360))
    return _Layout(
        margin_px=round(height * MARGIN_PCT / 100),
        hud_scale=font_scale(round(height * HUD_TEXT_PCT / 100)),
        label_scale=font_scale(round(height * LABEL_TEXT_PCT / 100)),
        line_px=line_px,
        grid=(
            *((width * i // 3, 0, width * i // 3, height - 1) for i in (1, 2)),
            *((0, height * i // 3, width - 1, height * i // 3) for i in (1, 2)),
        ),
        cross_arm_px=max(4, round(height * 0.03)),
        dot_px=max(2, round(height * HUD_TEXT_PCT / 200)),
    )


def format_timestamp(capture_ns: int, fmt: str) -> str:
    """Format a capture time (ns since the epoch) as local time with `fmt`, where `%f` means milliseconds."""
    millis = f"{capture_ns // 1_000_000 % 1000:03d}"
    # Pairwise, so `%%f` stays a literal "%f".
    fmt = _DIRECTIVE.sub(lambda m: millis if m.group(1) == "f" else m.group(0), fmt)
    return datetime.fromtimestamp(capture_ns // 1_000_000_000).strftime(fmt)


def _px(pct: float, size: int) -> int:
    return round(max(-1e6, min(1e6, pct)) * size / 100)  # bounded: a wild percentage must not overflow an int


def draw_overlays(
    image: np.ndarray,
    width: int,
    height: int,
    settings: OverlaySettings,
    *,
    capture_ns: int,
    zoom: float = 1.0,
    recording: bool = False,
    rois: Sequence[RoiBox] = (),
    extra: Callable[[Canvas], None] | None = None,
) -> None:
    """Draw the overlays that are on into an I420 image in place."""
    s = settings
    show_rec = s.rec and recording
    show_rois = s.rois and bool(rois)
    if not (s.timestamp or s.crosshair or s.grid or show_rec or s.zoom or show_rois or s.texts or extra):
        return  # the common case costs one test per flag
    canvas = Canvas(image, width, height)
    layout = _layout(width, height)
    # Bottom to top: the grid, then what marks the scene, then the marks and texts that must stay readable over it all.
    if s.grid:
        for x1, y1, x2, y2 in layout.grid:
            canvas.line(x1, y1, x2, y2, WHITE, layout.line_px)
    if show_rois:
        for roi in rois:
            _roi(canvas, layout, roi)
    if extra is not None:
        extra(canvas)
    if s.crosshair:  # over the boxes: it is the aiming mark
        _crosshair(canvas, layout)
    for item in s.texts:
        scale = font_scale(round(height * max(0.1, min(100.0, item.size_pct)) / 100))
        colour = parse_colour(item.colour)
        canvas.text(item.text, _px(item.x_pct, width), _px(item.y_pct, height), scale=scale, colour_rgb=colour)
    margin = layout.margin_px
    if s.timestamp:
        stamp = format_timestamp(capture_ns, s.timestamp_format)
        canvas.text(stamp, margin, height - margin, scale=layout.hud_scale, anchor="bottom-left", cache=False)
    if s.zoom:
        canvas.text(f"{zoom:.1f}x", width - margin, height - margin, scale=layout.hud_scale, anchor="bottom-right")
    if show_rec:
        left, top, _, bottom = canvas.text("REC", width - margin, margin, scale=layout.hud_scale, anchor="top-right")
        dot = layout.dot_px
        cx, cy = left - dot, (top + bottom) // 2
        canvas.circle(cx, cy, dot + layout.line_px, BLACK)  # a dark rim, as the texts have
        canvas.circle(cx, cy, dot, RED)


def _crosshair(canvas: Canvas, layout: _Layout) -> None:
    """Draw a plus at the centre: white strokes on slightly longer, thicker black ones, visible on any scene."""
    cx, cy = canvas.width // 2, canvas.height // 2
    arm, line = layout.cross_arm_px, layout.line_px
    rim = line + 2 * max(1, line // 2)
    for colour, reach, thickness in ((BLACK, arm + rim // 2, rim), (WHITE, arm, line)):
        canvas.line(cx - reach, cy, cx + reach, cy, colour, thickness)
        canvas.line(cx, cy - reach, cx, cy + reach, colour, thickness)


def _roi(canvas: Canvas, layout: _Layout, roi: RoiBox) -> None:
    """Draw an ROI's box and, above its top-left corner (inside when there is no room), its name in its colour."""
    colour = parse_colour(roi.colour)
    x1, x2 = sorted((_px(roi.x1, canvas.width), _px(roi.x2, canvas.width)))
    y1, y2 = sorted((_px(roi.y1, canvas.height), _px(roi.y2, canvas.height)))
    canvas.rectangle(x1, y1, x2, y2, colour, layout.line_px)
    if roi.name:
        anchor: Anchor = "bottom-left" if y1 - layout.line_px > canvas.height * LABEL_TEXT_PCT / 50 else "top-left"
        canvas.text(roi.name, max(0, x1), y1, scale=layout.label_scale, colour_rgb=colour, anchor=anchor)
