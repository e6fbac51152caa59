"""The fake's hardware: which modules are plugged in, the light they see, the faults a test injects, and what each camera did.

Tests call `attach(["imx219", "imx708"])` (or set VERGENCE_FAKE_LIBCAMERA_SENSORS=imx219,imx708 for a server started as a
subprocess) before the camera manager is created, and read `camera(n)` (n in picamera2's numbering) for its counters:
`frames`, `configures`, `starts`, `stops`, `acquires`, `releases`, `timeouts`, `sync_errors`, `configs` (each
configuration applied), `requested_controls` (every control a request carried, in order), `start_controls` (those
of each start()), `tuning` (the file in effect).

Faults: `stall(n)` makes camera n's sensor stop delivering, as a loose ribbon cable does; libcamera then times the
frontend out (max(1 s, 5 frame times) after the last frame), cancels every request and delivers nothing until the
application stops and starts the camera, which "reseats the cable". VERGENCE_FAKE_LIBCAMERA_STALL_EVERY=N stalls each
camera after N frames of every run.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from .sensors import SENSORS, SensorMode, SensorModel

ENV_SENSORS = "VERGENCE_FAKE_LIBCAMERA_SENSORS"
ENV_STALL_EVERY = "VERGENCE_FAKE_LIBCAMERA_STALL_EVERY"
ENV_PLATFORM = "VERGENCE_FAKE_LIBCAMERA_PLATFORM"  # "pisp" (Raspberry Pi 5, the default) or "vc4" (Pi 4 and earlier)
# What a configure costs beyond allocating buffers (formats on the sensor, CSI-2 receiver and ISP; the IPA's configure):
# a few ioctls and the IPA's set-up. An assumption, not a measurement on a Pi.
CONFIGURE_FIXED_S = 0.003
# dma-heap buffers: the kernel zeroes and maps their pages, roughly 1 GB/s on a Pi; taken as 2 ms per MB for margin.
ALLOC_S_PER_MB = 0.002
# A frame is read out at the mode's top speed: about 90 % of its shortest frame time (the rest is blanking).
READOUT_SHARE = 0.9


@dataclass(frozen=True)
class AppliedConfig:
    """One configure() as the camera applied it."""

    mode: SensorMode
    main_size: tuple[int, int]
    main_format: str
    colour_range: str  # "full" or "limited"
    raw: bool
    buffer_count: int
    flips: tuple[bool, bool]  # (horizontal, vertical), from the configuration's orientation
    buffer_bytes: int  # what the application allocated for it (every stream, every buffer)


@dataclass
class CameraRecord:
    """What one attached camera has done, kept across camera managers (and so across Picamera2 instances)."""

    num: int
    sensor: SensorModel
    frames: int = 0
    configures: int = 0
    starts: int = 0
    stops: int = 0
    acquires: int = 0
    releases: int = 0
    timeouts: int = 0
    sync_errors: int = 0
    tuning: str = ""  # the tuning file in effect
    tuning_data: dict[str, Any] = field(default_factory=dict)
    configs: list[AppliedConfig] = field(default_factory=list)
    requested_controls: list[dict[str, Any]] = field(default_factory=list)
    start_controls: list[dict[str, Any]] = field(default_factory=list)  # the controls of each start(), by name
    stalled: bool = False
    stall_next_run: bool = False  # the next start() delivers nothing at all (stall(n, from_next_start=True))
    stall_after: int = 0  # frames into each run after which the sensor stalls (0: never)


_lock = threading.Lock()
_cameras: list[CameraRecord] = []
light = 1.0  # scene brightness: auto-exposure follows it, a fixed exposure does not
# The software sync server's frame grid (t0_ns, frame_ns) while a camera runs with SyncMode Server. The real one sends it
# over UDP multicast; every client on the network (here: in the process) follows it.
sync_server: tuple[int, int] | None = None


def attach(models: list[str] | tuple[str, ...] = ("imx219",)) -> None:
    """Plug in these modules (picamera2 camera 0, 1, …) and start every counter from zero."""
    unknown = [name for name in models if name not in SENSORS]
    if unknown or not 0 < len(models) <= 2:
        raise ValueError(f"models must be one or two of {sorted(SENSORS)}, got {list(models)}")
    global light, sync_server
    stall_every = int(os.environ.get(ENV_STALL_EVERY, "0") or 0)
    with _lock:
        _cameras[:] = [CameraRecord(num, SENSORS[name], stall_after=stall_every) for num, name in enumerate(models)]
        light, sync_server = 1.0, None


def cameras() -> list[CameraRecord]:
    return list(_cameras)


def camera(num: int) -> CameraRecord:
    """Return the record of camera `num` (picamera2's numbering)."""
    return _cameras[num]


def stall(num: int, from_next_start: bool = False) -> None:
    """Make camera `num`'s sensor stop delivering until the camera is next started (or, `from_next_start`, deliver
    nothing in the run the next start() begins: a mode switch that never produces a frame)."""
    with _lock:
        if from_next_start:
            _cameras[num].stall_next_run = True
        else:
            _cameras[num].stalled = True


def set_light(level: float) -> None:
    """Change how bright the scene is (1.0 at the start)."""
    global light
    light = float(level)


def platform() -> str:
    value = os.environ.get(ENV_PLATFORM, "pisp").strip().lower()
    if value not in ("pisp", "vc4"):
        raise ValueError(f"{ENV_PLATFORM} must be pisp or vc4, got {value!r}")
    return value


def _from_env() -> list[str]:
    value = os.environ.get(ENV_SENSORS, "").strip()
    return [name.strip() for name in value.split(",") if name.strip()] if value else ["imx219"]


attach(_from_env())


def first_frame_s(mode: SensorMode, frame_ns: int) -> float:
    """How long after start() the first frame completes: half a frame of exposure, then the readout (camera.py)."""
    return (frame_ns // 2 + round(mode.min_frame_ns * READOUT_SHARE)) / 1e9


def configure_s(config: AppliedConfig) -> float:
    """What a configure costs, the application's buffer allocation included (the figures above)."""
    return CONFIGURE_FIXED_S + ALLOC_S_PER_MB * config.buffer_bytes / 1e6
