"""The Source interface and the registry of source backends."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from vergence.config import CameraSettings
from vergence.media.frame import Frame
from vergence.ptz import Rect, SensorGeometry


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What a source delivers."""

    width: int
    height: int
    fps: float
    #: The sensor mode a camera streams from, where the backend knows it (picamera2): size, bit depth, top frame rate,
    #: the window of the pixel array it reads ("crop"), binning, and the share of the sensor's field it shows.
    sensor_mode: dict[str, Any] | None = None


@dataclass(slots=True)
class Still:
    """A photo straight from the camera, as `Source.capture_still` returns it."""

    image: np.ndarray  # packed I420, shape (h*3/2, w)
    width: int
    height: int
    capture_ns: int  # wall clock, as Frame.capture_ns
    full_resolution: bool  # every sensor pixel of the shown crop is in it (no upscaling lost detail)
    reconfigured: bool  # the camera left its video mode for it
    stall_ms: float  # longest gap between two live frames around the still (about one frame time when none)
    capture_ms: float  # from the request being taken up to the still in hand
    timings_ms: dict[str, float] = field(default_factory=dict)  # steps of a reconfigured still, for benchmarks
    limited_range: bool = False  # video range (a live frame taken as the still), expanded when encoded as JPEG


class Source(ABC):
    """A producer of Frames, read from one thread.

    `read()` blocks until the next frame and raises `SourceEnded` when there are no more (or after `close()`), `SourceError`
    when capture fails: the supervisor opens the source again after either. `SourceFinished` says the source is done for
    good (a file played once), and the stream ends. `close()` may be called from any thread, any number of times, and unblocks a pending `read()`.
    """

    kind: ClassVar[str]

    def __init__(self, camera: CameraSettings) -> None:
        self.camera = camera

    @abstractmethod
    def open(self) -> SourceInfo:
        """Start capturing and return what will be delivered."""

    @abstractmethod
    def read(self) -> Frame:
        """Return the next frame."""

    @abstractmethod
    def close(self) -> None:
        """Stop capturing and release the device."""

    # Pan/tilt/zoom. A source that crops at the sensor (picamera2's ScalerCrop, the test pattern's virtual sensor) says so
    # with `crops_at_sensor` and applies crops itself; for the others the pipeline crops and scales in software.
    crops_at_sensor: ClassVar[bool] = False
    #: Frames from setting a crop to the first frame that has it (the tracker aims that far ahead).
    crop_delay_frames: ClassVar[int] = 1

    def sensor_geometry(self) -> SensorGeometry | None:
        """Return the sensor's size and crop limits, once opened (None: the delivered picture is the whole sensor)."""
        return None

    def set_crop(self, crop: Rect) -> None:
        """Show only `crop` (sensor pixels), scaled to the output size, from the next frames on; any thread may call it."""
        raise NotImplementedError(f"{self.kind} does not crop at the sensor")

    def set_flip(self, horizontal: bool, vertical: bool) -> None:
        """Mirror the picture; a backend may restart itself to do it (only itself, never another camera)."""
        raise NotImplementedError(f"{self.kind} cannot flip")

    def status(self) -> dict[str, Any]:
        """What the camera reports about itself for /api/stats (picamera2: sync, the crop applied, tuning)."""
        return {}

    # Stills and what a photo's EXIF says about the camera.
    camera_make: str = ""

    @property
    def camera_model(self) -> str:
        """The camera's name for a photo's EXIF Model."""
        return self.kind

    def capture_still(self, timeout_s: float) -> Still | None:
        """Return a photo at the sensor's full resolution for the current crop (None: this source cannot take one).

        Called from any thread but the capture thread; blocks up to `timeout_s` and raises SourceError on failure.
        """
        return None


_BACKENDS: dict[str, type[Source]] = {}
# vergence's own backends by name, each imported the first time a camera names it (as uvicorn picks a protocol by name):
# this module imports none of them, so each may import it. picamera2's registers without importing the picamera2
# package: that happens when such a camera is opened.
BUILTIN_BACKENDS = {
    "testpattern": "vergence.sources.testpattern",
    "av": "vergence.sources.av",
    "picamera2": "vergence.sources.picamera2",
}


def register(kind: str) -> Callable[[type[Source]], type[Source]]:
    """Register a Source class under a name usable as `source = "<name>"` in the config."""

    def decorate(cls: type[Source]) -> type[Source]:
        cls.kind = kind
        _BACKENDS[kind] = cls
        return cls

    return decorate


def backend_for(camera: CameraSettings) -> type[Source]:
    """Return the Source class for a camera: a registered name, else PyAV for a path, URL or device."""
    name = camera.source if camera.source in _BACKENDS or camera.source in BUILTIN_BACKENDS else "av"
    if name not in _BACKENDS:
        importlib.import_module(BUILTIN_BACKENDS[name])  # the module registers its class
    return _BACKENDS[name]


def create_source(camera: CameraSettings) -> Source:
    """Build the Source a camera's settings ask for."""
    return backend_for(camera)(camera)
