"""libcamera's control ids (`libcamera.controls`) and their enumerations: the ones the Raspberry Pi pipeline offers."""

from __future__ import annotations

import enum

from ._libcamera import ControlId, ControlType

_T = ControlType


def _id(number: int, name: str, kind: ControlType, vendor: str = "libcamera") -> ControlId:
    return ControlId(number, name, kind, vendor)


AeEnable = _id(1, "AeEnable", _T.Bool)
AeLocked = _id(2, "AeLocked", _T.Bool)
ExposureTime = _id(7, "ExposureTime", _T.Integer32)
ExposureTimeMode = _id(8, "ExposureTimeMode", _T.Integer32)
AnalogueGain = _id(10, "AnalogueGain", _T.Float)
AnalogueGainMode = _id(11, "AnalogueGainMode", _T.Integer32)
Brightness = _id(14, "Brightness", _T.Float)
Contrast = _id(15, "Contrast", _T.Float)
Lux = _id(16, "Lux", _T.Float)
AwbEnable = _id(17, "AwbEnable", _T.Bool)
ColourGains = _id(20, "ColourGains", _T.Float)
ColourTemperature = _id(21, "ColourTemperature", _T.Integer32)
Saturation = _id(22, "Saturation", _T.Float)
Sharpness = _id(24, "Sharpness", _T.Float)
ScalerCrop = _id(26, "ScalerCrop", _T.Rectangle)
DigitalGain = _id(27, "DigitalGain", _T.Float)
FrameDuration = _id(28, "FrameDuration", _T.Integer64)
FrameDurationLimits = _id(29, "FrameDurationLimits", _T.Integer64)
SensorTemperature = _id(30, "SensorTemperature", _T.Float)
SensorTimestamp = _id(31, "SensorTimestamp", _T.Integer64)
FrameWallClock = _id(52, "FrameWallClock", _T.Integer64)


class draft:  # lower case, as in the binding
    """Draft controls."""

    class NoiseReductionModeEnum(enum.IntEnum):
        Off = 0
        Fast = 1
        HighQuality = 2
        Minimal = 3
        ZSL = 4

    NoiseReductionMode = _id(10002, "NoiseReductionMode", _T.Integer32, "draft")


class rpi:
    """Raspberry Pi vendor controls."""

    class SyncModeEnum(enum.IntEnum):
        """Software camera synchronisation: a server sets the pace, clients follow it."""

        Off = 0
        Server = 1
        Client = 2

    ScalerCrops = _id(20003, "ScalerCrops", _T.Rectangle, "rpi")
    SyncMode = _id(20005, "SyncMode", _T.Integer32, "rpi")
    SyncReady = _id(20006, "SyncReady", _T.Bool, "rpi")
    SyncTimer = _id(20007, "SyncTimer", _T.Integer64, "rpi")
    SyncFrames = _id(20008, "SyncFrames", _T.Integer32, "rpi")


class AfModeEnum(enum.IntEnum):
    Manual = 0
    Auto = 1
    Continuous = 2


class AfTriggerEnum(enum.IntEnum):
    Start = 0
    Cancel = 1


class AfStateEnum(enum.IntEnum):
    Idle = 0
    Scanning = 1
    Focused = 2
    Failed = 3


class ExposureTimeModeEnum(enum.IntEnum):
    Auto = 0
    Manual = 1


class AnalogueGainModeEnum(enum.IntEnum):
    Auto = 0
    Manual = 1
