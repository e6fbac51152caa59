"""A fake of `picamera2.Picamera2`: the calls vergence uses, paced by a monotonic clock, with no hardware.

Behaviour copied from the real stack where it matters to a caller:
- an out-of-range ScalerCrop is clamped (as libcamera's Raspberry Pi pipeline handler does), and the metadata reports
  the crop actually applied; an unknown control raises RuntimeError ("… is not advertised by libcamera");
- configure() while started raises; a camera can be opened by one Picamera2 at a time;
- stop()/close() cancel a capture_request() waiting in another thread (concurrent.futures.CancelledError), a wait
  with a timeout raises TimeoutError; all buffers held (never released) stall the camera, as on the real one;
- YUV420 arrays are (h*3/2, stride) with rows padded to 64 bytes.
- software camera sync (`SyncMode` Server / Client, `SyncFrames`): after SyncFrames frames the server reports
  `SyncReady`; a client whose server runs at the same frame rate then moves its frames onto the server's grid and reports
  `SyncReady` too; a client without a server runs on unsynchronised, never ready.
- sensor modes: a configuration runs in the smallest mode covering its output (or its raw stream's size, which is how
  a caller asks for the full pixel array), at most at that mode's frame rate; configure() takes time for the buffers
  it allocates and the first frame comes one frame time after start() (numbers and reasons: `fake`'s docstring);
- create_still_configuration() as picamera2's: one buffer, FrameDurationLimits (100, 1e9) µs so the mode's top rate.
Simplifications: every mode shows the full field of view; a new ScalerCrop applies from the next frame (the real
pipeline takes a few frames); when the reader is late it gets the newest frame, older ones drop; a raw stream only
chooses the mode and costs its buffer, its pictures are not rendered; ExposureTime and AnalogueGain are only echoed in
the metadata.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError
from typing import Any

from libcamera import Transform

from . import fake
from .request import CompletedRequest

FORMATS = ("YUV420", "RGB888", "BGR888", "XRGB8888", "XBGR8888")


class Picamera2:
    """One camera, opened on construction."""

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        """Return one dict per attached camera: Model, Location, Rotation, Id, Num."""
        return [
            {"Model": state.sensor.model, "Location": 2, "Rotation": 0, "Id": fake.camera_id(state), "Num": state.num}
            for state in fake.cameras()
        ]

    def __init__(self, camera_num: int = 0, verbose_console: int | None = None, tuning: Any = None) -> None:
        cameras = fake.cameras()
        if not 0 <= camera_num < len(cameras):
            raise IndexError(f"camera {camera_num} not found: {len(cameras)} camera(s) attached")
        self._state = state = cameras[camera_num]
        with fake._lock:
            if state.acquired:
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
            state.acquired = True
            state.opens += 1
            state.tunings.append(tuning)
        self.camera_idx = camera_num
        sensor = state.sensor
        self.camera_properties: dict[str, Any] = {
            "Model": sensor.model,
            "Location": 2,
            "Rotation": 0,
            "PixelArraySize": (sensor.width, sensor.height),
            "PixelArrayActiveAreas": [sensor.full_area],
            "ScalerCropMaximum": sensor.full_area,
            "UnitCellSize": (1120, 1120),
        }
        min_crop = (0, 0, *sensor.crop_min)
        min_frame_us = round(1e6 / sensor.max_fps)
        self.camera_controls: dict[str, tuple[Any, Any, Any]] = {
            "ScalerCrop": (min_crop, sensor.full_area, sensor.full_area),
            "FrameDurationLimits": (min_frame_us, 1_000_000_000, 33_333),
            "ExposureTime": (1, 66_666, 20_000),
            "AnalogueGain": (1.0, 16.0, 1.0),
            "AeEnable": (False, True, True),
            "AwbEnable": (False, True, True),
            "SyncMode": (0, 2, 0),
            "SyncFrames": (1, 1_000_000, 100),
        }
        self.sensor_resolution = (sensor.width, sensor.height)
        self.set_controls_calls = state.set_controls_calls  # every set_controls() argument, in order
        self.is_open = True
        self.started = False
        self.camera_config: dict[str, Any] | None = None
        self._cond = threading.Condition()
        self._generation = 0  # bumped by stop()/close(): waits that began before are cancelled
        self._frame_ns = 33_333_333
        self._min_frame_ns = round(1e9 / sensor.max_fps)  # of the configured sensor mode
        self._exposure_us: int | None = None
        self._gain: float | None = None
        self._t0_ns = 0
        self._next_slot = 0
        self._crop = sensor.full_area
        self._pending_crop: tuple[int, tuple[int, int, int, int]] | None = None  # (effective from ns, crop)
        self._sync_mode = 0  # controls.rpi.SyncModeEnum
        self._sync_frames = 100
        self._frames_since_start = 0
        self._fail_every = fake.fail_every()
        self._sync_ready = False

    # Configuration

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Transform | None = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Return a video configuration (a dict, as picamera2 before 0.3.17 and its `.make_dict()` give)."""
        stream = {"format": "XBGR8888", "size": (1280, 720), **(main or {})}
        if lores is not None:
            raise NotImplementedError("the fake picamera2 has no lores stream")
        if raw is not None:
            raw = {"format": "SRGGB10_CSI2P", "size": stream["size"], **raw}
        return {
            "use_case": "video",
            "transform": transform if transform is not None else Transform(),
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "display": display,
            "encode": encode,
            "main": stream,
            "lores": None,
            "raw": raw,
            "sensor": sensor or {},
            "controls": {"NoiseReductionMode": 1, "FrameDurationLimits": (33_333, 33_333), **(controls or {})},
        }

    def create_still_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Transform | None = None,
        colour_space: Any = None,
        buffer_count: int = 1,
        controls: dict[str, Any] | None = None,
        display: str | None = None,
        encode: str | None = None,
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Return a still configuration: full sensor size by default, one buffer, the mode's top frame rate.

        (The real one adds a raw stream unless `raw=None`; the fake has one only when asked, as vergence always does.)
        """
        config = self.create_video_configuration(
            main={"size": self.sensor_resolution, **(main or {})},
            lores=lores,
            raw=raw,
            transform=transform,
            colour_space=colour_space,
            buffer_count=buffer_count,
            display=display,
            encode=encode,
            queue=queue,
            sensor=sensor,
        )
        config["use_case"] = "still"
        config["controls"] = {"NoiseReductionMode": 2, "FrameDurationLimits": (100, 1_000_000_000), **(controls or {})}
        return config

    def configure(self, camera_config: dict[str, Any]) -> None:
        """Apply a configuration; the camera must be stopped."""
        self._check_open()
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        main = dict(camera_config["main"])
        width, height = main["size"]
        if main["format"] not in FORMATS:
            raise RuntimeError(f"Unrecognised format {main['format']}")
        if width % 2 or height % 2 or width < 64 or height < 64:
            raise RuntimeError(f"Invalid size {width}x{height}")
        transform = camera_config.get("transform") or Transform()
        if transform.transpose:
            raise RuntimeError("transform not supported: the sensor can only flip")
        main["stride"] = fake.stride_for(width) * (4 if main["format"] in ("XRGB8888", "XBGR8888") else 1)
        if main["format"] in ("RGB888", "BGR888"):
            main["stride"] = fake.stride_for(width * 3)
        main["framesize"] = main["stride"] * (height * 3 // 2 if main["format"] == "YUV420" else height)
        raw = camera_config.get("raw")
        raw_w, raw_h = raw["size"] if raw is not None else (0, 0)
        sensor = self._state.sensor
        mode = sensor.mode_for(max(width, raw_w), max(height, raw_h))
        buffer_bytes = camera_config["buffer_count"] * (main["framesize"] + raw_w * raw_h * 10 // 8)
        started = time.monotonic()
        time.sleep(fake.configure_seconds(buffer_bytes))  # the modelled cost of allocating the buffers
        with self._cond:
            self.camera_config = {**camera_config, "main": main}
            self._crop = sensor.full_area
            self._pending_crop = None
            self._min_frame_ns = round(1e9 / mode.max_fps)
            self._frame_ns = max(33_333_333, self._min_frame_ns)
            self._exposure_us, self._gain = None, None
            self._sync_mode, self._sync_frames = 0, 100
        controls = dict(camera_config.get("controls") or {})
        controls.pop("NoiseReductionMode", None)
        self._apply_controls(controls)
        applied = fake.AppliedConfig(
            camera_config.get("use_case", "?"),
            (width, height),
            mode,
            self._frame_ns,
            buffer_bytes,
            time.monotonic() - started,
            controls,
        )
        with fake._lock:
            self._state.configures += 1
            self._state.transforms.append((transform.hflip, transform.vflip))
            self._state.configs.append(applied)

    def stream_configuration(self, name: str = "main") -> dict[str, Any]:
        """Return the configuration of one stream, with the `stride` and `framesize` the camera chose."""
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        return dict(self.camera_config[name])

    # Running

    def start(self, config: dict[str, Any] | None = None, show_preview: bool | None = False) -> None:
        """Start streaming frames."""
        self._check_open()
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        with self._cond:
            if self.started:
                return
            self.started = True
            # The first frame completes one frame time after start: the sensor exposes and reads out a whole frame.
            self._t0_ns = time.monotonic_ns() + self._frame_ns
            self._next_slot = 0
            self._frames_since_start = 0
            self._sync_ready = False
            if self._sync_mode == 1:
                fake.sync_server = (self._t0_ns, self._frame_ns)
            self._cond.notify_all()
        with fake._lock:
            self._state.starts += 1

    def stop(self) -> None:
        """Stop streaming; a capture_request() waiting in another thread is cancelled."""
        with self._cond:
            if not self.started:
                return
            self.started = False
            self._generation += 1
            if self._sync_mode == 1 and fake.sync_server == (self._t0_ns, self._frame_ns):
                fake.sync_server = None
            self._cond.notify_all()
        with fake._lock:
            self._state.stops += 1

    def close(self) -> None:
        """Stop and release the camera; calling it again does nothing."""
        if not self.is_open:
            return
        self.stop()
        with self._cond:
            self.is_open = False
            self._generation += 1
            self._cond.notify_all()
        with fake._lock:
            self._state.acquired = False
            self._state.closes += 1

    # Controls

    def set_controls(self, controls: dict[str, Any]) -> None:
        """Set controls from the next frame on (thread-safe); every call is recorded in `set_controls_calls`."""
        self._check_open()
        with fake._lock:
            self._state.set_controls_calls.append(dict(controls))
        self._apply_controls(controls)

    def _apply_controls(self, controls: dict[str, Any]) -> None:
        for name in controls:
            if name != "FrameRate" and name not in self.camera_controls:
                raise RuntimeError(f"Control {name} is not advertised by libcamera")
        with self._cond:
            if "ScalerCrop" in controls:
                crop = tuple(int(v) for v in controls["ScalerCrop"])
                if len(crop) != 4:
                    raise TypeError(f"ScalerCrop must be (x, y, width, height), got {controls['ScalerCrop']!r}")
                applied = fake.clamp_crop(self._state.sensor, crop)  # type: ignore[arg-type]
                self._pending_crop = (time.monotonic_ns(), applied)
            frame_ns = None
            if "FrameRate" in controls:
                frame_ns = round(1e9 / float(controls["FrameRate"]))
            elif "FrameDurationLimits" in controls:
                frame_ns = int(controls["FrameDurationLimits"][0]) * 1000
            if "SyncMode" in controls:
                self._sync_mode = int(controls["SyncMode"])
            if "SyncFrames" in controls:
                self._sync_frames = int(controls["SyncFrames"])
            if "ExposureTime" in controls:
                self._exposure_us = int(controls["ExposureTime"])
            if "AnalogueGain" in controls:
                self._gain = float(controls["AnalogueGain"])
            if frame_ns is not None:
                _, high_us, _ = self.camera_controls["FrameDurationLimits"]
                frame_ns = min(max(frame_ns, self._min_frame_ns), high_us * 1000)
                if self.started:  # re-anchor the schedule so the next frame keeps its place
                    now = time.monotonic_ns()
                    self._t0_ns, self._next_slot = now, 0
                self._frame_ns = frame_ns

    # Capture

    def capture_request(self, wait: float | bool | None = None, flush: Any = None) -> CompletedRequest:
        """Return the next frame's request (blocking); the caller must release() it."""
        if wait is False:
            raise NotImplementedError("the fake picamera2 only captures synchronously")
        timeout_s = None if wait is None or wait is True else float(wait)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            self._check_open()
            generation = self._generation
            self._follow_sync()
            while True:
                if self._generation != generation:
                    raise CancelledError()
                delay_s = None
                if self.started and self._state.outstanding_requests < self.camera_config["buffer_count"]:  # type: ignore[index]
                    now = time.monotonic_ns()
                    latest = (now - self._t0_ns) // self._frame_ns
                    if latest >= self._next_slot:
                        slot = latest
                        break
                    delay_s = (self._t0_ns + self._next_slot * self._frame_ns - now) / 1e9
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError("capture_request timed out")
                    delay_s = remaining if delay_s is None else min(delay_s, remaining)
                self._cond.wait(delay_s)
            self._next_slot = slot + 1
            self._frames_since_start += 1
            if self._fail_every and self._frames_since_start % self._fail_every == 0:
                raise RuntimeError("Camera frontend has timed out!")
            if self._sync_mode == 1 and self._frames_since_start >= self._sync_frames:
                self._sync_ready = True
            sync_ready = self._sync_ready
            timestamp_ns = self._t0_ns + slot * self._frame_ns
            if self._pending_crop is not None and self._pending_crop[0] <= timestamp_ns:
                self._crop, self._pending_crop = self._pending_crop[1], None
            crop, frame_ns, config = self._crop, self._frame_ns, self.camera_config
            exposure_us, gain = self._exposure_us, self._gain
            assert config is not None
        with fake._lock:
            self._state.frames += 1
            self._state.outstanding_requests += 1
        main = config["main"]
        width, height = main["size"]
        transform = config["transform"]
        picture = fake.render(self._state.sensor.model, crop, (width, height), transform.hflip, transform.vflip)
        if main["format"] != "YUV420":
            raise NotImplementedError("the fake picamera2 renders YUV420 only")
        metadata = {
            "SensorTimestamp": timestamp_ns,
            "FrameDuration": frame_ns // 1000,
            "ScalerCrop": crop,
            "ExposureTime": min(frame_ns // 1000, 20_000 if exposure_us is None else exposure_us),
            "AnalogueGain": 1.0 if gain is None else gain,
        }
        if self._sync_mode:
            metadata["SyncReady"] = sync_ready
        return CompletedRequest({"main": fake.padded(picture, width, height, main["stride"])}, metadata, self._released)

    def _follow_sync(self) -> None:
        """A client, once it has waited SyncFrames frames, moves onto a running server's grid (the lock is held)."""
        server = fake.sync_server
        if self._sync_mode != 2 or self._sync_ready or server is None or not self.started:
            return
        t0_ns, frame_ns = server
        if frame_ns != self._frame_ns or self._frames_since_start < self._sync_frames:
            return
        now = time.monotonic_ns()
        self._t0_ns, self._next_slot = t0_ns, (now - t0_ns) // frame_ns + 1
        self._sync_ready = True

    def _released(self) -> None:
        with fake._lock:
            self._state.outstanding_requests -= 1
        with self._cond:
            self._cond.notify_all()

    def capture_array(self, name: str = "main", wait: float | None = None) -> Any:
        """Return the next frame of stream `name` as an array."""
        request = self.capture_request(wait)
        try:
            return request.make_array(name)
        finally:
            request.release()

    def capture_metadata(self, wait: float | None = None) -> dict[str, Any]:
        """Return the next frame's metadata."""
        request = self.capture_request(wait)
        try:
            return request.get_metadata()
        finally:
            request.release()

    def _check_open(self) -> None:
        if not self.is_open:
            raise RuntimeError("Camera is not open")

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
