"""Pure pan/tilt/zoom math: PTZ state ↔ crop rectangle in sensor pixels. No asyncio, no config, no I/O."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rect:
    """A rectangle in sensor pixels (libcamera's ScalerCrop is (x, y, width, height))."""

    x: int
    y: int
    width: int
    height: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)


@dataclass(frozen=True, slots=True)
class SensorGeometry:
    """What a sensor (or the test pattern's virtual sensor) allows a crop to be.

    `crop_max` is the largest ScalerCrop rectangle (libcamera's ScalerCropMaximum: the active area in the current mode);
    `crop_min_width` / `crop_min_height` the smallest crop the ISP accepts (from the ScalerCrop control's minimum).
    """

    width: int
    height: int
    crop_max: Rect
    crop_min_width: int
    crop_min_height: int
