"""Crop-and-scale of I420 pictures: the software half of pan/tilt/zoom, and scaled copies for smaller consumers."""

from __future__ import annotations

import cv2
import numpy as np

from vergence.media.frame import Frame, i420_planes
from vergence.ptz import Rect


def gray_i420(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Return an I420 picture's luma with neutral chroma: the same picture without colour (a new array; the source's
    buffer may be shared or read-only)."""
    out = np.empty((height * 3 // 2, width), np.uint8)
    out[:height] = image[:height]
    out[height:] = 128
    return out


def crop_i420(
    image: np.ndarray, width: int, height: int, crop: Rect, out_width: int | None = None, out_height: int | None = None
) -> np.ndarray:
    """Cut `crop` out of an I420 picture of width x height and scale it to out_width x out_height (default: the same)."""
    out_width, out_height = out_width or width, out_height or height
    out = np.empty((out_height * 3 // 2, out_width), np.uint8)
    # Even-aligned, so the chroma planes' window is exactly half the luma window.
    x, y = crop.x & ~1, crop.y & ~1
    w, h = max(2, min(crop.width, width - x) & ~1), max(2, min(crop.height, height - y) & ~1)
    for source, target, scale in zip(
        i420_planes(image, width, height), i420_planes(out, out_width, out_height), (1, 2, 2), strict=True
    ):
        window = source[y // scale : (y + h) // scale, x // scale : (x + w) // scale]
        # INTER_AREA when shrinking keeps fine detail from aliasing; LINEAR when enlarging is sharper and cheaper.
        shrinking = window.shape[1] > target.shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        cv2.resize(window, (target.shape[1], target.shape[0]), dst=target, interpolation=interpolation)
    return out


def scale_frame(frame: Frame, width: int, height: int) -> Frame:
    """Return `frame` scaled to width × height with area averaging (I420 plane by plane: no colour conversion)."""
    if (frame.width, frame.height) == (width, height):
        return frame
    if frame.pix_fmt == "yuv420p":
        y, u, v = i420_planes(frame.image, frame.width, frame.height)
        half = (width // 2, height // 2)
        planes = (
            cv2.resize(y, (width, height), interpolation=cv2.INTER_AREA),
            cv2.resize(u, half, interpolation=cv2.INTER_AREA),
            cv2.resize(v, half, interpolation=cv2.INTER_AREA),
        )
        image = np.concatenate([plane.reshape(-1) for plane in planes]).reshape(height * 3 // 2, width)
    else:
        image = cv2.resize(frame.image, (width, height), interpolation=cv2.INTER_AREA)
    return Frame(
        image,
        frame.pix_fmt,
        width,
        height,
        frame.seq,
        frame.pts,
        frame.capture_ns,
        frame.camera,
        limited_range=frame.limited_range,
    )
