"""Raspberry Pi cameras through picamera2: YUV420 frames, pan/tilt/zoom by the ISP's ScalerCrop, flips by restarting,
full-resolution stills by a short switch to a still mode, and libcamera's software camera sync passed through for
stereo eyes.

picamera2 (with its libcamera bindings) is optional and imported only when a camera is opened.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import CancelledError
from typing import Any

import numpy as np

from vergence.config import CameraSettings
from vergence.errors import ConfigError, SourceEnded, SourceError
from vergence.media.frame import TIME_BASE, Frame
from vergence.ptz import Rect, SensorGeometry
from vergence.sources.base import Source, SourceInfo, Still, register

log = logging.getLogger(__name__)

INSTALL_HINT = "apt install python3-picamera2 (Raspberry Pi OS; it brings python3-libcamera)"
# Enough buffers that the ISP never waits for us while a frame is copied out, few enough to keep latency low.
BUFFER_COUNT = 4
# A camera that delivers nothing for this long (or for 10 frame periods, if longer) has stalled.
STALL_TIMEOUT_S = 2.0
SYNC_MODES = ("off", "server", "client")
# Passed from the last live frame to the still mode, so its first frame is exposed right and need not wait for AE.
STILL_CARRIED_CONTROLS = ("ExposureTime", "AnalogueGain")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(options: dict[str, str], key: str) -> bool:
    value = options.get(key, "").strip().lower()
    if value not in _TRUE | _FALSE:
        raise ConfigError(f"options.{key} must be true or false, got {options[key]!r}")
    return value in _TRUE


def camera_index(camera: CameraSettings) -> int:
    """Return the libcamera camera number: `options.camera_index`, else the id's trailing number (cam1 → 1), else 0."""
    value = camera.options.get("camera_index")
    if value is None:
        match = re.search(r"(\d+)$", camera.id)
        return int(match.group(1)) if match else 0
    if not value.strip().isdigit():
        raise ConfigError(f"options.camera_index must be a camera number 0, 1, …, got {value!r}")
    return int(value)


def _i420(array: np.ndarray, width: int, height: int, stride: int) -> np.ndarray:
    """Return a packed I420 image (h*3/2, w) from the ISP's YUV420 buffer, whose rows are `stride` bytes."""
    if stride == width:
        return array
    flat = array.reshape(-1)
    luma = flat[: stride * height].reshape(height, stride)[:, :width]
    half_stride, half_w, half_h = stride // 2, width // 2, height // 2
    start = stride * height
    u = flat[start : start + half_stride * half_h].reshape(half_h, half_stride)[:, :half_w]
    start += half_stride * half_h
    v = flat[start : start + half_stride * half_h].reshape(half_h, half_stride)[:, :half_w]
    return np.concatenate([luma.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(height * 3 // 2, width)


class _StillRequest:
    """A still asked for by another thread and taken by the capture thread, which alone calls capture_request."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.taken_up = False
        self.next_frame = False  # the video mode already has every sensor pixel: the next live frame is the still
        self.started = 0.0  # perf_counter when taken up
        self.last_frame_at = 0.0  # perf_counter of the live frame before it
        self.still: Still | None = None  # a reconfigured still waits here for the first live frame after it
        self.error: Exception | None = None

    def finish(self, still: Still | None = None, error: Exception | None = None) -> None:
        self.still, self.error = still, error
        self.done.set()


@register("picamera2")
class Picamera2Source(Source):
    """One libcamera camera. Crops move live (no restart); a flip restarts this camera only; a full-resolution still
    switches this camera to a still mode and back, on its capture thread, between two live frames."""

    crops_at_sensor = True
    camera_make = "Raspberry Pi"

    def __init__(self, camera: CameraSettings) -> None:
        super().__init__(camera)
        self._index = camera_index(camera)
        self._tuning = camera.options.get("tuning_file") or None
        self._hflip = _flag(camera.options, "hflip")
        self._vflip = _flag(camera.options, "vflip")
        self._sync = camera.options.get("sync", "off").strip().lower() or "off"
        if self._sync not in SYNC_MODES:
            raise ConfigError(f"options.sync must be one of {', '.join(SYNC_MODES)}, got {camera.options['sync']!r}")
        self._sync_mode: Any = None  # libcamera's controls.rpi.SyncModeEnum value, when sync is on
        sync_frames = camera.options.get("sync_frames", "")
        if sync_frames and not (sync_frames.isdigit() and int(sync_frames) > 0):
            raise ConfigError(f"options.sync_frames must be a number of frames ≥ 1, got {sync_frames!r}")
        self._sync_frames = int(sync_frames) if sync_frames else None  # None: libcamera's default (100)
        self.sync_ready = False
        self._camera: Any = None
        self._transform_type: Any = None
        self._geometry: SensorGeometry | None = None
        self._crop: Rect | None = None
        self._stride = camera.width
        # Guards the camera object against a concurrent close, flip or crop; never held while waiting for a frame.
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._restarted = threading.Event()  # set after a flip's restart: a capture it cancelled may try again
        self._first_ns: int | None = None
        self._seq = 0
        self._model = "picamera2"
        self._still_request: _StillRequest | None = None  # set by capture_still, served and cleared by read()
        self._last_frame_at: float | None = None  # perf_counter when read() last returned a frame
        self._last_controls: dict[str, Any] = {}  # STILL_CARRIED_CONTROLS of the last frame

    @property
    def camera_model(self) -> str:
        return self._model

    def open(self) -> SourceInfo:
        try:
            from libcamera import Transform, controls
            from picamera2 import Picamera2
        except ImportError as err:
            raise ConfigError(f"picamera2 is not installed: {INSTALL_HINT}") from err
        self._transform_type = Transform
        if self._sync != "off":
            sync_modes = getattr(getattr(controls, "rpi", None), "SyncModeEnum", None)
            if sync_modes is None:
                raise ConfigError(f"options.sync = {self._sync!r}: this libcamera has no software camera sync (≥ 0.5)")
            self._sync_mode = getattr(sync_modes, self._sync.capitalize())
        try:
            picam = Picamera2(self._index, tuning=self._tuning)
        except Exception as err:
            raise SourceError(f"cannot open picamera2 camera {self._index} for {self.camera.id}: {err}") from err
        if self._sync_mode is not None and "SyncMode" not in picam.camera_controls:
            picam.close()
            raise ConfigError(
                f"options.sync: camera {self._index} offers no SyncMode control (a Raspberry Pi 5 needed)"
            )
        with self._lock:
            self._closed.clear()
            self._camera = picam
            self._first_ns = None
            self._seq = 0
            self.sync_ready = False
            try:
                self._configure_and_start()
            except Exception as err:
                self._camera = None
                picam.close()
                raise SourceError(f"cannot start picamera2 camera {self._index} for {self.camera.id}: {err}") from err
            self._geometry = self._read_geometry(picam)
        model = self._model = str(picam.camera_properties.get("Model", "picamera2"))
        log.info(
            "%s: picamera2 camera %d (%s) at %dx%d@%g",
            self.camera.id,
            self._index,
            model,
            *self.camera.size,
            self.camera.fps,
        )
        return SourceInfo(self.camera.width, self.camera.height, self.camera.fps)

    def _configure_and_start(self) -> None:
        """Configure the (stopped) camera with the current size, rate, flips and crop, and start it; lock held."""
        controls: dict[str, Any] = {"FrameRate": self.camera.fps}
        if self._crop is not None:  # a restart keeps the view the viewer chose
            controls["ScalerCrop"] = self._crop.as_tuple()
        if self._sync_mode is not None:
            # The server eye sets the frame timing; the client eye shifts its frames onto the server's. Frames flow
            # before the two are in step (SyncReady): a picture at once beats a perfectly paired one three seconds later.
            controls["SyncMode"] = self._sync_mode
            if self._sync_frames is not None:
                controls["SyncFrames"] = self._sync_frames
        config = self._camera.create_video_configuration(
            main={"size": self.camera.size, "format": "YUV420"},
            controls=controls,
            transform=self._transform_type(hflip=int(self._hflip), vflip=int(self._vflip)),
            buffer_count=BUFFER_COUNT,
        )
        self._camera.configure(config)
        stream = self._camera.stream_configuration("main")
        if tuple(stream["size"]) != tuple(self.camera.size):
            raise SourceError(f"the camera chose {stream['size']} instead of {self.camera.size}")
        self._stride = int(stream.get("stride", self.camera.width))
        self._camera.start()

    @staticmethod
    def _read_geometry(picam: Any) -> SensorGeometry:
        width, height = picam.sensor_resolution
        crop_min, crop_max_control, _default = picam.camera_controls["ScalerCrop"]
        crop_max = picam.camera_properties.get("ScalerCropMaximum") or crop_max_control
        return SensorGeometry(
            width=int(width),
            height=int(height),
            crop_max=Rect(*(int(v) for v in crop_max)),
            crop_min_width=int(crop_min[2]),
            crop_min_height=int(crop_min[3]),
        )

    def read(self) -> Frame:
        timeout_s = max(STALL_TIMEOUT_S, 10 / self.camera.fps)
        while True:
            picam = self._camera
            if self._closed.is_set() or picam is None:
                raise SourceEnded(f"picamera2 camera {self._index} closed")
            still = self._still_request
            if still is not None and not still.taken_up:
                self._take_up_still(still)
                continue
            self._restarted.clear()
            try:
                request = picam.capture_request(wait=timeout_s)
            except CancelledError:
                # Stopped under us: by close() (the loop ends), or by a flip's restart (wait for it, then go on).
                self._restarted.wait(timeout_s)
                continue
            except TimeoutError as err:
                if self._closed.is_set():
                    continue
                raise SourceError(f"picamera2 camera {self._index} delivered no frame for {timeout_s:g} s") from err
            except Exception as err:
                if self._closed.is_set():
                    continue
                raise SourceError(f"picamera2 camera {self._index} failed: {err}") from err
            try:
                started = time.perf_counter()
                array = request.make_array("main")
                metadata = request.get_metadata()
            finally:
                request.release()
            sensor_ns = int(metadata["SensorTimestamp"])
            if self._sync_mode is not None and not self.sync_ready and metadata.get("SyncReady"):
                self.sync_ready = True
                log.info("%s: camera sync (%s) ready", self.camera.id, self._sync)
            self._last_controls = {key: metadata[key] for key in STILL_CARRIED_CONTROLS if key in metadata}
            frame = self._frame(array, sensor_ns, started)
            self._after_live_frame(frame)
            return frame

    def _after_live_frame(self, frame: Frame) -> None:
        """Capture thread: hand a waiting still its picture or its stall (the gap this frame ends)."""
        now = time.perf_counter()
        still = self._still_request
        if still is not None and still.taken_up:
            stall_ms = (now - still.last_frame_at) * 1000
            if still.next_frame:
                still.finish(
                    Still(
                        image=frame.image.copy(),  # the pipeline may draw on the frame's own picture
                        width=frame.width,
                        height=frame.height,
                        capture_ns=frame.capture_ns,
                        full_resolution=True,
                        reconfigured=False,
                        stall_ms=stall_ms,
                        capture_ms=(now - still.started) * 1000,
                    )
                )
            elif still.still is not None:
                still.still.stall_ms = stall_ms
                still.finish(still.still)
            self._still_request = None
        self._last_frame_at = now

    # Stills

    def still_size(self) -> tuple[int, int]:
        """Return the size of a full-resolution still: the current crop in sensor pixels, even, within the sensor."""
        geometry = self._geometry
        if geometry is None:
            return self.camera.size
        crop = self._crop or geometry.crop_max
        return min(crop.width, geometry.width) & ~1, min(crop.height, geometry.height) & ~1

    def capture_still(self, timeout_s: float) -> Still | None:
        request = _StillRequest()
        with self._lock:
            if self._camera is None or self._closed.is_set():
                raise SourceEnded(f"picamera2 camera {self._index} is not running")
            if self._still_request is not None:
                raise SourceError(f"picamera2 camera {self._index} is already taking a still")
            self._still_request = request
        if not request.done.wait(timeout_s):
            with self._lock:
                if self._still_request is request and not request.taken_up:
                    self._still_request = None
            raise SourceError(f"picamera2 camera {self._index} took no still within {timeout_s:g} s")
        if request.error is not None:
            raise request.error
        return request.still

    def _take_up_still(self, request: _StillRequest) -> None:
        """Capture thread: serve a still between two live frames; SourceError when the video mode cannot come back."""
        request.taken_up = True
        request.started = time.perf_counter()
        request.last_frame_at = self._last_frame_at or request.started
        width, height = self.still_size()
        if self.camera.width >= width and self.camera.height >= height:
            request.next_frame = True  # no sensor pixel to gain: no reconfiguring, no stall
            return
        # The lock keeps a flip or close from reconfiguring the camera mid-switch; close() waits for it (a few hundred ms,
        # at most STALL_TIMEOUT_S for the still's frame), then finds the camera in its video mode as always.
        with self._lock:
            picam = self._camera
            if picam is None or self._closed.is_set():
                self._still_request = None
                request.finish(error=SourceEnded(f"picamera2 camera {self._index} closed"))
                return
            still: Still | None = None
            error: Exception | None = None
            try:
                still = self._capture_in_still_mode(picam, width, height, request.started)
            except Exception as err:
                error = SourceError(f"picamera2 camera {self._index} could not take a still: {err}")
            back = time.perf_counter()
            try:
                picam.stop()  # already stopped unless the still failed half-way
                self._configure_and_start()
            except Exception as err:
                self._still_request = None
                request.finish(error=error or SourceError(f"picamera2 camera {self._index}: {err}"))
                raise SourceError(f"picamera2 camera {self._index} failed to return to video: {err}") from err
            finally:
                self._restarted.set()
        if still is None:
            self._still_request = None
            request.finish(error=error)
            return
        still.timings_ms["to_video_mode"] = (time.perf_counter() - back) * 1000
        request.still = still  # finished by the first live frame, which ends the stall
        log.info(
            "%s: still %dx%d taken in %.0f ms (%s)",
            self.camera.id,
            width,
            height,
            still.capture_ms,
            ", ".join(f"{step} {ms:.0f} ms" for step, ms in still.timings_ms.items()),
        )

    def _capture_in_still_mode(self, picam: Any, width: int, height: int, started: float) -> Still:
        """Stop, switch to a still mode with the live view's crop, flips and exposure, take one frame, stop; lock held."""
        picam.stop()
        controls: dict[str, Any] = {
            key: value for key, value in self._last_controls.items() if key in picam.camera_controls
        }
        if self._crop is not None:
            controls["ScalerCrop"] = self._crop.as_tuple()
        # The raw stream at the full pixel array makes libcamera pick the full-resolution sensor mode: a zoomed crop
        # then gets real sensor pixels, not a binned mode's pixels scaled up.
        config = picam.create_still_configuration(
            main={"size": (width, height), "format": "YUV420"},
            raw={"size": tuple(picam.sensor_resolution)},
            controls=controls,
            transform=self._transform_type(hflip=int(self._hflip), vflip=int(self._vflip)),
            buffer_count=1,
        )
        picam.configure(config)
        stream = picam.stream_configuration("main")
        if tuple(stream["size"]) != (width, height):
            raise SourceError(f"the camera chose {stream['size']} instead of {width}x{height} for a still")
        picam.start()
        configured = time.perf_counter()
        request = picam.capture_request(wait=STALL_TIMEOUT_S)
        try:
            array = request.make_array("main")
            metadata = request.get_metadata()
        finally:
            request.release()
        picam.stop()
        taken = time.perf_counter()
        image = _i420(array, width, height, int(stream.get("stride", width)))
        return Still(
            image=image,
            width=width,
            height=height,
            capture_ns=int(metadata["SensorTimestamp"]) + time.time_ns() - time.monotonic_ns(),
            full_resolution=True,
            reconfigured=True,
            stall_ms=0.0,  # known at the first live frame after it
            capture_ms=(taken - started) * 1000,
            timings_ms={"to_still_mode": (configured - started) * 1000, "still_frame": (taken - configured) * 1000},
        )

    def _frame(self, array: np.ndarray, sensor_ns: int, started: float) -> Frame:
        width, height = self.camera.size
        image = _i420(array, width, height, self._stride)
        # SensorTimestamp is CLOCK_MONOTONIC (the V4L2 buffer time); move it onto the wall clock the viewers share.
        capture_ns = sensor_ns + time.time_ns() - time.monotonic_ns()
        if self._first_ns is None:
            self._first_ns = sensor_ns
        pts = (sensor_ns - self._first_ns) * TIME_BASE.denominator // 1_000_000_000
        frame = Frame(
            image=image,
            pix_fmt="yuv420p",
            width=width,
            height=height,
            seq=self._seq,
            pts=pts,
            capture_ns=capture_ns,
            camera=self.camera.id,
        )
        frame.timings_ms["capture"] = (time.perf_counter() - started) * 1000
        self._seq += 1
        return frame

    def sensor_geometry(self) -> SensorGeometry | None:
        return self._geometry

    def set_crop(self, crop: Rect) -> None:
        with self._lock:
            self._crop = crop
            if self._camera is not None and not self._closed.is_set():
                self._camera.set_controls({"ScalerCrop": crop.as_tuple()})

    def set_flip(self, horizontal: bool, vertical: bool) -> None:
        with self._lock:
            if (horizontal, vertical) == (self._hflip, self._vflip):
                return
            self._hflip, self._vflip = horizontal, vertical
            if self._camera is None or self._closed.is_set():
                return
            log.info(
                "%s: restarting picamera2 camera %d to flip (h=%s, v=%s)",
                self.camera.id,
                self._index,
                horizontal,
                vertical,
            )
            try:
                self._camera.stop()
                self._configure_and_start()
            except Exception as err:
                raise SourceError(f"picamera2 camera {self._index} failed to restart: {err}") from err
            finally:
                self._restarted.set()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            picam, self._camera = self._camera, None
            still, self._still_request = self._still_request, None
        self._restarted.set()
        if still is not None:
            still.finish(error=SourceEnded(f"picamera2 camera {self._index} closed before the still was taken"))
        if picam is not None:
            try:
                picam.stop()
                picam.close()
            except Exception as err:  # closing must never fail: the device is being given up anyway
                log.warning("%s: closing picamera2 camera %d: %s", self.camera.id, self._index, err)
