"""libcamera's CameraManager and Camera, with the Raspberry Pi pipeline handler and IPA behind them, modelled on
libcamera's sources (src/libcamera/pipeline/rpi/common/pipeline_base.cpp, pisp/pisp.cpp, src/ipa/rpi/) without hardware.

What is modelled, because an application meets it:
- The camera manager reads LIBCAMERA_RPI_TUNING_FILE once, when it is created, for every camera; a path is taken
  relative to the working directory, and a file that does not load leaves every camera unregistered.
- Requests: queued requests are filled one per sensor frame, in order; a frame with no request queued is lost. A
  request completes at the end of its frame's readout and reaches the application through the manager's eventfd.
- Controls ride on requests. ScalerCrop applies to the frame of the request carrying it (the ISP); exposure, gain and
  frame duration reach the sensor two frames later (DelayedControls). Controls the IPA holds stay set across
  configurations: a fixed ExposureTime or AnalogueGain keeps AE/AGC manual until it is set back to automatic.
- ScalerCrop is placed as applyScalerCrop does: grown to the minimum (max(32, (out−1)/16+2) mode pixels, at the
  request's aspect ratio), kept centred, moved inside the mode's analog crop, rounded to mode pixels; never an error.
  The metadata reports the crop applied. ScalerCropMaximum is the configured mode's analog crop.
- Sensor modes (sensors.py) with their analog crops, frame rates and sensitivities; without a sensor configuration the
  mode is chosen by libcamera's score from the raw stream's size, or the main stream's.
- Strides and frame sizes of the PiSP (Raspberry Pi 5): YUV420 rows of 2·align64(w/2) bytes.
- Colour: the video colour spaces (Rec709, SMPTE170M) are limited range, sYCC full; the picture is written so.
- Timestamps: SensorTimestamp is the start of the frame's readout (CLOCK_MONOTONIC), FrameWallClock the same instant
  on CLOCK_REALTIME; the exposure ended there and began ExposureTime earlier.
- Frontend timeout: a sensor that stops delivering is timed out after max(1 s, 5 frame times); every queued request
  is then cancelled, and no frame comes until stop() and start().
- Software camera sync (SyncMode, SyncFrames; rpi.sync in the tuning): the server announces its frame grid, a client
  moves its frames onto it; both report SyncReady once SyncFrames frames have passed since the server started. Sync
  state starts afresh at every start(). Without rpi.sync in the tuning file SyncMode is accepted and ignored. In a
  variable frame rate (a still configuration's FrameDurationLimits) the sync algorithm logs an error every frame.
Not modelled: startup frames the IPA hides after a start, AE/AWB convergence (auto-exposure is right from the first
frame), the raw stream's pictures (its buffers are allocated and left empty), lores streams' own crops.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import threading
import time
import weakref
from collections import deque
from typing import Any

from . import controls, properties, rig
from ._libcamera import (
    CameraConfiguration,
    ColorSpace,
    ControlInfo,
    FrameBuffer,
    FrameMetadata,
    Orientation,
    PixelFormat,
    Rectangle,
    Request,
    SensorConfiguration,
    Size,
    Stream,
    StreamConfiguration,
    StreamFormats,
    StreamRole,
)
from .geometry import apply_scaler_crop, default_isp_crop, isp_to_native
from .ipa import Ipa, SyncState
from .scene import render_i420, write_rgb, write_yuv420
from .sensors import SensorMode, SensorModel, isp_min_crop

log = logging.getLogger("libcamera")

YUV_FORMATS = ("YUV420", "YVU420")
RGB_FORMATS = ("RGB888", "BGR888", "XRGB8888", "XBGR8888")
MAX_FRAME_US = 1_000_000_000
CONTROL_DELAY_FRAMES = 2  # exposure and gain reach the sensor two frames after their request (DelayedControls)


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def _sensor_id(record: rig.CameraRecord) -> str:
    """The device-tree path libcamera names a camera by; picamera2's camera 0 sorts first (it sorts ids descending)."""
    port = "88000" if record.num == 0 else "80000"
    return f"/base/axi/pcie@1000120000/rp1/i2c@{port}/{record.sensor.model}@{record.sensor.i2c_address}"


def _load_tuning(path: str | None, sensor: SensorModel) -> tuple[str, dict[str, Any]] | None:
    """Return (file, tuning) as the IPA loads it, or None when it cannot (the camera then does not register)."""
    if path is None:
        default = f"/usr/share/libcamera/ipa/rpi/{rig.platform()}/{sensor.model}.json"
        return default, {"version": 2.0, "target": rig.platform(), "algorithms": [{"rpi.agc": {}}, {"rpi.sync": {}}]}
    try:
        with open(path) as file:  # relative to the working directory, as the IPA opens it
            tuning = json.load(file)
    except (OSError, ValueError) as err:
        log.error("RPI: Failed to load tuning data file %s: %s", path, err)
        return None
    return os.path.abspath(path), tuning


def _has_algorithm(tuning: dict[str, Any], name: str) -> bool:
    if tuning.get("version", 1) == 1:
        return name in tuning
    return any(name in algorithm for algorithm in tuning.get("algorithms", []))


class CameraManager:
    """libcamera's CameraManager as the binding wraps it: one at a time, alive while anyone holds it."""

    version = "v0.5.2+fake"
    _current: weakref.ReferenceType[CameraManager] | None = None
    _singleton_lock = threading.Lock()

    @staticmethod
    def singleton() -> CameraManager:
        with CameraManager._singleton_lock:
            manager = CameraManager._current() if CameraManager._current is not None else None
            if manager is None:
                manager = CameraManager()
                CameraManager._current = weakref.ref(manager)
            return manager

    def __init__(self) -> None:
        self._event_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._completed: list[Request] = []
        self._lock = threading.Lock()
        tuning_path = os.environ.get("LIBCAMERA_RPI_TUNING_FILE")
        self._cameras: list[Camera] = []
        # libcamera enumerates in its own order; picamera2 renumbers by sorting ids, so list them the other way round.
        for record in reversed(rig.cameras()):
            tuning = _load_tuning(tuning_path, record.sensor)
            if tuning is None:
                continue
            record.tuning, record.tuning_data = tuning
            self._cameras.append(Camera(self, record, tuning[1]))

    def __del__(self) -> None:
        try:
            os.close(self._event_fd)
        except OSError:
            pass

    @property
    def cameras(self) -> list[Camera]:
        return list(self._cameras)

    @property
    def event_fd(self) -> int:
        return self._event_fd

    def get(self, camera_id: str) -> Camera:
        for camera in self._cameras:
            if camera.id == camera_id:
                return camera
        raise RuntimeError(f"Failed to find camera {camera_id}")

    find = get

    def get_ready_requests(self) -> list[Request]:
        try:
            os.eventfd_read(self._event_fd)
        except BlockingIOError:
            return []
        with self._lock:
            ready, self._completed = self._completed, []
        return ready

    def _complete(self, request: Request) -> None:
        """Hand a finished (or cancelled) request to the application: called from the camera's own thread."""
        with self._lock:
            self._completed.append(request)
        os.eventfd_write(self._event_fd, 1)


class Camera:
    """One camera of the Raspberry Pi pipeline handler."""

    def __init__(self, manager: CameraManager, record: rig.CameraRecord, tuning: dict[str, Any]) -> None:
        # The binding's camera keeps its manager alive from C++; a plain reference here would make a cycle (the manager
        # lists its cameras) that only the garbage collector ends, and the "one at a time" manager would outlive its users.
        self._manager_ref = weakref.ref(manager)
        self._record = record
        self._sensor = record.sensor
        self._tuning = tuning
        self._sync_supported = _has_algorithm(tuning, "rpi.sync")
        self.id = _sensor_id(record)
        self._cond = threading.Condition()
        self._acquired = False
        self._running = False
        self._error = False  # the frontend timed out: nothing more until stop() and start()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._queue: deque[Request] = deque()
        self._ipa = Ipa()
        self._sync = SyncState(self._sync_supported, record)
        self._mode: SensorMode | None = None
        self._config: CameraConfiguration | None = None
        self._main: StreamConfiguration | None = None
        self._isp_crop = (0, 0, 0, 0)
        self._isp_min = (32, 32)
        self._maps: weakref.WeakKeyDictionary[FrameBuffer, mmap.mmap] = weakref.WeakKeyDictionary()
        self._pending: list[tuple[int, dict[str, Any]]] = []  # (sequence it applies from, controls)

    # Description

    @property
    def controls(self) -> dict[Any, ControlInfo]:
        mode = self._mode or self._sensor.modes[-1]
        min_frame_us = round(mode.min_frame_ns / 1000)
        info = {
            controls.AeEnable: ControlInfo(False, True, True),
            controls.ExposureTime: ControlInfo(26, 66_666, 20_000),
            controls.ExposureTimeMode: ControlInfo(0, 1, 0),
            controls.AnalogueGain: ControlInfo(1.0, 16.0, 1.0),
            controls.AnalogueGainMode: ControlInfo(0, 1, 0),
            controls.AwbEnable: ControlInfo(False, True, True),
            controls.Brightness: ControlInfo(-1.0, 1.0, 0.0),
            controls.Contrast: ControlInfo(0.0, 32.0, 1.0),
            controls.Saturation: ControlInfo(0.0, 32.0, 1.0),
            controls.Sharpness: ControlInfo(0.0, 16.0, 1.0),
            controls.ColourGains: ControlInfo(0.0, 32.0, None),
            controls.FrameDurationLimits: ControlInfo(min_frame_us, MAX_FRAME_US, 33_333),
            controls.draft.NoiseReductionMode: ControlInfo(0, 4, 0),
            controls.rpi.SyncMode: ControlInfo(0, 2, 0),
            controls.rpi.SyncFrames: ControlInfo(1, 1_000_000, 100),
        }
        if self._mode is not None and self._main is not None:
            analog = self._mode.analog_crop
            minimum = isp_to_native((0, 0, *self._isp_min), analog, self._mode.size)
            default = isp_to_native(default_isp_crop(self._mode.size, self._main_size()), analog, self._mode.size)
            info[controls.ScalerCrop] = ControlInfo(Rectangle(*minimum), Rectangle(*analog), Rectangle(*default))
        return info

    @property
    def properties(self) -> dict[Any, Any]:
        sensor = self._sensor
        return {
            properties.Model: sensor.model,
            properties.Location: 2,
            properties.Rotation: 0,
            properties.PixelArraySize: Size(sensor.width, sensor.height),
            properties.PixelArrayActiveAreas: [Rectangle(*sensor.full_area)],
            properties.UnitCellSize: Size(*sensor.unit_cell_nm),
            properties.ScalerCropMaximum: Rectangle(*self._mode.analog_crop) if self._mode else Rectangle(),
            properties.SensorSensitivity: self._mode.sensitivity if self._mode else 1.0,
            properties.draft.ColorFilterArrangement: 3 if sensor.bayer == "BGGR" else 0,
            properties.SystemDevices: [20749, 20750],
        }

    @property
    def streams(self) -> set[Stream]:
        return {cfg.stream for cfg in self._config or [] if cfg.stream is not None}

    def __str__(self) -> str:
        return f"Camera({self.id})"

    # Ownership

    def acquire(self) -> None:
        with self._cond:
            if self._acquired:
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
            self._acquired = True
        self._record.acquires += 1

    def release(self) -> None:
        with self._cond:
            if self._running:
                raise RuntimeError("Failed to release camera: Device or resource busy")
            self._acquired = False
        self._record.releases += 1

    # Configuration

    def generate_configuration(self, roles: list[StreamRole]) -> CameraConfiguration:
        sensor = self._sensor
        raw_sizes: dict[str, list[Size]] = {}
        for mode in sensor.modes:
            raw_sizes.setdefault(sensor.raw_format(mode), []).append(Size(*mode.size))
        isp_sizes = {fmt: [Size(64, 64), Size(sensor.width, sensor.height)] for fmt in YUV_FORMATS + RGB_FORMATS}
        configs = []
        for role in roles:
            cfg = StreamConfiguration(role, StreamFormats(raw_sizes if role == StreamRole.Raw else isp_sizes))
            if role == StreamRole.Raw:
                mode = sensor.modes[-1]
                cfg.size, cfg.pixel_format = Size(*mode.size), PixelFormat(sensor.raw_format(mode))
            else:
                cfg.size, cfg.pixel_format = Size(1920, 1080), PixelFormat("YUV420")
            cfg.buffer_count = 4
            configs.append(cfg)
        return CameraConfiguration(self, configs)

    def _validate(self, config: CameraConfiguration) -> CameraConfiguration.Status:
        status = CameraConfiguration.Status.Valid
        if config.orientation not in (
            Orientation.Rotate0,
            Orientation.Rotate0Mirror,
            Orientation.Rotate180,
            Orientation.Rotate180Mirror,
        ):
            config.orientation = Orientation.Rotate0  # the sensor flips; it cannot transpose
            status = CameraConfiguration.Status.Adjusted
        raws = [cfg for cfg in config if cfg.role == StreamRole.Raw or str(cfg.pixel_format).endswith("_CSI2P")]
        outputs = [cfg for cfg in config if cfg not in raws]
        if len(raws) > 1 or not 0 < len(outputs) <= 2:
            return CameraConfiguration.Status.Invalid
        mode = self._choose_mode(config, raws, outputs)
        if mode is None:
            return CameraConfiguration.Status.Invalid
        pisp = rig.platform() == "pisp"
        for cfg in outputs:
            fmt = str(cfg.pixel_format)
            if fmt not in YUV_FORMATS + RGB_FORMATS:
                cfg.pixel_format, fmt = PixelFormat("YUV420"), "YUV420"
                status = CameraConfiguration.Status.Adjusted
            width = min(max(cfg.size.width & ~1, 64), 16384)
            height = min(max(cfg.size.height & ~1, 64), 16384)
            if (width, height) != (cfg.size.width, cfg.size.height):
                cfg.size = Size(width, height)
                status = CameraConfiguration.Status.Adjusted
            if fmt in YUV_FORMATS:
                stride = 2 * _align(width // 2, 64 if pisp else 32)
                frame_size = stride * height * 3 // 2
            else:
                stride = _align(width * (4 if fmt.startswith("X") else 3), 64 if pisp else 32)
                frame_size = stride * height
            cfg.stride = max(cfg.stride, stride) if cfg.stride else stride
            cfg.frame_size = frame_size if cfg.stride == stride else cfg.stride * frame_size // stride
            if cfg.color_space is None:
                cfg.color_space = ColorSpace.Sycc()
            cfg.buffer_count = max(1, cfg.buffer_count)
        for cfg in raws:
            cfg.size = Size(*mode.size)
            cfg.pixel_format = PixelFormat(self._sensor.raw_format(mode))
            cfg.stride = _align(mode.width * mode.bit_depth // 8, 32)
            cfg.frame_size = cfg.stride * mode.height
            cfg.color_space = ColorSpace.Raw()
            cfg.buffer_count = max(1, cfg.buffer_count)
        config.sensor_config = config.sensor_config or SensorConfiguration()
        config.sensor_config.bit_depth = mode.bit_depth
        config.sensor_config.output_size = Size(*mode.size)
        config.sensor_config.analog_crop = Rectangle(*mode.analog_crop)
        config._mode = mode  # type: ignore[attr-defined]
        return status

    def _choose_mode(
        self, config: CameraConfiguration, raws: list[StreamConfiguration], outputs: list[StreamConfiguration]
    ) -> SensorMode | None:
        """The sensor configuration's mode when one is given, else the best by libcamera's score."""
        sensor_config = config.sensor_config
        if sensor_config is not None and sensor_config.output_size.width:
            wanted = (sensor_config.output_size.width, sensor_config.output_size.height)
            for mode in self._sensor.modes:
                if mode.size == wanted and (not sensor_config.bit_depth or mode.bit_depth == sensor_config.bit_depth):
                    return mode
            return None
        target = raws[0] if raws else outputs[0]
        size = (target.size.width, target.size.height)
        depth = int(str(target.pixel_format)[7:9]) if raws and str(target.pixel_format)[7:9].isdigit() else 12

        def score(mode: SensorMode) -> float:
            def part(desired: float, actual: float) -> float:
                diff = desired - actual
                return -diff / 4 if diff < 0 else diff * 2

            value = part(size[0], mode.width) + part(size[1], mode.height)
            value += 1500 * part(size[0] / size[1], mode.width / mode.height)
            return value + 500 * abs(depth - mode.bit_depth)

        return min(self._sensor.modes, key=score)

    def configure(self, config: CameraConfiguration) -> int:
        with self._cond:
            if not self._acquired or self._running:
                return -13  # -EACCES: the binding raises for any non-zero return
            if self._validate(config) == CameraConfiguration.Status.Invalid:
                return -22
            mode: SensorMode = config._mode  # type: ignore[attr-defined]
            for cfg in config:
                cfg.stream = Stream(cfg)
            self._config, self._mode = config, mode
            self._main = next(cfg for cfg in config if cfg.role != StreamRole.Raw)
            output = self._main_size()
            self._isp_min = isp_min_crop(output)
            self._isp_crop = default_isp_crop(mode.size, output)
            low, high = self._ipa.frame_limits_us
            self._ipa.frame_limits_us = (max(low, round(mode.min_frame_ns / 1000)), max(high, low))
            self._maps = weakref.WeakKeyDictionary()
        time.sleep(rig.CONFIGURE_FIXED_S)
        colour = self._main.color_space
        self._record.configures += 1
        self._record.configs.append(
            rig.AppliedConfig(
                mode=mode,
                main_size=output,
                main_format=str(self._main.pixel_format),
                colour_range="limited" if colour is not None and colour.range == ColorSpace.Range.Limited else "full",
                raw=any(cfg.role == StreamRole.Raw for cfg in config),
                buffer_count=self._main.buffer_count,
                flips=(
                    config.orientation in (Orientation.Rotate0Mirror, Orientation.Rotate180),
                    config.orientation in (Orientation.Rotate180Mirror, Orientation.Rotate180),
                ),
                buffer_bytes=sum(cfg.frame_size * cfg.buffer_count for cfg in config),
            )
        )
        return 0

    def _main_size(self) -> tuple[int, int]:
        assert self._main is not None
        return (self._main.size.width, self._main.size.height)

    # Running

    def create_request(self, cookie: int = 0) -> Request:
        return Request(cookie)

    def start(self, controls_: dict[Any, Any] | None = None) -> None:
        with self._cond:
            if self._config is None or self._running:
                raise RuntimeError("Failed to start camera")
            self._generation += 1
            self._running, self._error = True, False
            self._queue.clear()
            self._pending = []
            start_controls = {key.name: value for key, value in (controls_ or {}).items()}
            self._record.start_controls.append(start_controls)
            self._apply_now(start_controls)
            # A start after a timeout: the application "reseated the cable" (unless the test wants this run dark too).
            self._record.stalled, self._record.stall_next_run = self._record.stall_next_run, False
            self._record.starts += 1
            self._sync = SyncState(self._sync_supported, self._record)  # libcamera's sync starts afresh at every start
            self._thread = threading.Thread(
                target=self._run, args=(self._generation,), name=f"fake-sensor-{self._record.num}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            if not self._running:
                return
            self._running = False
            self._generation += 1
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()  # the frame in flight finishes first, as the real stop() waits for it
        with self._cond:
            cancelled = list(self._queue)
            self._queue.clear()
            self._error = False
            if rig.sync_server is not None and self._sync.server_grid == rig.sync_server:
                rig.sync_server = None
        for request in cancelled:
            self._cancel(request)
        self._record.stops += 1

    def queue_request(self, request: Request) -> None:
        with self._cond:
            if not self._running:
                raise RuntimeError("Failed to queue request")
            request.status = Request.Status.Pending
            if request.controls:
                self._record.requested_controls.append({key.name: value for key, value in request.controls.items()})
            self._queue.append(request)
            self._cond.notify_all()

    def _complete(self, request: Request) -> None:
        manager = self._manager_ref()
        if manager is not None:
            manager._complete(request)

    def _cancel(self, request: Request) -> None:
        request.status = Request.Status.Cancelled
        for buffer in request.buffers.values():
            buffer.metadata.status = FrameMetadata.Status.Cancelled
        self._complete(request)

    # The sensor and ISP

    def _frame_ns(self) -> int:
        low, _high = self._ipa.frame_limits_us
        mode = self._mode
        assert mode is not None
        return max(low * 1000, mode.min_frame_ns)

    def _apply_now(self, values: dict[str, Any]) -> None:
        """Apply controls at once (the ISP's, and at start() everything): lock held."""
        if "ScalerCrop" in values and self._mode is not None:
            crop = values["ScalerCrop"]
            rect = crop.as_tuple() if isinstance(crop, Rectangle) else tuple(int(v) for v in crop)
            self._isp_crop = apply_scaler_crop(rect, self._mode.analog_crop, self._mode.size, self._isp_min)
        self._ipa.apply(values)

    def _run(self, generation: int) -> None:
        record, mode = self._record, self._mode
        assert mode is not None
        readout_ns = round(mode.min_frame_ns * rig.READOUT_SHARE)
        started_ns = time.monotonic_ns()
        next_ns = started_ns + self._frame_ns() // 2  # readout start of the first frame: it has been exposing meanwhile
        last_frame_ns = started_ns
        sequence = frames_this_run = 0
        while True:
            with self._cond:
                while self._generation == generation and time.monotonic_ns() < next_ns + readout_ns:
                    self._cond.wait((next_ns + readout_ns - time.monotonic_ns()) / 1e9)
                if self._generation != generation:
                    return
                frame_ns = self._frame_ns()
                if self._error:
                    self._cond.wait()
                    continue
                stalled = record.stalled or (record.stall_after and frames_this_run >= record.stall_after)
                if stalled:
                    timeout_ns = max(1_000_000_000, 5 * frame_ns)
                    if self._queue and time.monotonic_ns() - last_frame_ns >= timeout_ns:
                        self._frontend_timeout()
                    next_ns += frame_ns
                    continue
                timestamp_ns = next_ns
                next_ns += frame_ns
                sequence += 1
                while self._pending and self._pending[0][0] <= sequence:
                    self._ipa.apply(self._pending.pop(0)[1])
                if not self._queue:
                    continue  # no buffer to fill: the frame is lost
                request = self._queue.popleft()
                values = {key.name: value for key, value in request.controls.items()}
                isp_values = {key: values.pop(key) for key in ("ScalerCrop", "SyncMode", "SyncFrames") if key in values}
                self._apply_now(isp_values)
                if values:
                    self._pending.append((sequence + CONTROL_DELAY_FRAMES, values))
                metadata = self._metadata(timestamp_ns, frame_ns)
                sync_metadata, shift_ns = self._sync.step(self._ipa, timestamp_ns, frame_ns)
                metadata.update(sync_metadata)
                next_ns += shift_ns
                picture_args = self._picture_args(metadata)
                outputs = [cfg for cfg in self._config or [] if cfg.role != StreamRole.Raw]
                frames_this_run += 1
                last_frame_ns = time.monotonic_ns()
            self._fill(request, outputs, picture_args, sequence, timestamp_ns)
            with self._cond:
                if self._generation != generation:
                    self._cancel(request)
                    return
                request.metadata = metadata
                request.sequence = sequence
                request.status = Request.Status.Complete
            record.frames += 1
            self._complete(request)

    def _frontend_timeout(self) -> None:
        """CameraData::cameraTimeout: cancel every queued request; nothing more until stop/start. Lock held."""
        log.error("RPI: Camera frontend has timed out!")
        log.error("RPI: Please check that your camera sensor connector is attached securely.")
        self._error = True
        self._record.timeouts += 1
        cancelled = list(self._queue)
        self._queue.clear()
        for request in cancelled:
            self._cancel(request)

    def _exposure(self, frame_ns: int) -> tuple[int, float, float]:
        assert self._mode is not None
        return self._ipa.exposure(self._mode, frame_ns, rig.light)

    def _metadata(self, timestamp_ns: int, frame_ns: int) -> dict[Any, Any]:
        assert self._mode is not None
        exposure, gain, _ = self._exposure(frame_ns)
        crop = isp_to_native(self._isp_crop, self._mode.analog_crop, self._mode.size)
        return {
            controls.SensorTimestamp: timestamp_ns,
            controls.FrameWallClock: timestamp_ns + time.time_ns() - time.monotonic_ns(),
            controls.ExposureTime: exposure,
            controls.AnalogueGain: gain,
            controls.DigitalGain: 1.0,
            controls.FrameDuration: frame_ns // 1000,
            controls.ScalerCrop: Rectangle(*crop),
            controls.AeLocked: not (self._ipa.exposure_manual or self._ipa.gain_manual),
            controls.Lux: 400.0 * rig.light,
            controls.ColourTemperature: 5000,
            controls.SensorTemperature: 40.0,
        }

    def _picture_args(self, metadata: dict[Any, Any]) -> tuple[Any, ...]:
        assert self._mode is not None and self._config is not None
        _, _, brightness = self._exposure(int(metadata[controls.FrameDuration]) * 1000)
        crop = metadata[controls.ScalerCrop].as_tuple()
        orientation = self._config.orientation
        hflip = orientation in (Orientation.Rotate0Mirror, Orientation.Rotate180)
        vflip = orientation in (Orientation.Rotate180Mirror, Orientation.Rotate180)
        return crop, hflip, vflip, round(brightness, 3)

    def _fill(
        self,
        request: Request,
        outputs: list[StreamConfiguration],
        picture_args: tuple[Any, ...],
        sequence: int,
        timestamp_ns: int,
    ) -> None:
        """Write the ISP's pictures into the request's buffers (the application's dma-buf memory)."""
        crop, hflip, vflip, brightness = picture_args
        for stream, buffer in request.buffers.items():
            buffer.metadata.status = FrameMetadata.Status.Success
            buffer.metadata.sequence = sequence
            buffer.metadata.timestamp = timestamp_ns
            cfg = stream.configuration
            if cfg not in outputs:
                continue  # the raw stream: allocated, left empty
            fmt = str(cfg.pixel_format)
            size = (cfg.size.width, cfg.size.height)
            limited = cfg.color_space is not None and cfg.color_space.range == ColorSpace.Range.Limited
            picture = render_i420(self._sensor.model, crop, size, hflip, vflip, brightness, limited)
            memory = self._map(buffer)
            view = memoryview(memory)[: cfg.frame_size]
            if fmt in YUV_FORMATS:
                write_yuv420(picture, size[0], size[1], cfg.stride, view, swap_uv=fmt == "YVU420")
            else:
                write_rgb(picture, size[0], size[1], cfg.stride, view, fmt)
            view.release()

    def _map(self, buffer: FrameBuffer) -> mmap.mmap:
        memory = self._maps.get(buffer)
        if memory is None:
            plane = buffer.planes[0]
            memory = mmap.mmap(plane.fd, plane.length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            self._maps[buffer] = memory
        return memory
