"""Pure pan/tilt/zoom math: PTZ state ↔ crop rectangle in sensor pixels. No asyncio, no config, no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


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


@dataclass(frozen=True, slots=True)
class PtzState:
    """Where the view looks: crop centre as fractions of `crop_max` (0.5, 0.5 = centred) and zoom (1.0 = widest)."""

    pan: float = 0.5
    tilt: float = 0.5
    zoom: float = 1.0

    @classmethod
    def home(cls) -> PtzState:
        """Return the centred, fully zoomed-out state."""
        return cls()


@dataclass(frozen=True, slots=True)
class Velocity:
    """A held move: pan in crop widths/s, tilt in crop heights/s, zoom as a log rate (zoom *= exp(rate * dt))."""

    pan_per_s: float = 0.0
    tilt_per_s: float = 0.0
    zoom_per_s: float = 0.0


# A floor under every crop for the catalogued modules. The live minimum comes from libcamera's ScalerCrop control on the
# device; 64×64 sits above what the Pi ISPs accept, so a crop computed against the catalogue is never silently enlarged.
_ISP_MIN_CROP_PX = 64


def _full_array(width: int, height: int, min_crop_px: int) -> SensorGeometry:
    return SensorGeometry(width, height, Rect(0, 0, width, height), min_crop_px, min_crop_px)


# Full-resolution pixel arrays of the Raspberry Pi camera modules; crop_max is simplified to the whole array at (0, 0).
SENSORS: dict[str, SensorGeometry] = {
    "imx219": _full_array(3280, 2464, _ISP_MIN_CROP_PX),
    "imx477": _full_array(4056, 3040, _ISP_MIN_CROP_PX),
    "imx708": _full_array(4608, 2592, _ISP_MIN_CROP_PX),
}


def virtual_sensor(width: int, height: int) -> SensorGeometry:
    """Return the geometry of the test pattern's virtual scene of `width` × `height` pixels."""
    return _full_array(width, height, 32)


def _even(value: float) -> int:
    return 2 * math.floor(value / 2 + 0.5)


def _floor_even(value: int) -> int:
    return value - value % 2


def _ceil_even(value: int) -> int:
    return value + value % 2


def _unit(value: float) -> float:
    return min(max(value, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class _Limits:
    """The crop sizes and area one sensor, output size and zoom limit allow, all in even sensor pixels."""

    x0: int
    y0: int
    x1: int
    y1: int
    out_w: int
    out_h: int
    min_width: int
    max_width: int
    max_zoom: float

    def height_for(self, width: int) -> int:
        # Never taller than the area: the 1 px aspect tolerance in max_width covers the difference.
        return max(2, min(_even(width * self.out_h / self.out_w), self.y1 - self.y0))

    def place(self, x: float, y: float, width: int, height: int) -> Rect:
        """Return the rectangle at (x, y), rounded to even pixels and pushed inside the area."""
        return Rect(
            min(max(_even(x), self.x0), self.x1 - width),
            min(max(_even(y), self.y0), self.y1 - height),
            width,
            height,
        )


def _limits(sensor: SensorGeometry, output_size: tuple[int, int], max_zoom: float) -> _Limits:
    out_w, out_h = output_size
    if out_w <= 0 or out_h <= 0:
        raise ValueError(f"output_size must be positive, got {output_size}")
    area = sensor.crop_max
    # 4:2:0 chroma needs even offsets and sizes, so work in the largest even-aligned box inside crop_max.
    x0, y0 = _ceil_even(area.x), _ceil_even(area.y)
    x1, y1 = _floor_even(area.x + area.width), _floor_even(area.y + area.height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"crop_max {area} is too small to crop")
    # The aspect may be off by 1 px, so the width may use one row more than the height strictly allows.
    max_width = _floor_even(min(x1 - x0, (y1 - y0 + 1) * out_w // out_h))
    min_height = _ceil_even(sensor.crop_min_height)
    min_width = _ceil_even(max(2, sensor.crop_min_width, -(-min_height * out_w // out_h)))
    # When the minimum and the output aspect cannot both fit, the widest crop is the best we can do.
    min_width = min(min_width, max_width)
    zoom_limit = max(1.0, min(max_zoom, max_width / min_width))
    return _Limits(x0, y0, x1, y1, out_w, out_h, min_width, max_width, zoom_limit)


def _crop(state: PtzState, limits: _Limits) -> Rect:
    zoom = min(max(state.zoom, 1.0), limits.max_zoom)
    width = min(max(_even(limits.max_width / zoom), limits.min_width), limits.max_width)
    height = limits.height_for(width)
    centre_x = limits.x0 + _unit(state.pan) * (limits.x1 - limits.x0)
    centre_y = limits.y0 + _unit(state.tilt) * (limits.y1 - limits.y0)
    return limits.place(centre_x - width / 2, centre_y - height / 2, width, height)


def _clamp(state: PtzState, limits: _Limits) -> PtzState:
    crop = _crop(state, limits)
    return PtzState(
        pan=(crop.x + crop.width / 2 - limits.x0) / (limits.x1 - limits.x0),
        tilt=(crop.y + crop.height / 2 - limits.y0) / (limits.y1 - limits.y0),
        zoom=min(max(state.zoom, 1.0), limits.max_zoom),
    )


def crop_for(state: PtzState, sensor: SensorGeometry, output_size: tuple[int, int], max_zoom: float) -> Rect:
    """Return the ScalerCrop rectangle that shows `state` on `sensor` at the output's aspect ratio."""
    return _crop(state, _limits(sensor, output_size, max_zoom))


def clamp(state: PtzState, sensor: SensorGeometry, output_size: tuple[int, int], max_zoom: float) -> PtzState:
    """Return `state` moved to where its crop really is, so the UI shows what the camera does."""
    return _clamp(state, _limits(sensor, output_size, max_zoom))


def state_for_crop(crop: Rect, sensor: SensorGeometry, output_size: tuple[int, int], max_zoom: float) -> PtzState:
    """Return the state whose view is nearest a ScalerCrop rectangle someone asked for (pi-h264-to-browser's pages set
    the crop itself): the same centre, and the zoom its width gives; a crop of another aspect keeps the output's."""
    limits = _limits(sensor, output_size, max_zoom)
    state = PtzState(
        pan=(crop.x + crop.width / 2 - limits.x0) / (limits.x1 - limits.x0),
        tilt=(crop.y + crop.height / 2 - limits.y0) / (limits.y1 - limits.y0),
        zoom=limits.max_width / max(2, crop.width),
    )
    return _clamp(state, limits)


def look_at(
    state: PtzState, x: float, y: float, sensor: SensorGeometry, output_size: tuple[int, int], max_zoom: float
) -> PtzState:
    """Return `state` (its zoom kept) centred on the sensor point (x, y), or as near as the crop limits allow."""
    limits = _limits(sensor, output_size, max_zoom)
    pan = (x - limits.x0) / (limits.x1 - limits.x0)
    tilt = (y - limits.y0) / (limits.y1 - limits.y0)
    return _clamp(replace(state, pan=pan, tilt=tilt), limits)


def zoom_to(
    state: PtzState, zoom: float, sensor: SensorGeometry, output_size: tuple[int, int], max_zoom: float
) -> PtzState:
    """Return `state` at `zoom` around the same centre."""
    return clamp(replace(state, zoom=zoom), sensor, output_size, max_zoom)


def zoom_by(
    state: PtzState, factor: float, sensor: SensorGeometry, output_size: tuple[int, int], max_zoom: float
) -> PtzState:
    """Return `state` with its zoom multiplied by `factor` around the same centre."""
    limits = _limits(sensor, output_size, max_zoom)
    # Start from the clamped zoom so zooming out from past the limit responds at once.
    current = _clamp(state, limits)
    return _clamp(replace(current, zoom=current.zoom * factor), limits)


def pan_by(
    state: PtzState, dx: float, dy: float, sensor: SensorGeometry, output_size: tuple[int, int], max_zoom: float
) -> PtzState:
    """Return `state` moved by `dx` crop widths right and `dy` crop heights down."""
    return _move(state, _limits(sensor, output_size, max_zoom), dx, dy, 0.0)


def set_center(
    state: PtzState, pan: float, tilt: float, sensor: SensorGeometry, output_size: tuple[int, int], max_zoom: float
) -> PtzState:
    """Return `state` centred on (`pan`, `tilt`), fractions of crop_max."""
    return clamp(replace(state, pan=pan, tilt=tilt), sensor, output_size, max_zoom)


def integrate(
    state: PtzState,
    velocity: Velocity,
    dt: float,
    sensor: SensorGeometry,
    output_size: tuple[int, int],
    max_zoom: float,
) -> PtzState:
    """Return `state` after moving at `velocity` for `dt` seconds."""
    if dt <= 0 or velocity == Velocity():
        return state
    # Any zoom range a sensor allows saturates well inside e**±50; the bound only keeps exp() from overflowing.
    log_zoom = min(max(velocity.zoom_per_s * dt, -50.0), 50.0)
    limits = _limits(sensor, output_size, max_zoom)
    return _move(state, limits, velocity.pan_per_s * dt, velocity.tilt_per_s * dt, log_zoom)


def _move(state: PtzState, limits: _Limits, dx: float, dy: float, log_zoom: float) -> PtzState:
    # Step from where the crop really is, so a move away from an edge starts at once instead of after a dead zone.
    current = _clamp(state, limits)
    crop = _crop(current, limits)
    moved = PtzState(
        pan=current.pan + dx * crop.width / (limits.x1 - limits.x0),
        tilt=current.tilt + dy * crop.height / (limits.y1 - limits.y0),
        zoom=current.zoom * math.exp(log_zoom),
    )
    return _clamp(moved, limits)


def eye_crops(
    linked_state: PtzState,
    left_offset: tuple[int, int],
    right_offset: tuple[int, int],
    vergence: float,
    sensor_left: SensorGeometry,
    sensor_right: SensorGeometry,
    output_size: tuple[int, int],
    max_zoom: float,
) -> tuple[Rect, Rect]:
    """Return the (left, right) crops of two eyes that share `linked_state`.

    Offsets are each eye's calibration (dx, dy) in sensor pixels. `vergence` is the disparity between the eyes as a
    fraction of the crop width, clamped to [-0.5, 0.5]: positive converges (left crop moves right, right crop left,
    each by half of it).
    """
    vergence = min(max(vergence, -0.5), 0.5)
    left = eye_crop(linked_state, left_offset, vergence, sensor_left, output_size, max_zoom)
    right = eye_crop(linked_state, right_offset, -vergence, sensor_right, output_size, max_zoom)
    return left, right


def eye_crop(
    state: PtzState,
    offset: tuple[int, int],
    half_disparity: float,
    sensor: SensorGeometry,
    output_size: tuple[int, int],
    max_zoom: float,
) -> Rect:
    """Return one eye's crop: the linked state's crop moved by the eye's calibration offset and its share of vergence."""
    limits = _limits(sensor, output_size, max_zoom)
    crop = _crop(state, limits)
    # Round the magnitude, not the signed value, so matched eyes move by exactly mirrored amounts.
    shift = int(math.copysign(_even(abs(half_disparity) * crop.width / 2), half_disparity))
    return limits.place(crop.x + _even(offset[0]) + shift, crop.y + _even(offset[1]), crop.width, crop.height)
