from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from vergence.media.frame import Frame, i420_planes
from vergence.pipeline.depth import DepthEstimator, StereoCalibration

WIDTH, HEIGHT = 1280, 720
# What cv2's BGR2YUV_I420 makes of black: studio-range Y, neutral chroma.
BLACK_Y, BLACK_UV = 16, 128


def texture(seed: int, height: int, width: int) -> np.ndarray:
    """Return smoothed noise: texture SGBM can match at half size without aliasing."""
    noise = np.random.default_rng(seed).random((height, width), dtype=np.float32) * 255
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.5)
    # Blurring squeezes the noise towards mid-grey; stretch it back to the full range.
    smooth -= smooth.min()
    return (smooth * (255 / smooth.max())).astype(np.uint8)


def plane_pair(d: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Return a fronto-parallel plane seen at disparity `d`: right(x) = left(x + d)."""
    scene = texture(seed, HEIGHT, WIDTH + d)
    return np.ascontiguousarray(scene[:, :WIDTH]), np.ascontiguousarray(scene[:, d : d + WIDTH])


BOX = (400, 200, 880, 520)  # foreground (x0, y0, x1, y1) in left-eye pixels


def two_plane_pair(background_d: int, foreground_d: int) -> tuple[np.ndarray, np.ndarray]:
    """Return a background plane at `background_d` with a nearer rectangle at `foreground_d` occluding it."""
    left, right = plane_pair(background_d, seed=2)
    front = texture(3, HEIGHT, WIDTH)
    x0, y0, x1, y1 = BOX
    left[y0:y1, x0:x1] = front[y0:y1, x0:x1]
    right[y0:y1, x0 - foreground_d : x1 - foreground_d] = front[y0:y1, x0:x1]
    return left, right


def frame(gray: np.ndarray, capture_ns: int) -> Frame:
    image = np.full((HEIGHT * 3 // 2, WIDTH), 128, np.uint8)
    image[:HEIGHT] = gray
    return Frame(image=image, pix_fmt="yuv420p", width=WIDTH, height=HEIGHT, seq=0, pts=0, capture_ns=capture_ns)


def known_median(disparity: np.ndarray) -> float:
    known = disparity[np.isfinite(disparity)]
    assert known.size > 0.5 * disparity.size
    return float(np.median(known))


def write_calibration(path: Path, size: tuple[int, int], skip: str = "", right_dy: float = 0.0) -> None:
    """Write an ideal rig: fx = fy = 1000 at `size`, centred, no distortion, no rotation, 6 cm baseline.

    `right_dy` moves the right eye's principal point down, as a right sensor mounted that many pixels higher would.
    """
    width, height = size
    matrix = np.array([[1000.0, 0, (width - 1) / 2], [0, 1000.0, (height - 1) / 2], [0, 0, 1]])
    right_matrix = matrix.copy()
    right_matrix[1, 2] += right_dy
    values = {
        "K1": matrix,
        "D1": np.zeros((1, 5)),
        "K2": right_matrix,
        "D2": np.zeros((1, 5)),
        "R": np.eye(3),
        "T": np.array([[-0.06], [0.0], [0.0]]),
    }
    storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    for key, value in values.items():
        if key != skip:
            storage.write(key, value)
    storage.write("image_width", width)
    storage.write("image_height", height)
    storage.release()


@pytest.mark.parametrize("d", [24, 60])
def test_plane_median_disparity_is_within_10_percent(d: int) -> None:
    estimator = DepthEstimator(WIDTH, HEIGHT, scale=0.5)
    disparity = estimator.disparity(*plane_pair(d))
    assert disparity.dtype == np.float32
    assert disparity.shape == (estimator.work_height, estimator.work_width) == (360, 640)
    assert known_median(disparity) == pytest.approx(d, rel=0.1)


def test_two_planes_each_within_10_percent() -> None:
    background_d, foreground_d = 16, 48
    estimator = DepthEstimator(WIDTH, HEIGHT, scale=0.5)
    disparity = estimator.disparity(*two_plane_pair(background_d, foreground_d))
    x0, y0, x1, y1 = (round(v * estimator.scale) for v in BOX)
    inside = np.zeros(disparity.shape, bool)
    inside[y0:y1, x0:x1] = True
    assert known_median(np.where(inside, disparity, np.nan)[y0:y1, x0:x1]) == pytest.approx(foreground_d, rel=0.1)
    outside = disparity[~inside]
    assert float(np.nanmedian(outside)) == pytest.approx(background_d, rel=0.1)


def test_colorize_is_i420_with_unknown_black() -> None:
    estimator = DepthEstimator(WIDTH, HEIGHT, scale=0.5)
    disparity = np.full((estimator.work_height, estimator.work_width), 40.0, np.float32)
    disparity[:, : estimator.work_width // 2] = np.nan
    image = estimator.colorize(disparity)
    assert image.shape == (HEIGHT * 3 // 2, WIDTH) and image.dtype == np.uint8
    y, u, v = i420_planes(image, WIDTH, HEIGHT)
    assert (y[:, : WIDTH // 2] == BLACK_Y).all()
    assert (u[:, : WIDTH // 4] == BLACK_UV).all() and (v[:, : WIDTH // 4] == BLACK_UV).all()
    assert (y[:, WIDTH // 2 :] > BLACK_Y + 10).all()


def test_colorize_puts_near_and_far_at_opposite_ends_of_the_map() -> None:
    estimator = DepthEstimator(WIDTH, HEIGHT, scale=0.5)
    disparity = np.zeros((estimator.work_height, estimator.work_width), np.float32)
    disparity[:, estimator.work_width // 2 :] = estimator.max_disparity
    _, u, v = i420_planes(estimator.colorize(disparity), WIDTH, HEIGHT)
    # Turbo runs from dark blue (far: more U than V) to dark red (near: more V than U).
    far, near = (int(u[0, 0]), int(v[0, 0])), (int(u[0, -1]), int(v[0, -1]))
    assert far[0] > far[1] and near[1] > near[0] + 50


def test_process_makes_a_depth_frame_of_one_eye_size() -> None:
    d = 24
    left, right = plane_pair(d)
    estimator = DepthEstimator(WIDTH, HEIGHT, scale=0.5)
    out = estimator.process(frame(left, 2_000), frame(right, 1_000))
    assert (out.pix_fmt, out.width, out.height) == ("yuv420p", WIDTH, HEIGHT)
    assert out.image.shape == (HEIGHT * 3 // 2, WIDTH) and out.image.dtype == np.uint8
    assert out.capture_ns == 1_000
    assert out.timings_ms["depth"] > 0
    assert estimator.last_median_disparity == pytest.approx(d, rel=0.1)
    # SGBM cannot match the left strip that the right eye does not see: it is unknown, so black.
    y, _, _ = i420_planes(out.image, WIDTH, HEIGHT)
    assert (y[:, :100] == BLACK_Y).all()
    assert (y[:, 300:] > BLACK_Y).mean() > 0.95


def test_process_output_is_not_reused() -> None:
    left, right = plane_pair(24)
    estimator = DepthEstimator(WIDTH, HEIGHT)
    first = estimator.process(frame(left, 0), frame(right, 0))
    kept = first.image.copy()
    estimator.process(frame(right, 0), frame(left, 0))
    assert np.array_equal(first.image, kept)


def test_flat_pair_does_not_raise() -> None:
    flat = np.full((HEIGHT, WIDTH), 90, np.uint8)
    estimator = DepthEstimator(WIDTH, HEIGHT)
    disparity = estimator.disparity(flat, flat)
    out = estimator.process(frame(flat, 5), frame(flat, 5))
    assert out.image.shape == (HEIGHT * 3 // 2, WIDTH)
    # SGBM has nothing to match on: it reports unknown or zero (far), never a nearby surface.
    assert not (disparity > 1).any()
    assert not estimator.last_median_disparity > 1


def test_calibration_loads_from_yaml_and_rectification_keeps_the_disparity(tmp_path: Path) -> None:
    path = tmp_path / "stereo.yml"
    write_calibration(path, (WIDTH, HEIGHT))
    calibration = StereoCalibration.load(path)
    assert calibration.image_size == (WIDTH, HEIGHT)
    assert calibration.left_matrix.shape == (3, 3) and calibration.translation.shape == (3, 1)
    d = 24
    estimator = DepthEstimator(WIDTH, HEIGHT, calibration=calibration)
    assert known_median(estimator.disparity(*plane_pair(d))) == pytest.approx(d, rel=0.1)


def test_rectification_corrects_a_vertical_offset_between_the_eyes(tmp_path: Path) -> None:
    d, dy = 24, 6
    scene = texture(4, HEIGHT + dy, WIDTH + d)
    # The right eye sees every point `dy` rows lower than the left: right(x, y) = left(x + d, y - dy).
    left = np.ascontiguousarray(scene[dy:, :WIDTH])
    right = np.ascontiguousarray(scene[:HEIGHT, d : d + WIDTH])
    unrectified = DepthEstimator(WIDTH, HEIGHT).disparity(left, right)
    assert np.isfinite(unrectified).mean() < 0.5  # rows that do not line up hardly match at all
    path = tmp_path / "stereo.yml"
    write_calibration(path, (WIDTH, HEIGHT), right_dy=dy)
    estimator = DepthEstimator(WIDTH, HEIGHT, calibration=StereoCalibration.load(path))
    assert known_median(estimator.disparity(left, right)) == pytest.approx(d, rel=0.1)


def test_calibration_made_at_another_size_of_the_same_aspect_is_scaled(tmp_path: Path) -> None:
    path = tmp_path / "stereo.xml"
    write_calibration(path, (1920, 1080))
    estimator = DepthEstimator(WIDTH, HEIGHT, calibration=StereoCalibration.load(path))
    assert known_median(estimator.disparity(*plane_pair(24))) == pytest.approx(24, rel=0.1)


def test_calibration_of_another_aspect_ratio_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "stereo.yml"
    write_calibration(path, (640, 480))
    with pytest.raises(ValueError, match="aspect ratio"):
        DepthEstimator(WIDTH, HEIGHT, calibration=StereoCalibration.load(path))


def test_calibration_loads_from_npz(tmp_path: Path) -> None:
    yaml_path = tmp_path / "stereo.yml"
    write_calibration(yaml_path, (WIDTH, HEIGHT))
    from_yaml = StereoCalibration.load(yaml_path)
    npz_path = tmp_path / "stereo.npz"
    np.savez(
        npz_path,
        K1=from_yaml.left_matrix,
        D1=from_yaml.left_dist,
        K2=from_yaml.right_matrix,
        D2=from_yaml.right_dist,
        R=from_yaml.rotation,
        T=from_yaml.translation,
        image_width=WIDTH,
        image_height=HEIGHT,
    )
    from_npz = StereoCalibration.load(npz_path)
    assert from_npz.image_size == (WIDTH, HEIGHT)
    assert np.array_equal(from_npz.translation, from_yaml.translation)


def test_calibration_missing_a_key_names_it(tmp_path: Path) -> None:
    path = tmp_path / "stereo.yml"
    write_calibration(path, (WIDTH, HEIGHT), skip="T")
    with pytest.raises(ValueError, match=r"missing T"):
        StereoCalibration.load(path)


def test_calibration_path_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.yml"):
        StereoCalibration.load(tmp_path / "nowhere.yml")


def test_calibration_that_is_not_a_calibration_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "stereo.yml"
    path.write_text("this is: [not, a calibration\n")
    with pytest.raises(ValueError, match="stereo.yml"):
        StereoCalibration.load(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_disparities": 40}, "multiple of 16"),
        ({"block_size": 4}, "block_size"),
        ({"scale": 0}, "scale"),
        ({"scale": 0.05}, "working width"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DepthEstimator(WIDTH, HEIGHT, **kwargs)


def test_images_of_the_wrong_size_are_refused() -> None:
    estimator = DepthEstimator(WIDTH, HEIGHT)
    small = np.zeros((360, 640), np.uint8)
    with pytest.raises(ValueError, match="gray images"):
        estimator.disparity(small, small)
