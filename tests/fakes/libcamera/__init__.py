"""A fake of libcamera's Python binding (Raspberry Pi OS's python3-libcamera) for running the real picamera2 from PyPI
without a camera: the binding's classes, and behind them the Raspberry Pi pipeline handler and IPA as libcamera's
sources describe them (camera.py), for the sensors in sensors.py. `rig` is the hardware: which modules are attached,
the light, faults, and what each camera did. Importing it also fakes the kernel calls picamera2 makes itself (_kernel).
"""

from . import _kernel, controls, properties, rig
from . import _libcamera as _libcamera
from ._libcamera import (
    CameraConfiguration,
    ColorSpace,
    ControlId,
    ControlInfo,
    ControlType,
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
    Transform,
)
from .camera import Camera, CameraManager

_libcamera.Camera = Camera  # type: ignore[attr-defined]  # picamera2 checks isinstance against _libcamera's classes
_libcamera.CameraManager = CameraManager  # type: ignore[attr-defined]


class FrameBufferAllocator:
    """libcamera's own allocator (picamera2's LibcameraAllocator): not modelled; picamera2 uses its DmaAllocator."""

    def __init__(self, camera: Camera) -> None:
        raise NotImplementedError(
            "the fake libcamera has no FrameBufferAllocator: picamera2 allocates from the dma-heap"
        )


def log_set_level(category: str, level: str) -> None:
    """Set a libcamera log level (the fake logs through Python's logging, logger "libcamera")."""


__all__ = [
    "Camera",
    "CameraConfiguration",
    "CameraManager",
    "ColorSpace",
    "ControlId",
    "ControlInfo",
    "ControlType",
    "FrameBuffer",
    "FrameBufferAllocator",
    "FrameMetadata",
    "Orientation",
    "PixelFormat",
    "Rectangle",
    "Request",
    "SensorConfiguration",
    "Size",
    "Stream",
    "StreamConfiguration",
    "StreamFormats",
    "StreamRole",
    "Transform",
    "controls",
    "properties",
    "rig",
]

_kernel.install()
