"""Setting up a Raspberry Pi camera through picamera2: which camera, which tuning, which sensor mode, which
configuration, and reading the ISP's buffers. Used by the picamera2 source and by `vergence cameras`; nothing here
waits for a frame."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from vergence.config import CameraSettings
from vergence.errors import ConfigError
from vergence.sources.sensor_modes import SensorMode, choose_mode

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Per process: the sensor modes of each camera (listing them reconfigures the camera once per mode), and the tuning of
# each open camera. libcamera reads its tuning file once, when its camera manager is created, for every camera: two
# cameras open at once share one tuning.
sensor_modes_seen: dict[str, list[SensorMode]] = {}
tunings_open: dict[int, str] = {}
_tuning_lock = threading.Lock()


def flag(options: dict[str, str], key: str) -> bool:
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


def resolve_tuning(value: str | None, picamera2_class: Any) -> tuple[str, str | dict[str, Any] | None]:
    """Return (what names it, what to hand picamera2) for `options.tuning_file`.

    A path (it has a slash) is made absolute: picamera2 hands the string to libcamera, which opens it relative to the
    working directory of the moment. A bare file name is looked up where Raspberry Pi OS keeps tuning files
    (~/libcamera/…, /usr/local/share/…, /usr/share/libcamera/ipa/rpi/{pisp,vc4}) and loaded, as a name given to libcamera
    directly would make the camera vanish.
    """
    if not value:
        return "default", None
    if os.sep in value or value.startswith("~"):
        path = Path(value).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"options.tuning_file: no such file {path}")
        return str(path), str(path)
    try:
        return value, picamera2_class.load_tuning_file(value)
    except RuntimeError as err:
        raise ConfigError(
            f"options.tuning_file: {value!r} is not in the tuning directories "
            "(~/libcamera/src/ipa/rpi/<platform>/data, /usr/local/share/libcamera/ipa/rpi/<platform>, "
            "/usr/share/libcamera/ipa/rpi/<platform>); give a path to use a file elsewhere"
        ) from err
    except ValueError as err:
        raise ConfigError(f"options.tuning_file: {value!r} is not valid JSON: {err}") from err


def sensor_modes(picam: Any) -> list[SensorMode]:
    """Return a camera's sensor modes, listed once per process: picamera2 lists them by configuring each in turn."""
    key = str(picam.camera.id)
    if key not in sensor_modes_seen:
        sensor_modes_seen[key] = [
            SensorMode.from_picamera2(mode) for mode in picam.sensor_modes if "crop_limits" in mode
        ]
    return sensor_modes_seen[key]


def select_sensor_mode(camera: CameraSettings, modes: list[SensorMode]) -> SensorMode:
    """Return the sensor mode a camera streams from: `options.sensor_mode` (WxH) when given, else the widest field of
    view that reaches its frame rate (sensor_modes.choose_mode); ConfigError for a size no mode has."""
    wanted = camera.options.get("sensor_mode", "").strip().lower()
    if not wanted:
        return choose_mode(modes, camera.size, camera.fps)
    if not re.fullmatch(r"\d+x\d+", wanted):
        raise ConfigError(
            f"options.sensor_mode must be a mode's size WxH (vergence cameras lists them), got {wanted!r}"
        )
    for mode in modes:
        if f"{mode.width}x{mode.height}" == wanted:
            return mode
    sizes = ", ".join(f"{m.width}x{m.height}" for m in modes)
    raise ConfigError(f"options.sensor_mode: camera {camera.id} has no {wanted} mode ({sizes})")


def video_configuration(picam: Any, camera: CameraSettings, mode: SensorMode, **extra: Any) -> dict[str, Any]:
    """Return picamera2's video configuration for a camera streaming YUV420 from `mode`."""
    config: dict[str, Any] = picam.create_video_configuration(
        main={"size": camera.size, "format": "YUV420"},
        raw=None,  # no raw buffers to fill memory: the sensor configuration alone picks the mode
        sensor={"output_size": (mode.width, mode.height), "bit_depth": mode.bit_depth},
        **extra,
    )
    return config


def i420_from_isp(array: np.ndarray, width: int, height: int, stride: int) -> np.ndarray:
    """Return a packed I420 image (h*3/2, w) from the ISP's YUV420 buffer: luma rows of `stride` bytes, chroma rows of
    stride/2 (picamera2 hands it as (h*3/2, stride))."""
    if stride == width:
        return array.reshape(height * 3 // 2, width)
    flat = array.reshape(-1)
    luma = flat[: stride * height].reshape(height, stride)[:, :width]
    half_stride, half_w, half_h = stride // 2, width // 2, height // 2
    start = stride * height
    u = flat[start : start + half_stride * half_h].reshape(half_h, half_stride)[:, :half_w]
    start += half_stride * half_h
    v = flat[start : start + half_stride * half_h].reshape(half_h, half_stride)[:, :half_w]
    return np.concatenate([luma.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(height * 3 // 2, width)


def is_limited_range(colour_space: Any) -> bool:
    """Whether a libcamera colour space is video (limited) range: Rec709 and SMPTE170M are, sYCC is not."""
    value = getattr(colour_space, "range", None)
    return value is not None and getattr(value, "name", str(value)).endswith("Limited")


def claim_tuning(index: int, name: str) -> None:
    """Record that camera `index` runs with tuning `name`; ConfigError when another open camera runs with another."""
    with _tuning_lock:
        for other_index, other in tunings_open.items():
            if other_index != index and other != name:
                raise ConfigError(
                    f"options.tuning_file: camera {index} asks for tuning {name} while camera {other_index} runs "
                    f"with {other}; libcamera loads one tuning file per process, so both eyes must share it"
                )
        tunings_open[index] = name


def release_tuning(index: int) -> None:
    with _tuning_lock:
        tunings_open.pop(index, None)
