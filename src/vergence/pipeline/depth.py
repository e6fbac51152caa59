"""Depth: the disparity between the two eyes by semi-global block matching, shown as a colour-mapped third picture."""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vergence.media.frame import Frame, i420_planes

#: Keys of a calibration file, as written by OpenCV's `stereoCalibrate` samples.
CALIBRATION_MATRICES = ("K1", "D1", "K2", "D2", "R", "T")
CALIBRATION_SIZE = ("image_width", "image_height")

# StereoSGBM returns fixed-point disparities with 4 fractional bits; anything below minDisparity (0) is "unknown".
_SUBPIXEL = 16


@dataclass(frozen=True, slots=True, eq=False)  # eq on arrays is ambiguous, so compare by identity
class StereoCalibration:
    """Intrinsics and extrinsics of a stereo pair, at the image size they were measured at."""

    left_matrix: np.ndarray
    left_dist: np.ndarray
    right_matrix: np.ndarray
    right_dist: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    image_size: tuple[int, int]  # (width, height) in pixels

    @classmethod
    def load(cls, path: str | Path) -> StereoCalibration:
        """Read a calibration from an OpenCV FileStorage file (YAML/XML) or a `.npz` holding K1 D1 K2 D2 R T."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no stereo calibration file at {str(path)!r}")
        values = _read_npz(path) if path.suffix == ".npz" else _read_file_storage(path)
        matrices = {key: _as_matrix(path, key, values[key]) for key in CALIBRATION_MATRICES}
        width, height = (_as_size(path, key, values[key]) for key in CALIBRATION_SIZE)
        rotation = matrices["R"]
        if rotation.size == 3:  # a Rodrigues vector, as `stereoCalibrate` users sometimes save it
            rotation = cv2.Rodrigues(rotation.reshape(3, 1))[0]
        for key, value, shape in (
            ("K1", matrices["K1"], (3, 3)),
            ("K2", matrices["K2"], (3, 3)),
            ("R", rotation, (3, 3)),
        ):
            if value.shape != shape:
                raise ValueError(f"{path}: {key} must be a 3x3 matrix, got shape {value.shape}")
        if matrices["T"].size != 3:
            raise ValueError(f"{path}: T must hold 3 values, got {matrices['T'].size}")
        return cls(
            left_matrix=matrices["K1"],
            left_dist=matrices["D1"].reshape(-1),
            right_matrix=matrices["K2"],
            right_dist=matrices["D2"].reshape(-1),
            rotation=rotation,
            translation=matrices["T"].reshape(3, 1),
            image_size=(width, height),
        )

    def distance(self, disparity_px: float, sensor_width: float) -> float | None:
        """The distance (in the units of T) of a point `disparity_px` sensor pixels further right in the left eye than
        in the right, on sensors `sensor_width` wide, for a calibration made on pictures of the whole sensor field
        (its image_width across it). The pair is taken as parallel (R ignored): Z = fx · |T| / (d - (cx1 - cx2)).
        None when the point is at or beyond infinity for this calibration."""
        scale = self.image_size[0] / sensor_width
        focal = float(self.left_matrix[0, 0])
        principal_offset = float(self.left_matrix[0, 2] - self.right_matrix[0, 2])
        disparity = disparity_px * scale - principal_offset
        if disparity <= 0:
            return None
        return focal * float(np.linalg.norm(self.translation)) / disparity


@dataclass(frozen=True, slots=True)
class CameraModel:
    """One camera's pinhole model for the picture it delivers now: size, intrinsics, distortion (plumb bob)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple[float, ...]

    def k(self) -> list[float]:
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    def p(self) -> list[float]:
        return [self.fx, 0.0, self.cx, 0.0, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0]


def camera_model(
    matrix: np.ndarray,
    distortion: np.ndarray,
    calibration_width: int,
    sensor_width: int,
    crop: tuple[int, int, int, int],
    size: tuple[int, int],
) -> CameraModel:
    """The model of a camera calibrated at `calibration_width` over its whole sensor field, as it shows `crop` (sensor
    pixels) scaled to `size`: the intrinsics moved to the crop's corner and scaled by the zoom."""
    x, y, crop_width, crop_height = crop
    width, height = size
    to_sensor = sensor_width / calibration_width
    kx, ky = to_sensor * width / crop_width, to_sensor * height / crop_height
    return CameraModel(
        width=width,
        height=height,
        fx=float(matrix[0][0]) * kx,
        fy=float(matrix[1][1]) * ky,
        cx=float(matrix[0][2]) * kx - x * width / crop_width,
        cy=float(matrix[1][2]) * ky - y * height / crop_height,
        distortion=tuple(float(value) for value in np.asarray(distortion).reshape(-1)[:5]),
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as archive:
            values = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz calibration ({err})") from err
    _require_keys(path, values)
    return values


def _read_file_storage(path: Path) -> dict[str, np.ndarray]:
    try:
        storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as err:  # OpenCV raises a bare SystemError for some unparsable files
        raise ValueError(f"{path}: not a readable OpenCV YAML/XML calibration ({err})") from err
    try:
        if not storage.isOpened():
            raise ValueError(f"{path}: not a readable OpenCV YAML/XML calibration")
        values: dict[str, np.ndarray] = {}
        for key in CALIBRATION_MATRICES + CALIBRATION_SIZE:
            node = storage.getNode(key)
            if node.empty() or node.isNone():
                continue
            if node.isMap():  # an `!!opencv-matrix`
                values[key] = node.mat()
            elif node.isSeq():
                values[key] = np.array([node.at(i).real() for i in range(node.size())])
            else:
                values[key] = np.array(node.real())
    finally:
        storage.release()
    _require_keys(path, values)
    return values


def _require_keys(path: Path, values: dict[str, np.ndarray]) -> None:
    missing = [key for key in CALIBRATION_MATRICES + CALIBRATION_SIZE if key not in values]
    if missing:
        raise ValueError(f"{path}: stereo calibration is missing {', '.join(missing)}")


def _as_matrix(path: Path, key: str, value: np.ndarray) -> np.ndarray:
    matrix = np.asarray(value, np.float64)
    if matrix.size == 0 or not np.all(np.isfinite(matrix)):
        raise ValueError(f"{path}: {key} must be a non-empty matrix of finite numbers")
    return matrix


def _as_size(path: Path, key: str, value: np.ndarray) -> int:
    array = np.asarray(value, np.float64).reshape(-1)
    if array.size != 1 or not array[0] >= 1 or array[0] != round(array[0]):
        raise ValueError(f"{path}: {key} must be a positive whole number of pixels, got {value!r}")
    return int(array[0])


class DepthEstimator:
    """Turn a pair of eye images into a disparity map and a colour-mapped I420 picture of the eyes' size.

    Matching runs on the pair downscaled by `scale`: SGBM's cost grows with pixels x disparities, so for the same depth
    range half the size costs an eighth. `num_disparities` is the search range at that working size. Intermediate buffers are reused, so one
    estimator must be used from one thread at a time.
    """

    def __init__(
        self,
        width: int,
        height: int,
        *,
        scale: float = 0.5,
        num_disparities: int = 64,
        block_size: int = 5,
        calibration: StereoCalibration | None = None,
    ) -> None:
        if width < 2 or height < 2 or width % 2 or height % 2:
            raise ValueError(f"width and height must be even and at least 2 (I420), got {width}x{height}")
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        if num_disparities < 16 or num_disparities % 16:
            raise ValueError(f"num_disparities must be a positive multiple of 16, got {num_disparities}")
        if block_size < 1 or block_size % 2 == 0 or block_size > 11:
            raise ValueError(f"block_size must be odd and in 1..11, got {block_size}")
        self.width, self.height = width, height
        # An even working size lets the colour map go to I420 before it is upscaled, which moves half the bytes of BGR.
        self.work_width = max(2, round(width * scale / 2) * 2)
        self.work_height = max(2, round(height * scale / 2) * 2)
        if self.work_width <= num_disparities:
            raise ValueError(
                f"num_disparities {num_disparities} leaves nothing to match at the working width {self.work_width}; "
                "lower it or raise scale"
            )
        self.scale = self.work_width / width
        self.num_disparities = num_disparities
        #: Largest disparity the search can report, in full-resolution pixels: the top of the colour map.
        self.max_disparity = num_disparities / self.scale
        self.last_median_disparity = float("nan")
        self._matcher = cv2.StereoSGBM.create(
            minDisparity=0,
            numDisparities=num_disparities,
            blockSize=block_size,
            # OpenCV's suggested smoothness penalties for one channel: P1 for +-1 px steps, P2 for larger jumps.
            P1=8 * block_size * block_size,
            P2=32 * block_size * block_size,
            disp12MaxDiff=1,
            uniquenessRatio=10,
            speckleWindowSize=100,
            speckleRange=2,
            # 3WAY is the fastest mode (measured 14 ms against 36 for SGBM and 48 for HH4 at 640x360, 64 disparities).
            mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY,
        )
        work = (self.work_height, self.work_width)
        self._small = (np.empty(work, np.uint8), np.empty(work, np.uint8))
        self._rectified = (np.empty(work, np.uint8), np.empty(work, np.uint8))
        self._raw = np.empty(work, np.int16)
        self._index = np.empty(work, np.uint8)
        self._bgr = np.empty((*work, 3), np.uint8)
        self._maps = None if calibration is None else self._rectify_maps(calibration)

    def _rectify_maps(
        self, calibration: StereoCalibration
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Return fixed-point remap tables that rectify each eye at the working size."""
        cal_width, cal_height = calibration.image_size
        if abs(cal_width / cal_height - self.width / self.height) > 0.01:
            raise ValueError(
                f"calibration was made at {cal_width}x{cal_height}, whose aspect ratio differs from {self.width}x{self.height}; "
                "a different sensor crop needs its own calibration"
            )
        # Rectify at the calibrated size (alpha=0 keeps only valid pixels, so no black wedges to mis-match), then move
        # both cameras to the working size, pixel centre onto pixel centre, so the remap runs on the small picture.
        r1, r2, p1, p2, *_ = cv2.stereoRectify(
            calibration.left_matrix,
            calibration.left_dist,
            calibration.right_matrix,
            calibration.right_dist,
            (cal_width, cal_height),
            calibration.rotation,
            calibration.translation,
            flags=cv2.CALIB_ZERO_DISPARITY,
            alpha=0,
        )
        sx, sy = self.work_width / cal_width, self.work_height / cal_height
        to_work = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        size = (self.work_width, self.work_height)
        maps = []
        for matrix, dist, rect, proj in (
            (calibration.left_matrix, calibration.left_dist, r1, p1),
            (calibration.right_matrix, calibration.right_dist, r2, p2),
        ):
            map1, map2 = cv2.initUndistortRectifyMap(
                to_work @ matrix, dist, rect, (to_work @ proj)[:, :3], size, cv2.CV_16SC2
            )
            maps.append((map1, map2))
        return maps[0], maps[1]

    def disparity(self, left_gray: np.ndarray, right_gray: np.ndarray) -> np.ndarray:
        """Return the disparity of each working-size pixel of the left eye, in full-resolution pixels, NaN where unknown.

        The map has shape (work_height, work_width); multiply a full-resolution position by `scale` to look it up.
        """
        raw = self._match(left_gray, right_gray)
        out = raw.astype(np.float32)
        out *= 1 / (_SUBPIXEL * self.scale)
        out[raw < 0] = np.nan
        return out

    def _match(self, left_gray: np.ndarray, right_gray: np.ndarray) -> np.ndarray:
        """Return SGBM's fixed-point disparity (16ths of a working pixel, negative where unknown) in a reused buffer."""
        expected = (self.height, self.width)
        if left_gray.shape != expected or right_gray.shape != expected:
            raise ValueError(f"expected two {expected} gray images, got {left_gray.shape} and {right_gray.shape}")
        size = (self.work_width, self.work_height)
        for source, small in zip((left_gray, right_gray), self._small, strict=True):
            # INTER_AREA averages instead of skipping pixels, so fine texture does not alias into false matches.
            cv2.resize(source, size, dst=small, interpolation=cv2.INTER_AREA)
        left, right = self._small
        if self._maps is not None:
            for small, rectified, (map1, map2) in zip(self._small, self._rectified, self._maps, strict=True):
                cv2.remap(small, map1, map2, cv2.INTER_LINEAR, dst=rectified)
            left, right = self._rectified
        self._matcher.compute(left, right, self._raw)
        return self._raw

    def colorize(self, disparity: np.ndarray) -> np.ndarray:
        """Return an I420 picture of shape (height*3/2, width): near is red, far is blue, unknown is black."""
        rows, cols = disparity.shape
        if rows % 2 or cols % 2:
            raise ValueError(f"disparity map must have even dimensions, got {disparity.shape}")
        known = np.isfinite(disparity) & (disparity >= 0)
        index = self._index if disparity.shape == self._index.shape else np.empty(disparity.shape, np.uint8)
        # NaN has no uint8 value: unknown pixels get index 0 here and are painted black afterwards.
        cv2.convertScaleAbs(np.where(known, disparity, 0), dst=index, alpha=255 / self.max_disparity)
        return self._to_i420(index, known)

    def _to_i420(self, index: np.ndarray, known: np.ndarray) -> np.ndarray:
        rows, cols = index.shape
        bgr = self._bgr if index.shape == self._bgr.shape[:2] else np.empty((rows, cols, 3), np.uint8)
        cv2.applyColorMap(index, cv2.COLORMAP_TURBO, dst=bgr)
        bgr[~known] = 0
        small = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
        # A fresh output each call: the Frame travels on to encoders while the next pair is being matched.
        out = np.empty((self.height * 3 // 2, self.width), np.uint8)
        for target, plane in zip(
            i420_planes(out, self.width, self.height), i420_planes(small, cols, rows), strict=True
        ):
            cv2.resize(plane, (target.shape[1], target.shape[0]), dst=target, interpolation=cv2.INTER_NEAREST)
        return out

    def process(self, left: Frame, right: Frame) -> Frame:
        """Return the colour-mapped depth picture of a pair, stamped with the older capture; update `last_median_disparity`."""
        started = time.perf_counter()
        raw = self._match(left.gray(), right.gray())
        known = raw >= 0
        # The fixed-point map goes straight to colour indices, skipping a float copy of the whole map; unknown pixels
        # get some index here and are painted black afterwards.
        cv2.convertScaleAbs(raw, dst=self._index, alpha=255 / (_SUBPIXEL * self.num_disparities))
        image = self._to_i420(self._index, known)
        self.last_median_disparity = _median_disparity(raw, self.num_disparities) / self.scale
        frame = Frame(
            image=image,
            pix_fmt="yuv420p",
            width=self.width,
            height=self.height,
            seq=0,
            pts=left.pts,
            capture_ns=min(left.capture_ns, right.capture_ns),
        )
        frame.timings_ms["depth"] = (time.perf_counter() - started) * 1000
        return frame


def _median_disparity(raw: np.ndarray, num_disparities: int) -> float:
    """Return the median of the known fixed-point disparities in working pixels, NaN when none is known."""
    # A histogram of the 16 * num_disparities possible values is exact and far cheaper than sorting the map; read as
    # uint16, every unknown (negative) value lands above the known range.
    counts = np.bincount(raw.reshape(-1).view(np.uint16))[: _SUBPIXEL * num_disparities]
    total = int(counts.sum())
    if total == 0:
        return float("nan")
    middle = int(np.searchsorted(np.cumsum(counts), (total + 1) / 2))
    return middle / _SUBPIXEL
