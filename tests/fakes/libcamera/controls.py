"""Names of the libcamera controls the fake camera advertises (the real module holds ids and enums)."""

from __future__ import annotations

ScalerCrop = "ScalerCrop"
FrameDurationLimits = "FrameDurationLimits"
ExposureTime = "ExposureTime"
AnalogueGain = "AnalogueGain"
AeEnable = "AeEnable"
AwbEnable = "AwbEnable"
