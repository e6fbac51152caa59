"""The built-in test camera: a moving scene with a clock, the frame number and the capture-time code.

Two scenes (`options.scene`): `simple`, flat colours and circles (cheap to encode: libx264 ultrafast at qp 23 needs about
1 Mbit/s at 720p30), and `camera`, as hard to encode as a real camera's picture: fine texture at every scale, the same
slow pan and sweeping box, and fresh sensor noise in every frame (about 4–5 Mbit/s for the same encoder). The benches
run on `camera`; both keep the time code and the clock.

A target to track (`options.target = "orbit"`): a magenta disc with a bright ring and a dark centre that circles the
sensor's centre at `target_speed` sensor pixels a second (default 200) on a circle of `target_radius` sensor pixels
(default a fifth of the sensor's height), in the sensor's own coordinates: moving the crop moves it in the picture, as
a real object would. `target_leave_s` seconds after the camera opens it leaves the scene. `target_disparity` (sensor
pixels, default 0) draws it that far to the left, as a right eye sees a near object: two test cameras as a stereo pair,
the right one with a disparity, show a target at a depth in front of a background at infinity. Its place at any instant
is `target_position`: the tests' truth.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from datetime import datetime

import cv2
import numpy as np

from vergence.config import CameraSettings
from vergence.errors import ConfigError, SourceEnded
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
SCENES = ("simple", "camera")
TARGETS = ("none", "orbit")
TARGET_SPEED_PX_S = 200.0
TARGET_RADIUS_OF_HEIGHT = 0.2  # the orbit's radius, of the sensor's height
TARGET_SIZE_OF_HEIGHT = 1 / 24  # the disc's radius, of the sensor's height
TARGET_YUV = (105, 212, 235)  # magenta (BGR 255, 0, 255) in BT.601: what the tests look for by its colour
# The camera scene, tuned on this machine (bench/quality.py): libx264 ultrafast at qp 23 needs 4.1 Mbit/s at 720p30.
TEXTURE_WEIGHT = 0.15
# The camera scene's sensor noise: Gaussian, in 8-bit levels (a small sensor's video mode in daylight), luma and chroma.
LUMA_NOISE_SIGMA = 1.7
CHROMA_NOISE_SIGMA = 0.85
NOISE_GRAIN_PX = 0.8  # the noise's correlation length (a Gaussian blur of white noise)
NOISE_MARGIN_PX = 64  # each frame reads the noise bank at a fresh offset up to this far: new noise, no new numbers


def _outlined_text(luma: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """Draw white text with a black outline on a luma plane, readable on any background."""
    thickness = max(1, round(2 * scale))
    cv2.putText(luma, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 16, thickness + 3, cv2.LINE_8)
    cv2.putText(luma, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 235, thickness, cv2.LINE_8)


def _option_float(camera: CameraSettings, key: str, default: float, zero: bool = False) -> float:
    text = camera.options.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"options.{key} must be a number, got {text!r}") from None
    if not (value >= 0 if zero else value > 0) or not math.isfinite(value):
        raise ConfigError(f"options.{key} must be {'0 or more' if zero else 'above 0'}, got {text!r}")
    return value


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


def render_texture(width: int, height: int, seed: int = 11) -> np.ndarray:
    """Return BGR texture of `width` x `height` with detail at every scale down to single pixels (foliage, gravel,
    fabric: what makes a real scene expensive to encode), tiling horizontally."""
    rng = np.random.default_rng(seed)
    texture = np.zeros((height, width), np.float32)
    for octave in range(7):  # from one pixel to 64 pixels, the fine octaves weaker as in natural images
        step = 2**octave
        coarse = rng.standard_normal((max(2, height // step), max(2, width // step + 1))).astype(np.float32)
        coarse[:, -1] = coarse[:, 0]  # tile: the last column repeats the first
        layer = cv2.resize(coarse, (width + step, height), interpolation=cv2.INTER_CUBIC)[:, :width]
        texture += layer * (9.0 + 3.0 * octave)
    patches = rng.standard_normal((max(2, height // 48), max(2, width // 48))).astype(np.float32)
    tint = cv2.resize(patches, (width, height), interpolation=cv2.INTER_CUBIC)  # slow colour changes
    bgr = np.dstack([texture - 12 * tint, texture + 6 * tint, texture + 14 * tint])
    return np.clip(bgr, -128, 127).astype(np.int16)


@functools.lru_cache(maxsize=4)
def render_camera_scene(width: int, height: int) -> np.ndarray:
    """Return the camera-like BGR scene: the simple scene's colours and shapes under a natural texture. Kept (read-only)
    for the next camera of this size: a stereo pair, a restart (it takes most of a second at 720p)."""
    scene = render_scene(width, height).astype(np.int16)
    textured = np.clip(scene * 0.8 + render_texture(width, height) * TEXTURE_WEIGHT + 20, 0, 255).astype(np.uint8)
    textured.setflags(write=False)
    return textured


def noise_bank(width: int, height: int, sigma: float, seed: int) -> np.ndarray:
    """Sensor noise around 128 (for cv2.addWeighted's −128 offset), NOISE_MARGIN_PX larger than the plane each way.
    Grainy as a camera's is after demosaicing and denoising (spatially correlated over about a pixel), not white."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((height + NOISE_MARGIN_PX, width + NOISE_MARGIN_PX)).astype(np.float32)
    grain = np.asarray(cv2.GaussianBlur(white, (0, 0), NOISE_GRAIN_PX), np.float32)
    scaled = grain * np.float32(sigma / max(float(grain.std()), 1e-6))
    return np.clip(np.rint(scaled + 128.0), 0, 255).astype(np.uint8)


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
        self._scene = camera.options.get("scene", "simple").strip().lower()
        if self._scene not in SCENES:
            raise ConfigError(f"options.scene must be one of {', '.join(SCENES)}, got {camera.options['scene']!r}")
        self._noise: list[np.ndarray] = []  # the camera scene's noise banks: luma, u, v
        self._noise_rng = np.random.default_rng()
        self._target = camera.options.get("target", "none").strip().lower()
        if self._target not in TARGETS:
            raise ConfigError(f"options.target must be one of {', '.join(TARGETS)}, got {camera.options['target']!r}")
        self._target_speed = _option_float(camera, "target_speed", TARGET_SPEED_PX_S)
        self._target_radius = _option_float(
            camera, "target_radius", TARGET_RADIUS_OF_HEIGHT * SENSOR_SCALE * self._height
        )
        self._target_leave_s = _option_float(camera, "target_leave_s", math.inf)
        self._target_disparity = _option_float(camera, "target_disparity", 0.0, zero=True)

    def open(self) -> SourceInfo:
        self._closed.clear()
        w, h = self._width, self._height
        sensor_w, sensor_h = SENSOR_SCALE * w, SENSOR_SCALE * h
        render = render_camera_scene if self._scene == "camera" else render_scene
        full = cv2.cvtColor(render(sensor_w, sensor_h), cv2.COLOR_BGR2YUV_I420)
        if self._scene == "camera":
            self._noise = [
                noise_bank(w, h, LUMA_NOISE_SIGMA, 1),
                noise_bank(w // 2, h // 2, CHROMA_NOISE_SIGMA, 2),
                noise_bank(w // 2, h // 2, CHROMA_NOISE_SIGMA, 3),
            ]
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
        crop = self._crop  # this frame's crop, whatever another thread sets meanwhile
        image = self._draw(time.time_ns(), crop)
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
            crop=crop.as_tuple(),
        )
        frame.timings_ms["capture"] = (time.perf_counter() - started) * 1000
        self._slot += 1
        self._seq += 1
        return frame

    def _draw(self, now_ns: int, crop: Rect | None = None) -> np.ndarray:
        """Render the scene through `crop` (default: the current one), the target, the moving box, the clock and the
        frame label (everything but the time code)."""
        crop = self._crop if crop is None else crop
        w, h = self._width, self._height
        image = np.empty((h * 3 // 2, w), np.uint8)
        luma, u_plane, v_plane = i420_planes(image, w, h)
        self._render_crop(crop, luma, u_plane, v_plane)
        if self._target != "none":
            self._draw_target(crop, luma, u_plane, v_plane)
        if self._noise:
            self._add_noise((luma, u_plane, v_plane))
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

    def _render_crop(self, crop: Rect, luma: np.ndarray, u_plane: np.ndarray, v_plane: np.ndarray) -> None:
        """Render the window of the sliding virtual scene that the crop selects, scaled to the output (the ISP's job)."""
        w = self._width
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

    def target_position(self, scene_s: float) -> tuple[float, float] | None:
        """Where the target's centre is on the sensor at the scene's instant `scene_s` (sensor pixels); None once it has
        left the scene (or there is none)."""
        if self._target == "none" or scene_s - self._t0 >= self._target_leave_s:
            return None
        sensor = self._geometry
        angle = scene_s * self._target_speed / max(1.0, self._target_radius)
        return (
            sensor.width / 2 + self._target_radius * math.cos(angle) - self._target_disparity,
            sensor.height / 2 + self._target_radius * math.sin(angle),
        )

    def _draw_target(self, crop: Rect, luma: np.ndarray, u_plane: np.ndarray, v_plane: np.ndarray) -> None:
        """Draw the target where it is on the sensor, as the crop shows it."""
        position = self.target_position(self._scene_s())
        if position is None:
            return
        scale = self._width / crop.width  # output pixels per sensor pixel
        x, y = (position[0] - crop.x) * scale, (position[1] - crop.y) * scale
        radius = TARGET_SIZE_OF_HEIGHT * self._geometry.height * scale
        if not (-radius < x < self._width + radius and -radius < y < self._height + radius):
            return
        shift = 4  # cv2's fixed-point coordinates: sub-pixel placement, so the disc glides instead of stepping
        for plane, factor, values in (
            (luma, 1, (TARGET_YUV[0], 235, 40)),
            (u_plane, 2, (TARGET_YUV[1],) * 3),
            (v_plane, 2, (TARGET_YUV[2],) * 3),
        ):
            centre = (round(x / factor * 16), round(y / factor * 16))
            for fraction, value in zip((1.0, 0.55, 0.2), values, strict=True):
                r = max(1, round(radius * fraction / factor * 16))
                cv2.circle(plane, centre, r, value, -1, cv2.LINE_AA, shift)

    def _add_noise(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Each frame's own sensor noise: the banks read at a fresh random offset (a sub-millisecond add per plane)."""
        dy, dx = (int(value) for value in self._noise_rng.integers(0, NOISE_MARGIN_PX, 2))
        for plane, bank, scale in zip(planes, self._noise, (1, 2, 2), strict=True):
            oy, ox = dy // scale, dx // scale
            noise = bank[oy : oy + plane.shape[0], ox : ox + plane.shape[1]]
            cv2.addWeighted(plane, 1.0, noise, 1.0, -128.0, dst=plane)

    def close(self) -> None:
        self._closed.set()
