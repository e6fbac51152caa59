"""libcamera's camera property ids (`libcamera.properties`)."""

from __future__ import annotations

import enum

from ._libcamera import ControlId, ControlType

_T = ControlType

Location = ControlId(1, "Location", _T.Integer32)
Rotation = ControlId(2, "Rotation", _T.Integer32)
Model = ControlId(3, "Model", _T.String)
UnitCellSize = ControlId(4, "UnitCellSize", _T.Size)
PixelArraySize = ControlId(5, "PixelArraySize", _T.Size)
PixelArrayActiveAreas = ControlId(7, "PixelArrayActiveAreas", _T.Rectangle)
ScalerCropMaximum = ControlId(8, "ScalerCropMaximum", _T.Rectangle)
SensorSensitivity = ControlId(9, "SensorSensitivity", _T.Float)
SystemDevices = ControlId(10, "SystemDevices", _T.Integer64)


class draft:
    """Draft properties."""

    class ColorFilterArrangementEnum(enum.IntEnum):
        RGGB = 0
        GRBG = 1
        GBRG = 2
        BGGR = 3
        RGB = 4
        MONO = 5

    ColorFilterArrangement = ControlId(10001, "ColorFilterArrangement", _T.Integer32, "draft")
