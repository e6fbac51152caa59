"""The built-in test camera: a moving scene with a clock, the frame number and the capture-time code."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import cv2
import numpy as np

from vergence.config import CameraSettings
from vergence.errors import SourceEnded
from vergence.media import timecode
from vergence.media.frame import TIME_BASE, Frame, i420_planes
from vergence.sources.base import Source, SourceInfo, register

PAN_PX_PER_S = 120  # how fast the scene slides, so encoders do real motion estimation
SWEEP_S = 4.0  # one to-and-fro of the bright box
# Behind schedule by less than this (a busy moment on a small machine), frames follow at once to keep the average rate
# exact; behind by more, the missed slots are skipped, as a camera that stalled would.
MAX_CATCH_UP_S = 0.25


def _outlined_text(luma: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """Draw white text with a black outline on a luma plane, readable on any background."""
    thickness = max(1, round(2 * scale))
    cv2.putText(luma, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 16, thickness + 3, cv2.LINE_8)
    cv2.putText(luma, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 235, thickness, cv2.LINE_8)


def render_scene(width: int, height: int) -> np.ndarray:
    """Return a colourful BGR scene of `width` x `height` that tiles horizontally."""
    x = np.linspace(0, 179, width, endpoint=False, dtype=np.float32)
    hue = np.broadcast_to(x, (height, width)).astype(np.uint8)
    y = np.linspace(90, 255, height, dtype=np.float32)[:, None]
    value = np.broadcast_to(y, (height, width)).astype(np.uint8)
    hsv = np.dstack([hue, np.full((height, width), 200, np.uint8), value])
    scene = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    step = max(16, width // 20)
    for gx in range(0, width, step):
        cv2.line(scene, (gx, 0), (gx, height - 1), (40, 40, 40), 1)
    for gy in range(0, height, step):
        cv2.line(scene, (0, gy), (width - 1, gy), (40, 40, 40), 1)
    rng = np.random.default_rng(7)
    for _ in range(24):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.integers(step // 4, step))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.circle(scene, centre, radius, colour, -1, lineType=cv2.LINE_AA)
    return scene


@register("testpattern")
class TestPatternSource(Source):
    """Frames paced by a monotonic clock: frame n is due at t0 + n/fps, so the rate never drifts; waits never spin."""

    __test__ = False  # not a pytest class, despite the name

    def __init__(self, camera: CameraSettings) -> None:
        super().__init__(camera)
        self._closed = threading.Event()
        self._width, self._height = camera.size
        self._period_s = 1.0 / camera.fps
        self._pts_step = round(TIME_BASE.denominator / camera.fps)
        self._scene_planes: list[np.ndarray] = []
        self._t0 = 0.0
        self._slot = 0
        self._seq = 0

    def open(self) -> SourceInfo:
        self._closed.clear()
        w, h = self._width, self._height
        planes = i420_planes(cv2.cvtColor(render_scene(w, h), cv2.COLOR_BGR2YUV_I420), w, h)
        # Each plane twice side by side, so any window [x, x + width) is one contiguous slice.
        self._scene_planes = [np.ascontiguousarray(np.hstack([plane, plane])) for plane in planes]
        self._t0 = time.monotonic()
        self._slot = 0
        self._seq = 0
        return SourceInfo(w, h, self.camera.fps)

    def read(self) -> Frame:
        due = self._t0 + self._slot * self._period_s
        delay = due - time.monotonic()
        if delay > 0 and self._closed.wait(delay):
            raise SourceEnded("test pattern closed")
        if self._closed.is_set() or not self._scene_planes:
            raise SourceEnded("test pattern closed")
        late_s = time.monotonic() - due
        if late_s > MAX_CATCH_UP_S:  # a real stall: skip the missed slots rather than burst out stale frames
            self._slot += int(late_s / self._period_s)
        started = time.perf_counter()
        image = self._draw(time.time_ns())
        # The picture exists now: this is the moment a sensor would have captured it. Only the time code, which must carry
        # this very value, is painted after it (a few microseconds).
        capture_ns = time.time_ns()
        luma, u_plane, v_plane = i420_planes(image, self._width, self._height)
        timecode.paint(luma, capture_ns, (u_plane, v_plane))
        frame = Frame(
            image=image,
            pix_fmt="yuv420p",
            width=self._width,
            height=self._height,
            seq=self._seq,
            pts=self._slot * self._pts_step,
            capture_ns=capture_ns,
            camera=self.camera.id,
        )
        frame.timings_ms["capture"] = (time.perf_counter() - started) * 1000
        self._slot += 1
        self._seq += 1
        return frame

    def _draw(self, now_ns: int) -> np.ndarray:
        """Render the scene, the moving box, the clock and the frame label (everything but the time code)."""
        w, h = self._width, self._height
        image = np.empty((h * 3 // 2, w), np.uint8)
        luma, u_plane, v_plane = i420_planes(image, w, h)
        offset = int(self._slot * self._period_s * PAN_PX_PER_S) % w & ~1  # even, so chroma stays aligned
        scene_y, scene_u, scene_v = self._scene_planes
        luma[:] = scene_y[:, offset : offset + w]
        u_plane[:] = scene_u[:, offset // 2 : offset // 2 + w // 2]
        v_plane[:] = scene_v[:, offset // 2 : offset // 2 + w // 2]
        # A bright box sweeping to and fro: fast local motion beside the slow pan.
        box = max(8, h // 8) & ~1
        phase = (self._slot * self._period_s % SWEEP_S) / SWEEP_S
        bx = int((w - box) * (1 - abs(2 * phase - 1))) & ~1
        by = (h - box - box // 2) & ~1
        luma[by : by + box, bx : bx + box] = 235
        cell = timecode.cell_px(w)
        scale = max(0.35, h / 720)
        clock = datetime.fromtimestamp(now_ns / 1e9).strftime("%H:%M:%S.%f")[:-3]
        line_px = round(44 * scale)
        _outlined_text(luma, clock, (cell, timecode.ROWS * cell + line_px), 1.2 * scale)
        _outlined_text(
            luma, f"#{self._seq}  {w}x{h}@{self.camera.fps:g}", (cell, timecode.ROWS * cell + 2 * line_px), 0.9 * scale
        )
        return image

    def close(self) -> None:
        self._closed.set()
