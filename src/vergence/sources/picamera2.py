"""Raspberry Pi cameras through picamera2: YUV420 frames, pan/tilt/zoom by the ISP's ScalerCrop, flips by restarting,
full-resolution stills by a short switch to a still mode, and libcamera's software camera sync passed through for
stereo eyes.

picamera2 runs its own event loop thread: `capture_request` and `stop` are jobs queued to it. A job that times out
stays queued (and would later take a buffer it never gives back), and `stop` waits behind queued jobs for ever; so every
stop here first cancels what is queued (`cancel_all_and_flush`), and a capture that times out is a stall: the source
fails at once and the supervisor restarts it, since after libcamera's frontend timeout no frame comes until a restart.

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
from vergence.sources.picamera2_setup import (
    camera_index,
    claim_tuning,
    flag,
    i420_from_isp,
    is_limited_range,
    release_tuning,
    resolve_tuning,
    select_sensor_mode,
    sensor_modes,
    video_configuration,
)
from vergence.sources.sensor_modes import SensorMode, isp_aligned

log = logging.getLogger(__name__)

INSTALL_HINT = "apt install python3-picamera2 (Raspberry Pi OS; it brings python3-libcamera), and a venv made with --system-site-packages"
# Enough buffers that the ISP never waits for us while a frame is copied out (one with us, two queued), few enough to
# keep latency low: a control (a new ScalerCrop) rides on the next request queued, behind the ones already there, so
# with 3 it lands on the 3rd or 4th frame after it is set; with picamera2's default of 6 it would take 6.
BUFFER_COUNT = 3
# A camera that delivers nothing for this long (or for STALL_FRAMES frame times, if longer) has stalled: restart it. Short,
# so viewers see a picture again within 2 s; libcamera itself gives up after max(1 s, 5 frames) and cancels everything.
STALL_TIMEOUT_S = 0.5
STALL_FRAMES = 6
# A ScalerCrop lands 2–4 frames after it is set (it rides on the next request picamera2 queues); one not seen landed after
# this many frames was lost (picamera2 can drop a control set while it recycles a request) and is sent again.
CROP_RESEND_FRAMES = 8
# How often a capture waiting in picamera2 looks whether the source was closed: close() returns within about this.
CAPTURE_POLL_S = 0.05
STOP_ATTEMPTS = 5
# Frames with sync on but no sync state in their metadata before vergence says the tuning lacks rpi.sync.
SYNC_SILENT_FRAMES = 30
SYNC_MODES = ("off", "server", "client")


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
    crop_delay_frames = 3  # a ScalerCrop rides on the next request queued: it lands 2-4 frames on (BUFFER_COUNT)
    camera_make = "Raspberry Pi"

    def __init__(self, camera: CameraSettings) -> None:
        super().__init__(camera)
        self._index = camera_index(camera)
        self._tuning_option = camera.options.get("tuning_file") or None
        self._hflip = flag(camera.options, "hflip")
        self._vflip = flag(camera.options, "vflip")
        self._sync = camera.options.get("sync", "off").strip().lower() or "off"
        if self._sync not in SYNC_MODES:
            raise ConfigError(f"options.sync must be one of {', '.join(SYNC_MODES)}, got {camera.options['sync']!r}")
        self._sync_mode: Any = None  # libcamera's controls.rpi.SyncModeEnum value, when sync is on
        self._sync_off: Any = None
        sync_frames = camera.options.get("sync_frames", "")
        if sync_frames and not (sync_frames.isdigit() and int(sync_frames) > 0):
            raise ConfigError(f"options.sync_frames must be a number of frames ≥ 1, got {sync_frames!r}")
        self._sync_frames = int(sync_frames) if sync_frames else None  # None: libcamera's default (100)
        mode_option = camera.options.get("sensor_mode", "").strip().lower()
        if mode_option and not re.fullmatch(r"\d+x\d+", mode_option):
            raise ConfigError(
                f"options.sensor_mode must be a mode's size WxH (vergence cameras lists them), got {mode_option!r}"
            )
        self.sync_ready = False
        self._frames_without_sync = 0
        self.tuning = "default"
        self._camera: Any = None
        self._transform_type: Any = None
        self._mode: SensorMode | None = None
        self._pixel_array = (0, 0)
        self._geometry: SensorGeometry | None = None
        self._crop: Rect | None = None  # as the ISP applies it (isp_aligned): what frames report once it landed
        self._crop_frames = 0  # frames since the crop was set without it being seen in a frame's metadata
        self.crop_landed = True
        self._stride = camera.width
        self._limited_range = True
        self._auto_exposure_pending = False  # a still fixed exposure and gain: give them back to AE/AGC
        # Guards the camera object against a concurrent close, flip or crop; never held while waiting for a frame.
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._restarted = threading.Event()  # set after a flip's restart: a capture it cancelled may try again
        self._first_ns: int | None = None
        self._seq = 0
        self._model = "picamera2"
        self._still_request: _StillRequest | None = None  # set by capture_still, served and cleared by read()
        self._last_frame_at: float | None = None  # perf_counter when read() last returned a frame
        self._last_exposure: tuple[int, float] | None = None  # (ExposureTime µs, AnalogueGain) of the last frame
        self._sensitivity = 1.0  # of the video mode (libcamera's SensorSensitivity)

    @property
    def camera_model(self) -> str:
        return self._model

    @property
    def stall_timeout_s(self) -> float:
        return max(STALL_TIMEOUT_S, STALL_FRAMES / self.camera.fps)

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
            self._sync_off = sync_modes.Off
        tuning_name, tuning = resolve_tuning(self._tuning_option, Picamera2)
        claim_tuning(self._index, tuning_name)
        try:
            picam = self._open_picamera2(Picamera2, tuning)
        except BaseException:
            release_tuning(self._index)
            raise
        self.tuning = tuning_name
        self._model = str(picam.camera_properties.get("Model", "picamera2"))
        try:
            return self._opened()
        except BaseException:
            self.close()
            raise

    def _opened(self) -> SourceInfo:
        assert self._mode is not None  # chosen before the camera was configured
        described = self._describe_mode()
        log.info(
            "%s: picamera2 camera %d (%s) at %dx%d@%g from sensor mode %dx%d (field of view %.0f %%), tuning %s",
            self.camera.id,
            self._index,
            self._model,
            *self.camera.size,
            self.camera.fps,
            self._mode.width,
            self._mode.height,
            100 * described["field_of_view"],
            self.tuning,
        )
        return SourceInfo(self.camera.width, self.camera.height, self.camera.fps, described)

    def _open_picamera2(self, picamera2_class: Any, tuning: Any) -> Any:
        try:
            picam = picamera2_class(self._index, tuning=tuning)
        except Exception as err:
            raise SourceError(f"cannot open picamera2 camera {self._index} for {self.camera.id}: {err}") from err
        try:
            if self._sync_mode is not None and "SyncMode" not in picam.camera_controls:
                raise ConfigError(
                    f"options.sync: camera {self._index} offers no SyncMode control (libcamera ≥ 0.5 needed)"
                )
            self._pixel_array = tuple(int(v) for v in picam.sensor_resolution)  # type: ignore[assignment]
            self._mode = self._choose_mode(picam)
            with self._lock:
                self._closed.clear()
                self._camera = picam
                self._first_ns = None
                self._seq = 0
                try:
                    self._configure_and_start()
                except Exception as err:
                    self._camera = None
                    raise SourceError(
                        f"cannot start picamera2 camera {self._index} for {self.camera.id}: {err}"
                    ) from err
                self._geometry = self._read_geometry(picam)
        except BaseException:
            picam.close()
            raise
        return picam

    def _choose_mode(self, picam: Any) -> SensorMode:
        """The sensor mode to stream from (select_sensor_mode), the camera's modes listed once per process."""
        mode = select_sensor_mode(self.camera, sensor_modes(picam))
        if mode.max_fps < self.camera.fps * 0.99:
            log.warning(
                "%s: no sensor mode reaches %g fps; streaming at most %.2f fps from %dx%d",
                self.camera.id,
                self.camera.fps,
                mode.max_fps,
                mode.width,
                mode.height,
            )
        return mode

    def _describe_mode(self) -> dict[str, Any]:
        assert self._mode is not None
        return self._mode.describe(self._pixel_array, self.camera.size)

    def _video_controls(self) -> dict[str, Any]:
        controls: dict[str, Any] = {"FrameRate": self.camera.fps}
        if self._crop is not None:  # a restart keeps the view the viewer chose
            controls["ScalerCrop"] = self._crop.as_tuple()
        if self._auto_exposure_pending:
            # A still fixed exposure and gain, and libcamera keeps them fixed across configurations: 0 gives both back
            # to AE/AGC (picamera2 turns it into ExposureTimeMode / AnalogueGainMode auto).
            controls["ExposureTime"] = 0
            controls["AnalogueGain"] = 0
        if self._sync_mode is not None:
            # The server eye sets the frame timing; the client eye shifts its frames onto the server's. Frames flow
            # before the two are in step (SyncReady): a picture at once beats a perfectly paired one three seconds later.
            controls["SyncMode"] = self._sync_mode
            if self._sync_frames is not None:
                controls["SyncFrames"] = self._sync_frames
        return controls

    def _configure_and_start(self) -> None:
        """Configure the (stopped) camera with the current size, rate, flips and crop, and start it; lock held."""
        assert self._mode is not None
        config = video_configuration(
            self._camera,
            self.camera,
            self._mode,
            controls=self._video_controls(),
            transform=self._transform_type(hflip=int(self._hflip), vflip=int(self._vflip)),
            buffer_count=BUFFER_COUNT,
        )
        self._camera.configure(config)
        stream = self._camera.stream_configuration("main")
        if tuple(stream["size"]) != tuple(self.camera.size):
            raise SourceError(f"the camera chose {stream['size']} instead of {self.camera.size}")
        self._stride = int(stream.get("stride", self.camera.width))
        self._limited_range = is_limited_range(self._camera.camera_configuration().get("colour_space"))
        self._sensitivity = float(self._camera.camera_properties.get("SensorSensitivity", 1.0) or 1.0)
        self._camera.start()
        self._auto_exposure_pending = False
        self.sync_ready = False  # libcamera's sync starts afresh at every start
        self._frames_without_sync = 0
        self._crop_frames = 0

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

    def _stop_camera(self, picam: Any) -> None:
        """Stop the camera without waiting behind queued jobs (a capture waiting for a frame that may never come).

        The capture thread cancels its own job when it gives up, and with it a stop queued behind: then stop again.
        """
        for _ in range(STOP_ATTEMPTS):
            picam.cancel_all_and_flush()
            try:
                picam.stop()
                return
            except CancelledError:
                continue
        raise SourceError(f"picamera2 camera {self._index} did not stop")

    def _capture(self, picam: Any, timeout_s: float) -> Any:
        """Return picamera2's next completed request, waiting at most `timeout_s` (TimeoutError) and giving up at once
        when the source is closed (CancelledError). A job left queued would later take a buffer for good: cancelled."""
        job = picam.capture_request(wait=False)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return picam.wait(job, timeout=min(CAPTURE_POLL_S, max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                if not self._closed.is_set() and time.monotonic() < deadline:
                    continue
            picam.cancel_all_and_flush()
            try:  # completed between the last wait and the cancel: hand its buffers back
                job.get_result(timeout=0).release()
            except (CancelledError, TimeoutError):
                pass
            if self._closed.is_set():
                raise CancelledError()
            raise TimeoutError(f"no frame in {timeout_s:g} s")

    def read(self) -> Frame:
        timeout_s = self.stall_timeout_s
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
                request = self._capture(picam, timeout_s)
            except CancelledError:
                # Cancelled under us: by close() (the loop ends), or by a flip's restart (wait for it, then go on).
                self._restarted.wait(timeout_s)
                continue
            except TimeoutError as err:
                # A stall: after libcamera's frontend timeout only a restart brings frames back, so fail and let the
                # supervisor restart the camera.
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
            if self._sync_mode is not None:
                self._follow_sync(metadata)
            if "ExposureTime" in metadata and "AnalogueGain" in metadata:
                self._last_exposure = (int(metadata["ExposureTime"]), float(metadata["AnalogueGain"]))
            self._confirm_crop(picam, metadata.get("ScalerCrop"))
            frame = self._frame(array, metadata, started)
            self._after_live_frame(frame)
            return frame

    def _follow_sync(self, metadata: dict[str, Any]) -> None:
        """Capture thread: note SyncReady; say once when libcamera reports no sync state at all (its tuning file has no
        rpi.sync section, and then SyncMode is accepted and silently ignored)."""
        if "SyncReady" not in metadata:
            self._frames_without_sync += 1
            if self._frames_without_sync == SYNC_SILENT_FRAMES:
                log.warning(
                    "%s: options.sync = %r, but libcamera reports no sync state: the tuning file (%s) has no rpi.sync "
                    "section, so the eyes are not put in step",
                    self.camera.id,
                    self._sync,
                    self.tuning,
                )
            return
        if not self.sync_ready and metadata["SyncReady"]:
            self.sync_ready = True
            log.info("%s: camera sync (%s) ready", self.camera.id, self._sync)

    def _confirm_crop(self, picam: Any, reported: Any) -> None:
        """Capture thread: note when the crop asked for shows in a frame; send it again if it never arrived."""
        wanted = self._crop
        if wanted is None or reported is None or self.crop_landed:
            return
        if tuple(int(v) for v in reported) == wanted.as_tuple():
            self.crop_landed = True
            return
        self._crop_frames += 1
        if self._crop_frames >= CROP_RESEND_FRAMES:
            log.info(
                "%s: ScalerCrop %s not applied after %d frames; sending it again",
                self.camera.id,
                wanted,
                self._crop_frames,
            )
            self._crop_frames = 0
            with self._lock:
                if self._camera is picam and not self._closed.is_set():
                    picam.set_controls({"ScalerCrop": wanted.as_tuple()})

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
                        limited_range=frame.limited_range,
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
        mode = self._mode
        if mode is not None and mode.binning == 1 and self.camera.width >= width and self.camera.height >= height:
            request.next_frame = True  # the video frames already hold every sensor pixel: no reconfiguring, no stall
            return
        # The lock keeps a flip or close from reconfiguring the camera mid-switch; close() cancels the still's capture
        # first, so it never waits here longer than a configure.
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
                if self._closed.is_set():
                    raise SourceEnded(f"picamera2 camera {self._index} closed")
                self._stop_camera(picam)  # already stopped unless the still failed half-way
                self._configure_and_start()
            except Exception as err:
                self._still_request = None
                request.finish(error=error or SourceError(f"picamera2 camera {self._index}: {err}"))
                if isinstance(err, SourceEnded):
                    return
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

    def _still_exposure(self, picam: Any) -> dict[str, Any]:
        """ExposureTime and AnalogueGain for the still mode: the live frame's exposure, its gain scaled by how much less
        sensitive the still mode is (imx708: its full-resolution mode half as much as the binned video modes), gain past
        the sensor's maximum moved into the exposure time. Fixed, so the first frame is right and needs no AE."""
        if self._last_exposure is None:
            return {}
        exposure_us, gain = self._last_exposure
        still_sensitivity = float(picam.camera_properties.get("SensorSensitivity", 1.0) or 1.0)
        gain *= self._sensitivity / still_sensitivity
        max_gain = float(picam.camera_controls.get("AnalogueGain", (1.0, 16.0, 1.0))[1] or 16.0)
        if gain > max_gain:
            exposure_us, gain = round(exposure_us * gain / max_gain), max_gain
        return {"ExposureTime": int(exposure_us), "AnalogueGain": max(gain, 1.0)}

    def _capture_in_still_mode(self, picam: Any, width: int, height: int, started: float) -> Still:
        """Stop, switch to a still mode with the live view's crop, flips and exposure, take one frame, stop; lock held."""
        self._stop_camera(picam)
        controls: dict[str, Any] = {}
        if self._crop is not None:
            controls["ScalerCrop"] = self._crop.as_tuple()
        if self._sync_mode is not None:
            # A still mode's frame rate varies: libcamera's sync algorithm cannot run in it and logs an error every frame.
            controls["SyncMode"] = self._sync_off
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
        exposure = self._still_exposure(picam)
        if exposure:
            picam.set_controls(exposure)
            self._auto_exposure_pending = True  # fixed from now on in libcamera, until the video mode frees them
        limited = is_limited_range(picam.camera_configuration().get("colour_space"))
        picam.start()
        configured = time.perf_counter()
        # A still mode runs at the full-resolution mode's rate (imx477: 10 fps) and may expose longer: allow three frames.
        request = self._capture(picam, max(self.stall_timeout_s, 1.0))
        try:
            array = request.make_array("main")
            metadata = request.get_metadata()
        finally:
            request.release()
        self._stop_camera(picam)
        taken = time.perf_counter()
        image = i420_from_isp(array, width, height, int(stream.get("stride", width)))
        return Still(
            image=image,
            width=width,
            height=height,
            capture_ns=self._capture_ns(metadata),
            full_resolution=True,
            reconfigured=True,
            stall_ms=0.0,  # known at the first live frame after it
            capture_ms=(taken - started) * 1000,
            timings_ms={"to_still_mode": (configured - started) * 1000, "still_frame": (taken - configured) * 1000},
            limited_range=limited,
        )

    @staticmethod
    def _capture_ns(metadata: dict[str, Any]) -> int:
        """When the frame's exposure began, on the wall clock viewers share.

        SensorTimestamp (CLOCK_MONOTONIC) and FrameWallClock (CLOCK_REALTIME, libcamera ≥ 0.5) mark the start of the
        frame's readout, when its exposure has just ended; it began ExposureTime earlier.
        """
        wall_ns = metadata.get("FrameWallClock")
        if not wall_ns:
            wall_ns = int(metadata["SensorTimestamp"]) + time.time_ns() - time.monotonic_ns()
        return int(wall_ns) - int(metadata.get("ExposureTime", 0)) * 1000

    def _frame(self, array: np.ndarray, metadata: dict[str, Any], started: float) -> Frame:
        width, height = self.camera.size
        image = i420_from_isp(array, width, height, self._stride)
        sensor_ns = int(metadata["SensorTimestamp"])
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
            capture_ns=self._capture_ns(metadata),
            camera=self.camera.id,
            limited_range=self._limited_range,
            crop=_reported_crop(metadata.get("ScalerCrop")),
        )
        frame.timings_ms["capture"] = (time.perf_counter() - started) * 1000
        self._seq += 1
        return frame

    def sensor_geometry(self) -> SensorGeometry | None:
        return self._geometry

    def status(self) -> dict[str, Any]:
        return {
            "model": self._model,
            "tuning": self.tuning,
            "sync": {"mode": self._sync, "ready": self.sync_ready},
            "crop": list(self._crop.as_tuple()) if self._crop is not None else None,
            "crop_landed": self.crop_landed,
        }

    def set_crop(self, crop: Rect) -> None:
        with self._lock:
            geometry, mode = self._geometry, self._mode
            if geometry is not None and mode is not None:
                crop = isp_aligned(crop, mode, (geometry.crop_min_width, geometry.crop_min_height))
            if crop == self._crop:
                return
            self._crop, self.crop_landed, self._crop_frames = crop, False, 0
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
                self._stop_camera(self._camera)
                self._configure_and_start()
            except Exception as err:
                raise SourceError(f"picamera2 camera {self._index} failed to restart: {err}") from err
            finally:
                self._restarted.set()

    def close(self) -> None:
        self._closed.set()
        picam = self._camera
        if picam is not None:
            # A capture waiting in picamera2 (for a frame, or a still's) gives up now, so nothing below waits behind it.
            picam.cancel_all_and_flush()
        with self._lock:
            picam, self._camera = self._camera, None
            still, self._still_request = self._still_request, None
        self._restarted.set()
        if still is not None:
            still.finish(error=SourceEnded(f"picamera2 camera {self._index} closed before the still was taken"))
        if picam is not None:
            try:
                self._stop_camera(picam)  # the capture thread leaves picamera2 within CAPTURE_POLL_S meanwhile
                picam.close()  # releases the camera
            except Exception as err:  # closing must never fail: the device is being given up anyway
                log.warning("%s: closing picamera2 camera %d: %s", self.camera.id, self._index, err)
            release_tuning(self._index)


def _reported_crop(reported: Any) -> tuple[int, int, int, int] | None:
    """The ScalerCrop a frame's metadata reports (the crop it really has), as (x, y, width, height)."""
    try:
        x, y, width, height = (int(value) for value in reported)
    except (TypeError, ValueError):
        return None
    return (x, y, width, height)
