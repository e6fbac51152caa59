"""libcamera's integer geometry, as the Raspberry Pi pipeline handler uses it to place a ScalerCrop (pipeline_base.cpp).

Rectangles are (x, y, width, height) tuples; sizes (width, height). Divisions truncate, as libcamera's unsigned ones do.
"""

from __future__ import annotations

Rect = tuple[int, int, int, int]
Size = tuple[int, int]


def expanded_to_aspect_ratio(size: Size, ratio: Size) -> Size:
    """Size::expandedToAspectRatio: the smallest size at `ratio` that holds `size`."""
    width, height = size
    ratio1, ratio2 = width * ratio[1], ratio[0] * height
    if ratio1 > ratio2:
        return (width, ratio1 // ratio[0])
    return (ratio2 // ratio[1], height)


def bounded_to_aspect_ratio(size: Size, ratio: Size) -> Size:
    """Size::boundedToAspectRatio: the largest size at `ratio` inside `size`."""
    width, height = size
    ratio1, ratio2 = width * ratio[1], ratio[0] * height
    if ratio1 > ratio2:
        return (ratio2 // ratio[1], height)
    return (width, ratio1 // ratio[0])


def centered_to(size: Size, center: tuple[int, int]) -> Rect:
    return (center[0] - size[0] // 2, center[1] - size[1] // 2, size[0], size[1])


def center(rect: Rect) -> tuple[int, int]:
    return (rect[0] + rect[2] // 2, rect[1] + rect[3] // 2)


def enclosed_in(rect: Rect, boundary: Rect) -> Rect:
    """Rectangle::enclosedIn: shrink to fit, then move inside."""
    x, y, w, h = rect
    w, h = min(w, boundary[2]), min(h, boundary[3])
    x = min(max(x, boundary[0]), boundary[0] + boundary[2] - w)
    y = min(max(y, boundary[1]), boundary[1] + boundary[3] - h)
    return (x, y, w, h)


def scaled_by(rect: Rect, numerator: Size, denominator: Size) -> Rect:
    """Rectangle::scaledBy."""
    x, y, w, h = rect
    return (
        x * numerator[0] // denominator[0],
        y * numerator[1] // denominator[1],
        w * numerator[0] // denominator[0],
        h * numerator[1] // denominator[1],
    )


def isp_to_native(isp_crop: Rect, analog_crop: Rect, output: Size) -> Rect:
    """CameraData::scaleIspCrop: a crop in the mode's pixels → full-resolution sensor pixels."""
    x, y, w, h = scaled_by(isp_crop, analog_crop[2:], output)
    return (x + analog_crop[0], y + analog_crop[1], w, h)


def apply_scaler_crop(requested: Rect, analog_crop: Rect, output: Size, isp_min: Size) -> Rect:
    """CameraData::applyScalerCrop: the ISP crop (mode pixels) a requested ScalerCrop (sensor pixels) becomes.

    At least the minimum size once that is grown to the request's aspect ratio, the same centre where possible, and never
    outside the mode's analog crop. No error: a bad crop is quietly made a good one.
    """
    native = requested if requested[2] and requested[3] else (0, 0, 1, 1)
    x, y, w, h = native[0] - analog_crop[0], native[1] - analog_crop[1], native[2], native[3]
    isp = scaled_by((x, y, w, h), output, analog_crop[2:])
    min_size = expanded_to_aspect_ratio(isp_min, native[2:])
    size = (max(isp[2], min_size[0]), max(isp[3], min_size[1]))
    return enclosed_in(centered_to(size, center(isp)), (0, 0, *output))


def default_isp_crop(mode_size: Size, output: Size) -> Rect:
    """The ISP crop a configuration starts with: the mode's picture cut to the output's aspect ratio, centred."""
    size = bounded_to_aspect_ratio(mode_size, output)
    return centered_to(size, center((0, 0, *mode_size)))
