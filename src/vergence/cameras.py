"""`vergence cameras`: the Raspberry Pi cameras picamera2 sees, the sensor mode vergence takes from each, the H.264
encoder it will use, and a few frames from each camera to show that it streams.

picamera2 is optional: it is imported here only when the cameras are listed.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from vergence.config import CameraSettings, H264Settings
from vergence.errors import ConfigError, EncoderError, VergenceError
from vergence.media.frame import TIME_BASE, Frame
from vergence.sources.picamera2 import INSTALL_HINT, Picamera2Source
from vergence.sources.picamera2_setup import (
    camera_index,
    resolve_tuning,
    select_sensor_mode,
    sensor_modes,
    video_configuration,
)

DEFAULT_FRAMES = 5
NO_CAMERA = (
    "no camera found: libcamera lists none; check the ribbon cable (seated at both ends, contacts facing the right "
    "way) and camera_auto_detect=1 or the sensor's dtoverlay in /boot/firmware/config.txt"
)
# A camera's first frame comes after its start-up (a few frame times, more on a real Pi with its IPA); after that each
# frame may take up to two frame times before the camera counts as not streaming.
FIRST_FRAME_S = 2.0
MACHINE_MODEL = Path("/proc/device-tree/model")


@dataclass(slots=True)
class CameraReport:
    """One camera: what libcamera says of it, the mode vergence takes, and whether it streamed."""

    number: int  # picamera2's camera number (options.camera_index)
    stream: str  # the vergence camera id it serves as
    configured: bool  # from the config's [[cameras]] (else vergence's defaults)
    size: tuple[int, int]
    fps: float
    model: str = ""
    id: str = ""  # libcamera's id: where the camera is connected
    tuning: str = "default"
    pixel_array: tuple[int, int] | None = None
    modes: list[dict[str, Any]] = field(default_factory=list)
    mode: dict[str, Any] | None = None  # the one vergence streams from at `size` and `fps`
    scaler_crop: dict[str, list[int]] | None = None  # "min" and "max" once that mode is configured: the PTZ range
    sync: bool | None = None  # libcamera offers software camera sync (options.sync)
    frames: int = 0  # read in the streaming check
    measured_fps: float | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        model = f", {self.model}" if self.model else ""
        return f"{self.stream} (camera {self.number}{model})"


@dataclass(slots=True)
class EncoderReport:
    """The H.264 encoder vergence opens on this machine, found by opening it as a stream would."""

    setting: str  # [h264] encoder
    size: tuple[int, int]
    encoder: str | None = None
    error: str | None = None

    @property
    def hardware(self) -> bool:
        return self.encoder == "h264_v4l2m2m"


@dataclass(slots=True)
class CamerasReport:
    """Everything `vergence cameras` found; `problems` name a camera each, or say why none was looked at."""

    cameras: list[CameraReport]
    h264: EncoderReport
    machine: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        data = asdict(self)
        data["ok"] = self.ok
        data["h264"]["hardware"] = self.h264.hardware
        return data


def flag_overrides(size: str | None, fps: float | None) -> dict[str, Any]:
    """Check --size and --fps as a camera's size and fps; ConfigError names the flag."""
    given = {key: value for key, value in {"size": size, "fps": fps}.items() if value is not None}
    try:
        checked = CameraSettings.model_validate(given)
    except ValidationError as err:
        error = err.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"--{error['loc'][0]} {error['input']}: {message}") from err
    return {key: getattr(checked, key) for key in given}


def describe_cameras(
    configured: list[CameraSettings],
    h264: H264Settings,
    overrides: dict[str, Any] | None = None,
    frames: int = DEFAULT_FRAMES,
) -> CamerasReport:
    """List the cameras picamera2 sees, describe each as `configured` (or vergence's defaults) would use it, and read
    `frames` frames from each; `overrides` (size, fps) apply to every camera."""
    overrides = overrides or {}
    try:
        from picamera2 import Picamera2
    except ImportError:
        wanted = [camera.model_copy(update=overrides) for camera in configured]
        problem = f"picamera2 is not installed: {INSTALL_HINT}"
        return CamerasReport([], _probe_encoder(h264, wanted, overrides), _machine(), [problem])
    # Picamera2() drops LIBCAMERA_RPI_TUNING_FILE unless it is given a tuning, so `vergence serve` never sees it: count
    # the cameras without it too, or a file that libcamera cannot load would hide every camera here and none there.
    os.environ.pop("LIBCAMERA_RPI_TUNING_FILE", None)
    try:
        found = Picamera2.global_camera_info()
    except Exception as err:  # a libcamera that fails to start up: nothing more to look at
        wanted = [camera.model_copy(update=overrides) for camera in configured]
        return CamerasReport([], _probe_encoder(h264, wanted, overrides), _machine(), [f"libcamera: {err}"])
    reports: list[CameraReport] = []
    cameras: list[CameraSettings] = []
    first_gone: CameraReport | None = None
    for number, camera, configured_here, error in _cameras_to_check(configured, len(found), overrides):
        cameras.append(camera)
        report = CameraReport(number, camera.id, configured_here, camera.size, camera.fps, error=error)
        if number < len(found):
            report.model, report.id = str(found[number].get("Model", "")), str(found[number].get("Id", ""))
        try:
            if report.error is None:
                _probe(Picamera2, camera, report)
            if report.error is None and frames > 0:
                _stream(camera, report, frames)
        except _CameraGone:
            report.error = _gone(report, first_gone)
            first_gone = first_gone or report
        reports.append(report)
    problems = [f"{report.name}: {report.error}" for report in reports if report.error]
    if not found:
        problems.insert(0, NO_CAMERA)
    problems += _tuning_conflicts([report for report in reports if report.configured])
    return CamerasReport(reports, _probe_encoder(h264, cameras, overrides), _machine(), problems)


def _cameras_to_check(
    configured: list[CameraSettings], found: int, overrides: dict[str, Any]
) -> list[tuple[int, CameraSettings, bool, str | None]]:
    """Return (number, settings, configured, error) for every camera found, then for configured ones not found."""
    by_number: dict[int, CameraSettings] = {}
    checks: list[tuple[int, CameraSettings, bool, str | None]] = []
    for camera in configured:
        camera = camera.model_copy(update=overrides)
        try:
            number = camera_index(camera)
        except ConfigError as err:
            checks.append((-1, camera, True, str(err)))
            continue
        if number in by_number:
            checks.append((number, camera, True, f"camera {number} is {by_number[number].id}'s already"))
        elif number >= found:
            checks.append((number, camera, True, f"no camera {number}: picamera2 sees {found}"))
        else:
            by_number[number] = camera
    listed = []
    for number in range(found):
        if number in by_number:
            listed.append((number, by_number[number], True, None))
        else:
            defaults = {"id": f"cam{number}", "source": "picamera2", "options": {"camera_index": str(number)}}
            listed.append((number, CameraSettings.model_validate({**defaults, **overrides}), False, None))
    return listed + checks


def _probe(picamera2_class: Any, camera: CameraSettings, report: CameraReport) -> None:
    """Open the camera with its tuning, list its modes, configure the one vergence takes and read its limits."""
    try:
        report.tuning, tuning = resolve_tuning(camera.options.get("tuning_file") or None, picamera2_class)
    except ConfigError as err:
        report.tuning, report.error = camera.options["tuning_file"], str(err)
        return
    try:
        picam = picamera2_class(report.number, tuning=tuning)
    except IndexError as err:
        raise _CameraGone from err
    except Exception as err:
        report.error = f"cannot open camera {report.number}: {_reason(err)}"
        return
    try:
        report.model = str(picam.camera_properties.get("Model", report.model))
        width, height = picam.sensor_resolution
        report.pixel_array = pixel_array = (int(width), int(height))
        modes = sensor_modes(picam)
        if not modes:
            report.error = f"camera {report.number} lists no sensor modes"
            return
        report.modes = [mode.describe(pixel_array, camera.size) for mode in modes]
        chosen = select_sensor_mode(camera, modes)
        report.mode = chosen.describe(pixel_array, camera.size)
        # The same sensor and main stream as Picamera2Source configures: the crop limits depend on both.
        picam.configure(video_configuration(picam, camera, chosen))
        crop_min, crop_max, _default = picam.camera_controls["ScalerCrop"]
        report.scaler_crop = {"min": [int(v) for v in crop_min], "max": [int(v) for v in crop_max]}
        report.sync = "SyncMode" in picam.camera_controls
    except Exception as err:
        report.error = f"camera {report.number}: {_reason(err)}"
    finally:
        picam.close()


def _stream(camera: CameraSettings, report: CameraReport, frames: int) -> None:
    """Open the camera as `vergence serve` does and read `frames` frames within a deadline; measure their rate."""
    try:
        source = Picamera2Source(camera)
        source.open()
    except VergenceError as err:
        if isinstance(err.__cause__, IndexError):
            raise _CameraGone from err
        report.error = _reason(err)
        return
    rate = min(camera.fps, report.mode["max_fps"]) if report.mode else camera.fps
    deadline_s = FIRST_FRAME_S + 2 * frames / rate
    started = time.monotonic()
    got: list[Frame] = []
    try:
        report.tuning = source.tuning
        while len(got) < frames:
            if time.monotonic() - started > deadline_s:
                report.error = f"delivered {len(got)} of {frames} frames in {deadline_s:.1f} s"
                break
            got.append(source.read())
    except VergenceError as err:
        report.error = _reason(err)
    finally:
        source.close()
    report.frames = len(got)
    if len(got) >= 2 and got[-1].pts > got[0].pts:
        # The sensor's own timestamps: the camera's frame rate, not how promptly this process was scheduled.
        report.measured_fps = round((len(got) - 1) / float((got[-1].pts - got[0].pts) * TIME_BASE), 2)


class _CameraGone(Exception):
    """picamera2 no longer finds the camera number it was given (IndexError in its list of cameras)."""


def _gone(report: CameraReport, first_gone: CameraReport | None) -> str:
    # libcamera registers no camera when its tuning file does not load, and picamera2 keeps the camera manager made with
    # it for the rest of the process: every camera opened after it is gone too, in `vergence serve` as here.
    if first_gone is not None and first_gone.tuning != report.tuning:
        return (
            f"camera {report.number} is gone since libcamera could not load {first_gone.stream}'s tuning "
            f"{first_gone.tuning}: picamera2 keeps that camera manager, and its tuning, for the whole process"
        )
    if report.tuning == "default":
        return f"libcamera no longer lists camera {report.number}"
    return f"camera {report.number} is gone once tuning {report.tuning} is loaded: libcamera cannot use that file"


def _reason(err: BaseException) -> str:
    """The error's message, with the first cause that says more (picamera2 wraps "Device or resource busy")."""
    message = str(err) or type(err).__name__
    cause = err.__cause__
    while cause is not None:
        if str(cause) and str(cause) not in message:
            return f"{message} ({_reason(cause)})"
        cause = cause.__cause__
    return message


def _tuning_conflicts(configured: list[CameraReport]) -> list[str]:
    """libcamera loads one tuning file per process: configured cameras asking for different ones cannot run together."""
    tunings = {report.tuning for report in configured if report.error is None}
    if len(tunings) < 2:
        return []
    named = ", ".join(f"{report.stream}: {report.tuning}" for report in configured if report.error is None)
    return [
        f"the cameras ask for different tunings ({named}): libcamera loads one tuning file per process, so "
        "`vergence serve` cannot run them together"
    ]


def _probe_encoder(h264: H264Settings, cameras: list[CameraSettings], overrides: dict[str, Any]) -> EncoderReport:
    """Open the H.264 encoder as a stream does, by encoding one grey picture at the largest camera size."""
    from vergence.encoders.h264 import H264Encoder

    sizes = [camera.size for camera in cameras] or [overrides.get("size", CameraSettings().size)]
    width, height = max(sizes, key=lambda size: size[0] * size[1])
    fps = max([camera.fps for camera in cameras] or [overrides.get("fps", CameraSettings().fps)])
    report = EncoderReport(setting=h264.encoder, size=(width, height))
    encoder = H264Encoder("probe", h264, lambda packet: None, lambda: fps)
    grey = np.full((height * 3 // 2, width), 128, np.uint8)
    try:
        encoder.encode(Frame(image=grey, pix_fmt="yuv420p", width=width, height=height, seq=0, pts=0, capture_ns=0))
        report.encoder = encoder.codec_name
    except EncoderError as err:
        report.error = str(err)
    finally:
        encoder.reset()
    return report


def _machine() -> str | None:
    """The board's model from the device tree ("Raspberry Pi 5 Model B Rev 1.0"), where there is one."""
    try:
        return MACHINE_MODEL.read_text(errors="replace").rstrip("\x00\n") or None
    except OSError:
        return None


def format_report(report: CamerasReport) -> str:
    """Return the report as text: a block per camera, then the H.264 encoder."""
    blocks = [_format_camera(camera) for camera in report.cameras]
    blocks.append(_format_encoder(report.h264, report.machine))
    return "\n\n".join(blocks) + "\n"


def _format_camera(camera: CameraReport) -> str:
    origin = "from the config" if camera.configured else "vergence's defaults"
    lines = [f"camera {camera.number}: {camera.model or '?'}  {camera.id}".rstrip()]
    lines.append(
        f"  as          {camera.stream} ({origin}), {camera.size[0]}x{camera.size[1]} at {camera.fps:g} fps, "
        f"tuning {camera.tuning}"
    )
    for i, mode in enumerate(camera.modes):
        label = "  modes     " if i == 0 else " " * 12
        mark = "*" if mode == camera.mode else " "
        lines.append(f"{label}{mark} {_format_mode(mode)}")
    if camera.mode is not None:
        mode = camera.mode
        slow = f"; at most {mode['max_fps']:g} fps" if mode["max_fps"] < camera.fps * 0.99 else ""
        binned = f", {mode['binning']}x{mode['binning']} binned" if mode["binning"] > 1 else ""
        if mode["size"][0] < camera.size[0] or mode["size"][1] < camera.size[1]:
            binned += f", upscaled to {camera.size[0]}x{camera.size[1]}"
        fov = round(100 * mode["field_of_view"])
        lines.append(f"  uses        {mode['size'][0]}x{mode['size'][1]}{binned}, field of view {fov} %{slow}")
    if camera.scaler_crop is not None:
        low, high = camera.scaler_crop["min"], camera.scaler_crop["max"]
        lines.append(f"  ScalerCrop  min {_rect(low)}  max {_rect(high)}")
    if camera.sync is not None:
        sync = "offered (options.sync)" if camera.sync else "not offered (libcamera 0.5 or later has it)"
        lines.append(f"  sync        {sync}")
    if camera.measured_fps is not None:
        lines.append(f"  streams     {camera.frames} frames at {camera.measured_fps:.2f} fps")
    if camera.error is not None:
        lines.append(f"  FAILS       {camera.error}")
    return "\n".join(lines)


def _format_mode(mode: dict[str, Any]) -> str:
    size = f"{mode['size'][0]}x{mode['size'][1]}"
    fov = round(100 * mode["field_of_view"])
    crop = _rect(mode["crop"])
    return f"{size:<10} {mode['bit_depth']}-bit {mode['max_fps']:7.2f} fps  crop {crop:<22} field of view {fov:3d} %"


def _rect(values: list[int]) -> str:
    return "(" + ",".join(str(v) for v in values) + ")"


def _format_encoder(h264: EncoderReport, machine: str | None) -> str:
    lines = [f"machine: {machine}"] if machine else []
    size = f"{h264.size[0]}x{h264.size[1]}"
    if h264.encoder is None:
        lines.append(f"H.264 encoder: none opens at {size}: {h264.error}")
    elif h264.hardware:
        lines.append(f"H.264 encoder: h264_v4l2m2m (the V4L2 hardware encoder) at {size}")
    else:
        lines.append(f"H.264 encoder: {h264.encoder} (software) at {size}")
    if h264.hardware:
        return "\n".join(lines)
    if h264.setting == "auto":
        lines.append(
            '  [h264] encoder = "auto" tries h264_v4l2m2m first, the hardware encoder of a Raspberry Pi 4 and earlier; '
            "it did not open here."
        )
    if h264.setting == "h264_v4l2m2m":
        lines.append(
            '  A Raspberry Pi 5 has no hardware H.264 encoder: "auto" falls back to libx264 there, this does not.'
        )
    else:
        lines.append("  A Raspberry Pi 5 has no hardware H.264 encoder: vergence encodes with libx264 there.")
    return "\n".join(lines)
