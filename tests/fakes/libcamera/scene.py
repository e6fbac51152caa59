"""What the fake sensors look at, and the picture the ISP makes of it for a crop, size, flip, exposure and colour range.

The scene is drawn once per sensor at a quarter of its resolution (cheap, and still shows where a crop sits): gradients
across and down under a checkerboard, with a pure white and a pure black square near the centre, so a test can tell a
full-range picture from a limited-range one and a bright one from a dark one.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from .sensors import SENSORS, SensorModel

WORLD_SCALE = 4
# Where the white and black squares sit, as fractions of the sensor (x, y, w, h): inside every mode's field of view.
WHITE_PATCH = (0.40, 0.44, 0.06, 0.08)
BLACK_PATCH = (0.54, 0.44, 0.06, 0.08)


@functools.cache
def world(model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return full-range Y, U and V planes of the scene in front of a sensor, at 1/WORLD_SCALE of its resolution."""
    sensor: SensorModel = SENSORS[model]
    w, h = sensor.width // WORLD_SCALE, sensor.height // WORLD_SCALE
    x = np.arange(w, dtype=np.float32)[None, :] / w
    y = np.arange(h, dtype=np.float32)[:, None] / h
    checker = ((np.arange(w)[None, :] // 16 + np.arange(h)[:, None] // 16) % 2).astype(np.float32)
    luma = 30 + 130 * x + 20 * y + 40 * checker
    u = np.broadcast_to(40 + 176 * y, (h, w)).copy()
    v = np.broadcast_to(40 + 176 * x, (h, w)).copy()
    for patch, value in ((WHITE_PATCH, 255.0), (BLACK_PATCH, 0.0)):
        px, py, pw, ph = (int(f * s) for f, s in zip(patch, (w, h, w, h), strict=True))
        luma[py : py + ph, px : px + pw] = value
        u[py : py + ph, px : px + pw] = 128
        v[py : py + ph, px : px + pw] = 128
    return tuple(np.ascontiguousarray(np.clip(p, 0, 255).astype(np.uint8)) for p in (luma, u, v))  # type: ignore[return-value]


@functools.lru_cache(maxsize=16)
def render_i420(
    model: str,
    crop: tuple[int, int, int, int],
    size: tuple[int, int],
    hflip: bool = False,
    vflip: bool = False,
    brightness: float = 1.0,
    limited_range: bool = False,
) -> np.ndarray:
    """Return the packed I420 picture (h*3/2, w) of ScalerCrop `crop` (sensor pixels) scaled to `size`.

    `brightness` is the exposure relative to a correct one (1.0: what auto-exposure aims for); limited range maps luma to
    16–235 and chroma to 16–240, as the ISP does for the video colour spaces (Rec709, SMPTE170M).
    """
    width, height = size
    x, y, w, h = (v // WORLD_SCALE for v in crop)
    planes = []
    sizes = ((width, height), (width // 2, height // 2), (width // 2, height // 2))
    for index, (plane, (pw, ph)) in enumerate(zip(world(model), sizes, strict=True)):
        window = plane[y : y + max(1, h), x : x + max(1, w)]
        scaled = cv2.resize(window, (pw, ph), interpolation=cv2.INTER_LINEAR)
        # uint8 arithmetic that saturates (convertScaleAbs): a 12 MP still renders in milliseconds, not half a second.
        if index == 0:
            if brightness != 1.0:
                scaled = cv2.convertScaleAbs(scaled, alpha=brightness)
            if limited_range:
                scaled = cv2.convertScaleAbs(scaled, alpha=219 / 255, beta=16)
        elif limited_range:
            scaled = cv2.convertScaleAbs(scaled, alpha=224 / 255, beta=128 * (1 - 224 / 255))
        if hflip:
            scaled = scaled[:, ::-1]
        if vflip:
            scaled = scaled[::-1]
        planes.append(scaled)
    picture = np.concatenate([p.reshape(-1) for p in planes]).reshape(height * 3 // 2, width)
    picture.flags.writeable = False
    return picture


def write_yuv420(picture: np.ndarray, width: int, height: int, stride: int, out: memoryview, swap_uv: bool) -> None:
    """Write a packed I420 picture into a buffer laid out as the ISP writes it: luma rows of `stride` bytes, then the
    two chroma planes with rows of stride/2."""
    buffer = np.frombuffer(out, dtype=np.uint8)
    luma, chroma = picture[:height], picture[height:].reshape(-1)
    quarter = (height // 2) * (width // 2)
    u, v = chroma[:quarter], chroma[quarter:]
    if swap_uv:
        u, v = v, u
    buffer[: stride * height].reshape(height, stride)[:, :width] = luma
    half = stride // 2
    offset = stride * height
    for plane in (u, v):
        rows = buffer[offset : offset + half * (height // 2)].reshape(height // 2, half)
        rows[:, : width // 2] = plane.reshape(height // 2, width // 2)
        offset += half * (height // 2)


def write_rgb(picture: np.ndarray, width: int, height: int, stride: int, out: memoryview, fmt: str) -> None:
    """Write an I420 picture as packed RGB: BGR888/RGB888 (3 bytes) or XBGR8888/XRGB8888 (4), libcamera's byte orders."""
    bgr = cv2.cvtColor(np.ascontiguousarray(picture), cv2.COLOR_YUV2BGR_I420)
    # libcamera (DRM) names a format by its little-endian word: RGB888 is stored B, G, R in memory, BGR888 R, G, B.
    if fmt in ("RGB888", "XRGB8888"):
        pixels = bgr  # stored B, G, R in memory
    else:
        pixels = bgr[:, :, ::-1]  # BGR888 / XBGR8888: stored R, G, B
    channels = 4 if fmt.startswith("X") else 3
    buffer = np.frombuffer(out, dtype=np.uint8)
    rows = buffer[: stride * height].reshape(height, stride)[:, : width * channels].reshape(height, width, channels)
    rows[:, :, :3] = pixels
    if channels == 4:
        rows[:, :, 3] = 255
