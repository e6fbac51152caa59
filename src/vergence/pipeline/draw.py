"""Drawing primitives that paint straight into an I420 picture, in colour, without converting it to BGR.

Every primitive writes the Y plane at full resolution and the U and V planes at half resolution, so a colour comes out
right after any YUV→RGB conversion, and only the pixels drawn are touched (no whole-frame BGR round trip). Coordinates
are luma pixels; anything partly or wholly outside the picture is clipped, never an exception.

Chroma is written over the luma footprint rounded outwards (a stroke starting on an odd column also tints the chroma
sample it shares with its left neighbour), so a one-pixel line still shows its colour.

Text is outlined for readability on any background. It is rendered once into a small alpha mask, the outline is that
mask dilated, and both are blended into all three planes, so coloured text works and the outline is a true outline. A
thicker `putText` underneath would not do: since OpenCV 5 `thickness` picks a font weight rather than a stroke width. The
rendered masks of recent strings are cached, so a static label costs only its blend.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np

from vergence.media.frame import i420_planes

RGB = tuple[int, int, int]
Anchor = Literal["top-left", "top-right", "bottom-left", "bottom-right", "center"]

FONT = cv2.FONT_HERSHEY_SIMPLEX
# Coordinates are clamped to this many pixels either side of the picture before they reach OpenCV, whose arguments are
# 32-bit and overflow on the absurd values a bad percentage can produce.
_LIMIT = 1 << 20

#: The colour names `parse_colour` knows, with their CSS values (so `green` is CSS's dark green and `lime` the bright one).
COLOURS: dict[str, RGB] = {
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
    "lime": (0, 255, 0),
    "pink": (255, 192, 203),
}
_HEX = re.compile(r"#([0-9a-f]{3}|[0-9a-f]{6})")


@lru_cache(maxsize=128)
def parse_colour(value: str) -> RGB:
    """Return the RGB of a colour name (red, green, …) or of `#rrggbb` / `#rgb`."""
    key = value.strip().lower()
    if key in COLOURS:
        return COLOURS[key]
    match = _HEX.fullmatch(key)
    if match is None:
        raise ValueError(f"unknown colour {value!r}: use a name (red, green, …) or #rrggbb")
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(2 * d for d in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


@lru_cache(maxsize=128)
def rgb_to_yuv(rgb: RGB) -> RGB:
    """Return the BT.601 limited-range (16-235 luma) Y, U, V of an RGB colour, as yuv420p encoders expect."""
    r, g, b = rgb
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return tuple(min(255, max(0, round(c))) for c in (y, u, v))  # type: ignore[return-value]


@lru_cache(maxsize=1)
def _cap_px_per_scale() -> float:
    """Measure the inked height of a capital at a large scale: `getTextSize` reports a line height, not the ink."""
    scale = 4.0
    mask = np.zeros((200, 200), np.uint8)
    cv2.putText(mask, "H", (20, 150), FONT, scale, 255, text_stroke(scale), cv2.LINE_AA)
    rows = np.flatnonzero(mask.max(axis=1) > 127)
    return float(rows[-1] - rows[0] + 1) / scale


@lru_cache(maxsize=256)
def font_scale(size_px: int) -> float:
    """Return the `putText` scale whose capital letters are `size_px` pixels tall."""
    return max(size_px, 1) / _cap_px_per_scale()


def text_stroke(scale: float) -> int:
    """Return the `putText` thickness for a scale: bold (2+) at every size, growing with it where OpenCV draws strokes."""
    return max(2, round(2 * scale))


def outline_px(scale: float) -> int:
    """Return the outline width, in pixels, that keeps text of this scale readable on any background."""
    return max(1, round(scale * 1.6))


@dataclass(frozen=True, slots=True)
class _Sprite:
    """Rendered outlined text: per plane, the blend `dst = dst * keep + add` over an even-aligned box."""

    width: int  # luma pixels, even
    height: int  # luma pixels, even
    blends: tuple[tuple[np.ndarray, np.ndarray], ...]  # (keep, add) as float32, for Y then U then V


def _layout_text(text: str, scale: float) -> tuple[int, int, int, int]:
    """Return the sprite's (width, height) and the text's baseline origin (x, y) in it."""
    pad = outline_px(scale) + 1  # room for the dilated outline and the antialiased fringe
    (text_w, _), _ = cv2.getTextSize(text, FONT, scale, text_stroke(scale))
    ascent_px, descent_px = _line_metrics(scale)
    width = (text_w + 2 * pad + 1) & ~1  # even, so the chroma box is exactly half the luma box
    height = (ascent_px + descent_px + 2 * pad + 1) & ~1
    return width, height, pad, pad + ascent_px


def _render_sprite(text: str, scale: float, fill: RGB, outline: RGB) -> _Sprite:
    """Render `text` with its outline into blend maps."""
    width, height, origin_x, origin_y = _layout_text(text, scale)
    text_mask = np.zeros((height, width), np.uint8)
    cv2.putText(text_mask, text, (origin_x, origin_y), FONT, scale, 255, text_stroke(scale), cv2.LINE_AA)
    size = 2 * outline_px(scale) + 1
    outline_mask = cv2.dilate(text_mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    fill_yuv, outline_yuv = rgb_to_yuv(fill), rgb_to_yuv(outline)
    blends: list[tuple[np.ndarray, np.ndarray]] = []
    for planes, (text_m, outline_m) in (((0,), (text_mask, outline_mask)), ((1, 2), _halve(text_mask, outline_mask))):
        text_a = text_m.astype(np.float32) / 255
        outline_a = outline_m.astype(np.float32) / 255
        under = outline_a * (1 - text_a)  # how much outline shows beneath the fill
        keep = 1 - under - text_a
        keep.flags.writeable = False  # shared by U and V, and by every frame through the cache
        for plane in planes:
            # +0.5 so the float → uint8 store, which truncates, rounds instead.
            add = outline_yuv[plane] * under + fill_yuv[plane] * text_a + 0.5
            add.flags.writeable = False
            blends.append((keep, add))
    return _Sprite(width, height, tuple(blends))


# Labels repeat frame after frame: keep the recent ones. Strings that change every frame (the time stamp) bypass it.
_cached_sprite = lru_cache(maxsize=32)(_render_sprite)


def _halve(text_mask: np.ndarray, outline_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return both masks at chroma resolution (each chroma sample covers 2x2 luma pixels)."""
    size = (text_mask.shape[1] // 2, text_mask.shape[0] // 2)
    return (
        cv2.resize(text_mask, size, interpolation=cv2.INTER_AREA),
        cv2.resize(outline_mask, size, interpolation=cv2.INTER_AREA),
    )


@lru_cache(maxsize=256)
def _line_metrics(scale: float) -> tuple[int, int]:
    """Return (ascent, descent) in pixels: one line box for every string, so labels do not jump in height."""
    (_, cap_px), _ = cv2.getTextSize("H", FONT, scale, text_stroke(scale))
    (_, full_px), descent_px = cv2.getTextSize("Hgjpqy", FONT, scale, text_stroke(scale))
    return max(cap_px, full_px), descent_px


def text_box(text: str, scale: float) -> tuple[int, int]:
    """Return the (width, height) in pixels that `Canvas.text` covers for `text` at `scale`, outline included."""
    width, height, _, _ = _layout_text(text, scale)
    return width, height


def _clamp(value: float) -> int:
    if not isinstance(value, int) and not math.isfinite(value):  # an int may be too big for a float: no isfinite
        return 0
    return max(-_LIMIT, min(_LIMIT, round(value)))


class Canvas:
    """One I420 picture, drawn on in place through views of its three planes."""

    __slots__ = ("height", "u", "v", "width", "y")

    def __init__(self, image: np.ndarray, width: int, height: int) -> None:
        if image.dtype != np.uint8 or image.shape != (height * 3 // 2, width) or not image.flags.c_contiguous:
            raise ValueError(
                f"expected a C-contiguous uint8 I420 image of shape {(height * 3 // 2, width)}, got {image.dtype} "
                f"{image.shape}"
            )
        self.width = width
        self.height = height
        self.y, self.u, self.v = i420_planes(image, width, height)

    def _fill(self, x1: int, y1: int, x2: int, y2: int, yuv: RGB) -> None:
        """Paint the luma box [x1, x2) x [y1, y2) and the chroma samples it touches."""
        x1, x2 = max(0, x1), min(self.width, x2)
        y1, y2 = max(0, y1), min(self.height, y2)
        if x1 >= x2 or y1 >= y2:
            return
        self.y[y1:y2, x1:x2] = yuv[0]
        cx1, cy1, cx2, cy2 = x1 // 2, y1 // 2, (x2 + 1) // 2, (y2 + 1) // 2
        self.u[cy1:cy2, cx1:cx2] = yuv[1]
        self.v[cy1:cy2, cx1:cx2] = yuv[2]

    def rectangle(self, x1: int, y1: int, x2: int, y2: int, colour_rgb: RGB, thickness: int = 2) -> None:
        """Draw a rectangle with corners (x1, y1) and (x2, y2) inclusive; a negative thickness fills it."""
        yuv = rgb_to_yuv(colour_rgb)
        x1, x2 = sorted((_clamp(x1), _clamp(x2)))
        y1, y2 = sorted((_clamp(y1), _clamp(y2)))
        if thickness < 0:
            self._fill(x1, y1, x2 + 1, y2 + 1, yuv)
            return
        t = max(1, thickness)
        lo = t // 2  # the stroke is centred on the edge, as OpenCV's is
        left, top, right, bottom = x1 - lo, y1 - lo, x2 - lo + t, y2 - lo + t  # outer box, exclusive right/bottom
        self._fill(left, top, right, top + t, yuv)
        self._fill(left, bottom - t, right, bottom, yuv)
        self._fill(left, top, left + t, bottom, yuv)
        self._fill(right - t, top, right, bottom, yuv)

    def line(self, x1: int, y1: int, x2: int, y2: int, colour_rgb: RGB, thickness: int = 1) -> None:
        """Draw a straight line from (x1, y1) to (x2, y2)."""
        yuv = rgb_to_yuv(colour_rgb)
        t = max(1, thickness)
        x1, y1, x2, y2 = _clamp(x1), _clamp(y1), _clamp(x2), _clamp(y2)
        if x1 == x2 or y1 == y2:  # axis-aligned (grids, crosshairs): exact pixel boxes, cheaper than OpenCV's line
            lo = t // 2
            if y1 == y2:
                a, b = sorted((x1, x2))
                self._fill(a, y1 - lo, b + 1, y1 - lo + t, yuv)
            else:
                a, b = sorted((y1, y2))
                self._fill(x1 - lo, a, x1 - lo + t, b + 1, yuv)
            return
        clipped = _clip_line(x1, y1, x2, y2, -t, -t, self.width + t, self.height + t)
        if clipped is None:
            return
        x1, y1, x2, y2 = clipped
        cv2.line(self.y, (x1, y1), (x2, y2), yuv[0], t, cv2.LINE_AA)
        # shift=1 reads the luma coordinates as half-pixels of the chroma planes: exact, no rounding.
        half = (t + 1) // 2
        cv2.line(self.u, (x1, y1), (x2, y2), yuv[1], half, cv2.LINE_AA, 1)
        cv2.line(self.v, (x1, y1), (x2, y2), yuv[2], half, cv2.LINE_AA, 1)

    def circle(self, cx: int, cy: int, r: int, colour_rgb: RGB, thickness: int = -1) -> None:
        """Draw a circle of radius `r` centred on (cx, cy); a negative thickness (the default) fills it."""
        if r < 0:
            return
        # Saturate first, so the float distances below cannot overflow; circles this far out are never visible anyway.
        cx, cy, r = (max(-(1 << 60), min(1 << 60, int(v))) for v in (cx, cy, r))
        yuv = rgb_to_yuv(colour_rgb)
        t = max(1, thickness) if thickness >= 0 else -1
        reach = max(t, 0)
        # Distances from the centre to the nearest and farthest point of the picture decide the trivial cases.
        dx = max(0 - cx, 0, cx - (self.width - 1))
        dy = max(0 - cy, 0, cy - (self.height - 1))
        if math.hypot(dx, dy) > r + reach:
            return
        far = math.hypot(max(cx, self.width - 1 - cx), max(cy, self.height - 1 - cy))
        if far < r - reach:  # the picture lies wholly inside the circle
            if t < 0:
                self._fill(0, 0, self.width, self.height, yuv)
            return
        if max(abs(cx), abs(cy), r) > _LIMIT:
            return  # an arc of such a circle is a straight line across the picture: not worth the overflow risk
        cv2.circle(self.y, (cx, cy), r, yuv[0], t, cv2.LINE_AA)
        half = -1 if t < 0 else (t + 1) // 2
        cv2.circle(self.u, (cx, cy), r, yuv[1], half, cv2.LINE_AA, 1)
        cv2.circle(self.v, (cx, cy), r, yuv[2], half, cv2.LINE_AA, 1)

    def text(
        self,
        text: str,
        x: int,
        y: int,
        *,
        scale: float,
        colour_rgb: RGB = (255, 255, 255),
        outline_rgb: RGB = (0, 0, 0),
        anchor: Anchor = "top-left",
        cache: bool = True,
    ) -> tuple[int, int, int, int]:
        """Draw outlined text with its box's `anchor` at (x, y); return the box (left, top, right, bottom), exclusive.

        `scale` is OpenCV's font scale (`font_scale` finds one for a height in pixels). The font has ASCII only: other
        characters come out as `?`. Pass `cache=False` for a string that changes every frame, such as a clock, so it does
        not push the static labels out of the rendered-text cache.
        """
        render = _cached_sprite if cache else _render_sprite
        sprite = render(text, scale, colour_rgb, outline_rgb)
        w, h = sprite.width, sprite.height
        x, y = _clamp(x), _clamp(y)
        left = x - (w if anchor.endswith("right") else w // 2 if anchor == "center" else 0)
        top = y - (h if anchor.startswith("bottom") else h // 2 if anchor == "center" else 0)
        left &= ~1  # even, so the chroma box lines up with the luma box exactly
        top &= ~1
        box = (left, top, left + w, top + h)
        if left >= self.width or top >= self.height or left + w <= 0 or top + h <= 0:
            return box
        planes = (self.y, self.u, self.v)
        for plane, (keep, add), div in zip(planes, sprite.blends, (1, 2, 2), strict=True):
            px, py = left // div, top // div
            x1, y1 = max(0, px), max(0, py)
            x2, y2 = min(plane.shape[1], px + keep.shape[1]), min(plane.shape[0], py + keep.shape[0])
            if x1 >= x2 or y1 >= y2:
                continue
            region = plane[y1:y2, x1:x2]
            mask = (slice(y1 - py, y2 - py), slice(x1 - px, x2 - px))
            region[:] = region * keep[mask] + add[mask]
        return box


def _clip_line(
    x1: int, y1: int, x2: int, y2: int, left: int, top: int, right: int, bottom: int
) -> tuple[int, int, int, int] | None:
    """Clip a segment to a box (Liang-Barsky); return None when nothing of it is inside."""
    dx, dy = x2 - x1, y2 - y1
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x1 - left), (dx, right - x1), (-dy, y1 - top), (dy, bottom - y1)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return round(x1 + t0 * dx), round(y1 + t0 * dy), round(x1 + t1 * dx), round(y1 + t1 * dy)
