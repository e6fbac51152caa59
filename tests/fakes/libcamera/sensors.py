"""The Raspberry Pi camera modules the fake knows: their sensor modes as libcamera lists them on a Raspberry Pi 5.

Each mode is what `rpicam-hello --list-cameras` prints for it (10/12-bit modes): output size, bit depth, top frame rate and
the analog crop it reads out (the field of view it covers, in full-resolution sensor pixels). Binning and sensitivity are
the sensors' camera helpers' (libcamera src/ipa/rpi/cam_helper_*.cpp): the imx708's 2x2 binned modes sum four pixels and
are twice as sensitive as its full-resolution mode; the others report 1.0 in every mode.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SensorMode:
    """One readout mode: the size it delivers, read from `analog_crop` (x, y, w, h) at `binning`."""

    width: int
    height: int
    bit_depth: int
    max_fps: float
    analog_crop: tuple[int, int, int, int]
    binning: int
    sensitivity: float = 1.0

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def min_frame_ns(self) -> int:
        return round(1e9 / self.max_fps)

    @property
    def full_field(self) -> bool:
        """Whether this mode reads the whole pixel array (is not cropped to a window of it)."""
        return self.analog_crop[:2] == (0, 0)


@dataclass(frozen=True)
class SensorModel:
    """One camera module."""

    model: str
    width: int
    height: int
    bayer: str  # the CSI-2 packed Bayer format's order, as libcamera names it
    i2c_address: str
    unit_cell_nm: tuple[int, int]
    modes: tuple[SensorMode, ...]
    has_lens: bool = False  # autofocus (AfMode, LensPosition): the imx708

    def raw_format(self, mode: SensorMode) -> str:
        return f"S{self.bayer}{mode.bit_depth}_CSI2P"

    @property
    def full_area(self) -> tuple[int, int, int, int]:
        return (0, 0, self.width, self.height)


SENSORS: dict[str, SensorModel] = {
    "imx219": SensorModel(
        "imx219",
        3280,
        2464,
        "RGGB",
        "10",
        (1120, 1120),
        (
            SensorMode(640, 480, 10, 103.33, (1000, 752, 1280, 960), 2),
            SensorMode(1640, 1232, 10, 41.85, (0, 0, 3280, 2464), 2),
            SensorMode(1920, 1080, 10, 47.57, (680, 692, 1920, 1080), 1),
            SensorMode(3280, 2464, 10, 21.19, (0, 0, 3280, 2464), 1),
        ),
    ),
    "imx477": SensorModel(
        "imx477",
        4056,
        3040,
        "BGGR",
        "1a",
        (1550, 1550),
        (
            SensorMode(1332, 990, 10, 120.05, (696, 528, 2664, 1980), 2),
            SensorMode(2028, 1080, 12, 50.03, (0, 440, 4056, 2160), 2),
            SensorMode(2028, 1520, 12, 40.01, (0, 0, 4056, 3040), 2),
            SensorMode(4056, 3040, 12, 10.00, (0, 0, 4056, 3040), 1),
        ),
    ),
    "imx708": SensorModel(
        "imx708",
        4608,
        2592,
        "RGGB",
        "1a",
        (1400, 1400),
        (
            SensorMode(1536, 864, 10, 120.13, (768, 432, 3072, 1728), 2, 2.0),
            SensorMode(2304, 1296, 10, 56.03, (0, 0, 4608, 2592), 2, 2.0),
            SensorMode(4608, 2592, 10, 14.35, (0, 0, 4608, 2592), 1, 1.0),
        ),
        has_lens=True,
    ),
}


def isp_min_crop(output: tuple[int, int]) -> tuple[int, int]:
    """Return the smallest ISP input (in mode pixels) for an output size: the PiSP scales down at most 16x.

    From pisp.cpp: (output − 1) / (input − 1) must stay below 16, so input ≥ (output − 1) / 16 + 2, and never below 32.
    """
    return (max(32, (output[0] - 1) // 16 + 2), max(32, (output[1] - 1) // 16 + 2))
