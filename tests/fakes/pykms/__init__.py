"""A stand-in for the DRM/KMS display binding (Raspberry Pi OS's python3-kms++), which picamera2 imports for its DRM
preview window. vergence never opens a preview; this only lets `import picamera2` succeed where no display exists.
Using it is an error."""

from __future__ import annotations

import enum


class PixelFormat(enum.Enum):
    """The formats picamera2's DRM preview names at import time."""

    RGB888 = "RG24"
    BGR888 = "BG24"
    XRGB8888 = "XR24"
    XBGR8888 = "XB24"
    YUV420 = "YU12"
    YVU420 = "YV12"
    NV12 = "NV12"
    NV21 = "NV21"
    YUYV = "YUYV"
    UYVY = "UYVY"


def __getattr__(name: str) -> object:
    raise NotImplementedError(f"pykms.{name}: no display in the fake hardware (vergence never opens a DRM preview)")
