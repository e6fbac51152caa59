"""Choosing a Raspberry Pi camera's sensor mode, and placing crops on the ISP's pixel grid (pure: no picamera2 here).

A sensor mode reads a window of the pixel array (its analog crop, picamera2's `crop_limits`) at some binning; the fastest
modes read a smaller window. libcamera's own choice follows the output size, so a 1280x720 stream on an imx708 gets the
cropped 3072x1728 window: a third less of the scene than the sensor offers. vergence asks for the mode with the widest
field of view at the output's aspect ratio that reaches the frame rate, and only then the smallest such mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vergence.ptz import Rect

# A mode counts as reaching a frame rate within this fraction (imx219's 1640x1232 mode is 41.85, asked 42 → take it).
FPS_TOLERANCE = 0.01


@dataclass(frozen=True, slots=True)
class SensorMode:
    """One readout mode, as picamera2's `sensor_modes` lists it."""

    width: int
    height: int
    bit_depth: int
    max_fps: float
    crop: Rect  # the analog crop: the window of the pixel array this mode reads, in full-resolution sensor pixels
    format: str = ""

    @classmethod
    def from_picamera2(cls, mode: dict[str, Any]) -> SensorMode:
        x, y, w, h = (int(v) for v in mode["crop_limits"])
        return cls(
            int(mode["size"][0]),
            int(mode["size"][1]),
            int(mode["bit_depth"]),
            float(mode["fps"]),
            Rect(x, y, w, h),
            str(mode.get("format", "")),
        )

    @property
    def binning(self) -> int:
        """Sensor pixels per mode pixel (2 for a 2x2 binned mode)."""
        return max(1, round(self.crop.width / self.width))

    def field(self, aspect: tuple[int, int]) -> tuple[int, int]:
        """The largest window at the output's aspect ratio this mode sees, in sensor pixels."""
        return _bounded((self.crop.width, self.crop.height), aspect)

    def describe(self, pixel_array: tuple[int, int], aspect: tuple[int, int]) -> dict[str, Any]:
        """What /api/streams and `vergence cameras` say about this mode."""
        field_w, field_h = self.field(aspect)
        full_w, full_h = _bounded(pixel_array, aspect)
        return {
            "size": [self.width, self.height],
            "bit_depth": self.bit_depth,
            "max_fps": round(self.max_fps, 2),
            "crop": list(self.crop.as_tuple()),
            "binning": self.binning,
            "field_of_view": round(field_w * field_h / (full_w * full_h), 3),
        }


def _bounded(size: tuple[int, int], aspect: tuple[int, int]) -> tuple[int, int]:
    """The largest size at `aspect` inside `size`."""
    width, height = size
    if width * aspect[1] > aspect[0] * height:
        return (height * aspect[0] // aspect[1], height)
    return (width, width * aspect[1] // aspect[0])


def choose_mode(modes: list[SensorMode], output: tuple[int, int], fps: float) -> SensorMode:
    """Return the mode to stream `output` at `fps`: the widest field among those fast enough, then the smallest that
    needs no upscaling, then the smallest; if none is fast enough, the fastest."""
    if not modes:
        raise ValueError("no sensor modes")
    fast = [mode for mode in modes if mode.max_fps >= fps * (1 - FPS_TOLERANCE)]
    if not fast:
        return max(modes, key=lambda mode: mode.max_fps)

    def area(size: tuple[int, int]) -> int:
        return size[0] * size[1]

    widest = max(area(mode.field(output)) for mode in fast)
    # Within 2 %: imx477's 2028x1080 window (3840x2160 at 16:9) and its full field (4056x2281) are not "the same".
    candidates = [mode for mode in fast if area(mode.field(output)) >= widest * 0.98]
    no_upscale = [mode for mode in candidates if mode.width >= output[0] and mode.height >= output[1]]
    return min(no_upscale or candidates, key=lambda mode: mode.width * mode.height)


def isp_aligned(crop: Rect, mode: SensorMode, minimum: tuple[int, int]) -> Rect:
    """Return `crop` as the ISP can apply it exactly: on the mode's pixel grid (a binned mode moves in steps of its
    binning), at least `minimum`, and inside the mode's window. The crop a frame then reports equals this one."""
    step = mode.binning
    window = mode.crop
    width = max(minimum[0], (crop.width + step // 2) // step * step)
    height = max(minimum[1], (crop.height + step // 2) // step * step)
    width, height = min(width, window.width), min(height, window.height)
    x = window.x + (crop.x - window.x) // step * step
    y = window.y + (crop.y - window.y) // step * step
    x = min(max(x, window.x), window.x + window.width - width)
    y = min(max(y, window.y), window.y + window.height - height)
    return Rect(x, y, width, height)
