"""Names of the libcamera controls the fake camera advertises (the real module holds ids and enums)."""

from __future__ import annotations

from enum import IntEnum

ScalerCrop = "ScalerCrop"
FrameDurationLimits = "FrameDurationLimits"
ExposureTime = "ExposureTime"
AnalogueGain = "AnalogueGain"
AeEnable = "AeEnable"
AwbEnable = "AwbEnable"
SyncMode = "SyncMode"
SyncFrames = "SyncFrames"


class rpi:  # lower case, as in the real bindings
    """Raspberry Pi vendor controls."""

    class SyncModeEnum(IntEnum):
        """Software camera synchronisation (libcamera ≥ 0.5): a server sets the pace, clients follow it."""

        Off = 0
        Server = 1
        Client = 2
