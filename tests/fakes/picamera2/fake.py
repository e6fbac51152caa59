"""The fake's world: which sensor modules are attached, what each camera has done, and the picture a crop shows.

Tests choose the modules with `configure(models=["imx219", "imx708"])` (or the environment variable
`VERGENCE_FAKE_PICAMERA2_MODELS=imx219,imx708`, for a server started as a subprocess) and read `camera(n)` for the
counters of camera n: `frames`, `configures`, `starts`, `stops`, `opens`, `closes`, `set_controls_calls`,
`transforms`, `outstanding_requests`, `configs` (each configuration applied: use case, size, sensor mode, frame time).

Timing model (what a mode switch costs; it decides how long a full-resolution still stalls the live stream). Each figure
is an assumption, stated with its reason; none was measured on a Pi:
- Sensor modes and their top frame rates are those `rpicam-hello --list-cameras` prints for each module (10-bit modes):
  imx219 640x480 206.65, 1640x1232 41.85, 1920x1080 47.57, 3280x2464 21.19 fps; imx477 1332x990 120.05,
  2028x1080 50.03, 2028x1520 40.01, 4056x3040 10.00 fps; imx708 1536x864 120.13, 2304x1296 56.03,
  4608x2592 14.35 fps. (The Raspberry Pi documentation quotes 15 fps for the imx219 at full size: an older driver.)
- A configuration runs in the smallest mode that covers its main and raw sizes (as libcamera's mode choice does for an
  output it need not upscale), and no faster than that mode allows. Simplification: every mode keeps the full field
  of view here, though the fastest ones crop the sensor on the real modules.
- configure() takes CONFIGURE_FIXED_S plus CONFIGURE_S_PER_MB per MB of buffers (buffer_count x framesize, and a raw
  buffer at 10 bits per pixel when asked for): setting formats on the sensor, CSI-2 receiver and ISP and configuring the
  IPA are a few ioctls, while the buffers come from the dma-heap, whose pages the kernel zeroes and maps; at roughly
  1 GB/s for zeroing plus mapping on a Pi that is about 1 ms per MB, taken as 2 ms for margin.
- The first frame after start() arrives one frame time after it: the sensor has to expose and read out a whole frame
  before the first buffer completes. Not modelled: the few frames the real IPA may hide after a mode switch while its
  algorithms settle (sensor-specific; fixing exposure and gain, as vergence does for a still, shortens that).
- stop() costs nothing here; the real one waits for the frame in flight (at most one frame time).
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

ENV_MODELS = "VERGENCE_FAKE_PICAMERA2_MODELS"
# Faults: the Nth frame of every run fails as a sensor dropout does (a loose ribbon cable, interference on the CSI-2
# link): libcamera logs "Camera frontend has timed out!" and the request errors. 0 = never.
ENV_FAIL_EVERY = "VERGENCE_FAKE_PICAMERA2_FAIL_EVERY"


def fail_every() -> int:
    """Frames per run before the fake sensor drops out (0: never), from VERGENCE_FAKE_PICAMERA2_FAIL_EVERY."""
    return int(os.environ.get(ENV_FAIL_EVERY, "0") or 0)


CONFIGURE_FIXED_S = 0.003  # formats on the sensor, CSI-2 receiver and ISP; IPA configure (see the module docstring)
CONFIGURE_S_PER_MB = 0.002  # dma-heap buffers: zeroed and mapped pages (see the module docstring)
WORLD_SCALE = 4  # the scene is drawn at 1/4 of the sensor's resolution: cheap, and still shows where a crop sits
STRIDE_ALIGN = 64  # the ISP pads YUV420 rows to this many bytes, so width ≠ stride happens and must be handled


@dataclass(frozen=True)
class SensorMode:
    """One readout mode of a sensor: the size it delivers and its top frame rate."""

    width: int
    height: int
    max_fps: float

    def covers(self, width: int, height: int) -> bool:
        return self.width >= width and self.height >= height


@dataclass(frozen=True)
class SensorModel:
    """One Raspberry Pi camera module, as libcamera describes it."""

    model: str
    width: int
    height: int
    crop_min: tuple[int, int]  # smallest ScalerCrop, in sensor pixels (the ISP's minimum, scaled up by binning)
    i2c_address: str
    modes: tuple[SensorMode, ...]  # smallest first; the last is the full pixel array

    @property
    def full_area(self) -> tuple[int, int, int, int]:
        return (0, 0, self.width, self.height)

    @property
    def max_fps(self) -> float:
        return max(mode.max_fps for mode in self.modes)

    def mode_for(self, width: int, height: int) -> SensorMode:
        """Return the mode a configuration delivering width x height runs in: the smallest that covers it."""
        covering = [mode for mode in self.modes if mode.covers(width, height)]
        return min(covering, key=lambda mode: mode.width * mode.height) if covering else self.modes[-1]


SENSORS: dict[str, SensorModel] = {
    "imx219": SensorModel(
        "imx219",
        3280,
        2464,
        (64, 64),
        "10",
        (
            SensorMode(640, 480, 206.65),
            SensorMode(1640, 1232, 41.85),
            SensorMode(1920, 1080, 47.57),
            SensorMode(3280, 2464, 21.19),
        ),
    ),
    "imx477": SensorModel(
        "imx477",
        4056,
        3040,
        (64, 64),
        "1a",
        (
            SensorMode(1332, 990, 120.05),
            SensorMode(2028, 1080, 50.03),
            SensorMode(2028, 1520, 40.01),
            SensorMode(4056, 3040, 10.0),
        ),
    ),
    "imx708": SensorModel(
        "imx708",
        4608,
        2592,
        (128, 128),
        "1a",
        (SensorMode(1536, 864, 120.13), SensorMode(2304, 1296, 56.03), SensorMode(4608, 2592, 14.35)),
    ),
}


@dataclass(frozen=True)
class AppliedConfig:
    """One configure() as the camera applied it."""

    use_case: str
    size: tuple[int, int]
    mode: SensorMode
    frame_ns: int
    buffer_bytes: int
    seconds: float  # what configure() took
    controls: dict[str, Any] = field(default_factory=dict)  # the configuration's controls


@dataclass
class CameraState:
    """What one camera has been asked to do and has delivered, kept across Picamera2 instances."""

    num: int
    sensor: SensorModel
    frames: int = 0
    configures: int = 0
    starts: int = 0
    stops: int = 0
    opens: int = 0
    closes: int = 0
    outstanding_requests: int = 0
    acquired: bool = False
    set_controls_calls: list[dict[str, Any]] = field(default_factory=list)
    transforms: list[tuple[int, int]] = field(default_factory=list)  # (hflip, vflip) of each configure()
    tunings: list[Any] = field(default_factory=list)  # the `tuning` of each Picamera2(...)
    configs: list[AppliedConfig] = field(default_factory=list)  # each configure(), in order


_lock = threading.Lock()
_cameras: list[CameraState] = []
# The software camera-sync server's frame grid, (t0_ns, frame_ns), while a camera runs with SyncMode Server. The real one
# announces it over UDP multicast; clients in the same process (or on the same network) fall in step with it.
sync_server: tuple[int, int] | None = None


def configure(models: list[str] | tuple[str, ...] = ("imx219",)) -> None:
    """Attach these modules (camera 0, 1, …) and reset every counter."""
    unknown = [name for name in models if name not in SENSORS]
    if unknown or not 0 < len(models) <= 2:
        raise ValueError(f"models must be one or two of {sorted(SENSORS)}, got {list(models)}")
    with _lock:
        _cameras[:] = [CameraState(num, SENSORS[name]) for num, name in enumerate(models)]


def reset() -> None:
    """Reset the counters, keeping the attached modules."""
    configure([state.sensor.model for state in _cameras])


def cameras() -> list[CameraState]:
    """Return the state of every attached camera."""
    return list(_cameras)


def camera(num: int) -> CameraState:
    """Return the state (counters) of camera `num`."""
    return _cameras[num]


def camera_id(state: CameraState) -> str:
    """Return the libcamera id of a camera: its device-tree path, with the CSI port of its number."""
    return f"/base/soc/i2c0mux/i2c@{1 - state.num}/{state.sensor.model}@{state.sensor.i2c_address}"


def stride_for(width: int) -> int:
    """Return the row stride, in bytes, of a YUV420 buffer `width` pixels wide."""
    return -(-width // STRIDE_ALIGN) * STRIDE_ALIGN


_worlds: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _world(sensor: SensorModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return Y, U and V of the scene in front of a sensor: gradients across and down, with a checkerboard."""
    if sensor.model not in _worlds:
        w, h = sensor.width // WORLD_SCALE, sensor.height // WORLD_SCALE
        x = np.arange(w, dtype=np.float32)[None, :] / w
        y = np.arange(h, dtype=np.float32)[:, None] / h
        checker = ((np.arange(w)[None, :] // 16 + np.arange(h)[:, None] // 16) % 2).astype(np.float32)
        luma = 30 + 150 * x + 20 * y + 40 * checker
        u = np.broadcast_to(40 + 176 * y, (h, w))
        v = np.broadcast_to(40 + 176 * x, (h, w))
        _worlds[sensor.model] = tuple(np.ascontiguousarray(p.astype(np.uint8)) for p in (luma, u, v))  # type: ignore[assignment]
    return _worlds[sensor.model]


# The scene stands still, so a picture depends only on its arguments: kept, the fake spends no time redrawing a 12 MP
# still (time the real ISP does not take from the caller either). Read-only: make_array() hands out copies.
@functools.lru_cache(maxsize=8)
def render(
    model: str, crop: tuple[int, int, int, int], size: tuple[int, int], hflip: bool = False, vflip: bool = False
) -> np.ndarray:
    """Return the I420 picture (shape (h*3/2, w)) a `model` sensor shows for ScalerCrop `crop` at output `size`."""
    sensor = SENSORS[model]
    width, height = size
    x, y, w, h = (v // WORLD_SCALE for v in crop)
    planes = []
    sizes = ((width, height), (width // 2, height // 2), (width // 2, height // 2))
    for plane, (pw, ph) in zip(_world(sensor), sizes, strict=True):
        window = plane[y : y + max(1, h), x : x + max(1, w)]
        scaled = cv2.resize(window, (pw, ph), interpolation=cv2.INTER_LINEAR)
        if hflip:
            scaled = scaled[:, ::-1]
        if vflip:
            scaled = scaled[::-1]
        planes.append(scaled)
    picture = np.concatenate([planes[0].reshape(-1), planes[1].reshape(-1), planes[2].reshape(-1)]).reshape(
        height * 3 // 2, width
    )
    picture.flags.writeable = False
    return picture


def padded(i420: np.ndarray, width: int, height: int, stride: int) -> np.ndarray:
    """Return an I420 picture laid out as the ISP writes it: rows of `stride` bytes, shape (h*3/2, stride)."""
    if stride == width:
        return i420  # already that layout (the caller's copy): a 12 MP still is not copied once more
    flat = np.zeros(stride * height * 3 // 2, np.uint8)
    quarter = (height // 2) * (width // 2)
    chroma = i420[height:].reshape(-1)
    flat[: stride * height].reshape(height, stride)[:, :width] = i420[:height]
    offset = stride * height
    half = stride // 2
    for plane in (chroma[:quarter], chroma[quarter:]):
        flat[offset : offset + half * (height // 2)].reshape(height // 2, half)[:, : width // 2] = plane.reshape(
            height // 2, width // 2
        )
        offset += half * (height // 2)
    return flat.reshape(height * 3 // 2, stride)


def clamp_crop(sensor: SensorModel, crop: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Return the ScalerCrop libcamera would apply for a requested one.

    As the Raspberry Pi pipeline handler does: grow to at least the minimum size (at the request's aspect ratio),
    keep the centre, then move (and if need be shrink) the rectangle to lie inside the sensor.
    """
    x, y, w, h = crop
    w, h = max(w, 1), max(h, 1)
    min_w, min_h = sensor.crop_min
    # Expand the minimum to the request's aspect ratio (libcamera's Size::expandedToAspectRatio).
    if min_w * h < min_h * w:
        min_w = -(-min_h * w // h)
    else:
        min_h = -(-min_w * h // w)
    new_w, new_h = max(w, min_w), max(h, min_h)
    cx, cy = x + w // 2, y + h // 2
    new_w, new_h = min(new_w, sensor.width), min(new_h, sensor.height)
    nx = min(max(cx - new_w // 2, 0), sensor.width - new_w)
    ny = min(max(cy - new_h // 2, 0), sensor.height - new_h)
    return (nx, ny, new_w, new_h)


def configure_seconds(buffer_bytes: int) -> float:
    """Return how long configure() takes for this many bytes of buffers (see the module docstring)."""
    return CONFIGURE_FIXED_S + CONFIGURE_S_PER_MB * buffer_bytes / 1e6


def _models_from_env() -> list[str]:
    value = os.environ.get(ENV_MODELS, "").strip()
    return [name.strip() for name in value.split(",") if name.strip()] if value else ["imx219"]


configure(_models_from_env())
