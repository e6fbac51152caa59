"""The built-in test camera: a moving scene with a clock, the frame number and the capture-time code."""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime

import cv2
import numpy as np

from vergence.config import CameraSettings
from vergence.errors import SourceEnded
from vergence.media import timecode
from vergence.media.frame import TIME_BASE, Frame, i420_planes
from vergence.ptz import Rect, SensorGeometry
from vergence.sources.base import Source, SourceInfo, register

PAN_PX_PER_S = 120  # how fast the scene slides, so encoders do real motion estimation
SWEEP_S = 4.0  # one to-and-fro of the bright box
SENSOR_SCALE = 2  # the virtual sensor is this many times the output size each way: room to zoom in 2x at full detail
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
    """A virtual camera: frames paced by a monotonic clock (frame n is due at t0 + n/fps, so the rate never drifts; waits
    never spin), showing the window of a sliding virtual scene that the crop selects, as a sensor's ISP would."""

    crops_at_sensor = True

    __test__ = False  # not a pytest class, despite the name
    camera_make = "vergence"

    @property
    def camera_model(self) -> str:
        return "vergence testpattern"

    def __init__(self, camera: CameraSettings) -> None:
        super().__init__(camera)
        self._closed = threading.Event()
        self._width, self._height = camera.size
        self._period_s = 1.0 / camera.fps
        self._pts_step = round(TIME_BASE.denominator / camera.fps)
        self._levels: dict[int, list[np.ndarray]] = {}
        sensor_w, sensor_h = SENSOR_SCALE * self._width, SENSOR_SCALE * self._height
        self._geometry = SensorGeometry(sensor_w, sensor_h, Rect(0, 0, sensor_w, sensor_h), 32, 32)
        self._crop = Rect(0, 0, sensor_w, sensor_h)
        self._flip = (False, False)
        self._t0 = 0.0
        self._slot = 0
        self._seq = 0

    def open(self) -> SourceInfo:
        self._closed.clear()
        w, h = self._width, self._height
        sensor_w, sensor_h = SENSOR_SCALE * w, SENSOR_SCALE * h
        full = cv2.cvtColor(render_scene(sensor_w, sensor_h), cv2.COLOR_BGR2YUV_I420)
        half = cv2.resize(full[:sensor_h], (w, h), interpolation=cv2.INTER_AREA)  # luma only; chroma below
        full_planes = i420_planes(full, sensor_w, sensor_h)
        half_planes = [half] + [
            cv2.resize(plane, (w // 2, h // 2), interpolation=cv2.INTER_AREA) for plane in full_planes[1:]
        ]
        # Each plane twice side by side, so any window [x, x + width) of the sliding scene is one contiguous slice.
        self._levels = {
            divisor: [np.ascontiguousarray(np.hstack([plane, plane])) for plane in planes]
            for divisor, planes in ((1, full_planes), (SENSOR_SCALE, half_planes))
        }
        self._geometry = SensorGeometry(sensor_w, sensor_h, Rect(0, 0, sensor_w, sensor_h), 32, 32)
        # Frames fall on a grid of the monotonic clock, so test cameras of one rate capture at the same instants, as
        # synchronised stereo sensors would.
        self._t0 = math.ceil(time.monotonic() / self._period_s) * self._period_s
        self._slot = 0
        self._seq = 0
        return SourceInfo(w, h, self.camera.fps)

    def sensor_geometry(self) -> SensorGeometry | None:
        return self._geometry

    def set_flip(self, horizontal: bool, vertical: bool) -> None:
        self._flip = (horizontal, vertical)

    def set_crop(self, crop: Rect) -> None:
        # One reference assignment: the capture thread picks it up for its next frame, no lock needed.
        self._crop = crop

    def read(self) -> Frame:
        due = self._t0 + self._slot * self._period_s
        delay = due - time.monotonic()
        if delay > 0 and self._closed.wait(delay):
            raise SourceEnded("test pattern closed")
        if self._closed.is_set() or not self._levels:
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
        self._render_crop(luma, u_plane, v_plane)
        horizontal, vertical = self._flip
        if horizontal or vertical:  # the scene is mirrored as a sensor's transform would; the overlays stay readable
            code = -1 if horizontal and vertical else (1 if horizontal else 0)
            for plane in (luma, u_plane, v_plane):
                plane[:] = cv2.flip(plane, code)
        # A bright box sweeping to and fro: fast local motion beside the slow pan.
        box = max(8, h // 8) & ~1
        phase = (self._scene_s() % SWEEP_S) / SWEEP_S
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

    def _scene_s(self) -> float:
        """The scene's clock: the frame's instant on the shared monotonic grid, not its number. Two test cameras then show
        the same scene at the same instant even when one opened a frame later (a stereo pair's disparity was off by a
        frame of pan whenever they did)."""
        return self._t0 + self._slot * self._period_s

    def _render_crop(self, luma: np.ndarray, u_plane: np.ndarray, v_plane: np.ndarray) -> None:
        """Render the window of the sliding virtual scene that the crop selects, scaled to the output (the ISP's job)."""
        w = self._width
        crop = self._crop
        sensor_w = self._geometry.width
        slide = int(self._scene_s() * PAN_PX_PER_S * SENSOR_SCALE) % sensor_w
        # A crop at least twice the output reads the half-resolution copy: the full view costs a plain copy.
        divisor = SENSOR_SCALE if crop.width >= SENSOR_SCALE * w else 1
        x = ((crop.x + slide) % sensor_w) // divisor & ~1
        y = crop.y // divisor & ~1
        cw, ch = max(2, crop.width // divisor & ~1), max(2, crop.height // divisor & ~1)
        for plane, source, scale in zip((luma, u_plane, v_plane), self._levels[divisor], (1, 2, 2), strict=True):
            window = source[y // scale : (y + ch) // scale, x // scale : (x + cw) // scale]
            if window.shape == plane.shape:
                plane[:] = window
            else:
                cv2.resize(window, (plane.shape[1], plane.shape[0]), dst=plane, interpolation=cv2.INTER_LINEAR)

    def close(self) -> None:
        self._closed.set()
