"""Digital video stabilization of live I420 frames: measure the camera's shake and warp it away, within a crop margin.

Each frame's motion relative to the previous one is measured on a small copy of the luma plane (corners found by
`goodFeaturesToTrack`, followed by pyramidal Lucas-Kanade, fitted by a RANSAC similarity transform). The motions add up
to the camera trajectory (x, y, angle), which a causal low-pass filter smooths: this is live video, so there is no
look-ahead, and the smoothed path trails a deliberate pan by a constant few frames. Each frame is then warped by
(smoothed − actual) and zoomed in by 1 / (1 − 2 × margin) about the centre so that the shifted borders stay out of view.

Pure code: numpy and OpenCV only, no I/O, no asyncio, no config. Not thread-safe: one Stabilizer per stream.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from vergence.media.frame import i420_planes

#: Corners sought on the analysis image; 200 spread over 320×180 leave RANSAC plenty of inliers at ~1 ms.
MAX_FEATURES = 200
#: Fewer tracked points (or RANSAC inliers) than this and the frame's motion is not trusted.
MIN_FEATURES = 12
#: A frame-to-frame scale outside this range means tracking went wrong (or the lens zoomed): not shake, so ignore it.
SCALE_RANGE = (0.8, 1.25)


class Stabilizer:
    """Remove camera shake from a stream of I420 frames of one size, following slow intended pans."""

    #: dx, dy (pixels, full resolution) and angle (radians, about the centre) applied to the last frame, before zooming.
    last_correction: tuple[float, float, float]
    #: Frames whose motion could not be measured and were taken as still (counts on across resets, like a metric).
    lost_frames: int

    def __init__(
        self, width: int, height: int, *, smoothing_radius: int = 15, margin: float = 0.08, analysis_width: int = 320
    ) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"I420 needs a positive even size, got {width}x{height}")
        if smoothing_radius < 1:
            raise ValueError(f"smoothing_radius must be at least 1, got {smoothing_radius}")
        if not 0.0 <= margin < 0.5:
            raise ValueError(f"margin must lie in [0, 0.5), got {margin}")
        self.width, self.height = width, height
        self.margin = margin
        self.zoom = 1.0 / (1.0 - 2.0 * margin)
        # Two cascaded exponential filters (a critically damped second-order low-pass) with the delay of a mean over the
        # last `smoothing_radius` frames, (r - 1) / 2 frames: at that delay they cut white frame-to-frame jitter to ~4 %
        # where the windowed mean leaves ~7 % and a single exponential ~9 %, with two numbers of state per axis.
        self._alpha = 4.0 / (smoothing_radius + 3.0)
        scale = min(1.0, analysis_width / width)
        self._analysis_size = (max(16, round(width * scale)), max(16, round(height * scale)))
        # Maps analysis-image pixel centres to full-resolution coordinates centred on the picture (INTER_AREA geometry).
        self._to_full = np.array([width / self._analysis_size[0], height / self._analysis_size[1]], np.float32)
        self._centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0], np.float32)
        self._ransac_px = float(self._to_full[0])  # one analysis pixel
        self._max_angle = self._largest_angle()
        self._scratch = np.empty(self._analysis_size[::-1], np.uint8)
        self._small = np.empty_like(self._scratch)
        self._previous_small = np.empty_like(self._small)
        self.lost_frames = 0
        self.reset()

    def reset(self) -> None:
        """Forget the trajectory: the next frame is the new reference and gets no correction."""
        self._has_previous = False
        self._trajectory = np.zeros(3)  # x, y (px, full resolution), angle (rad) of the scene since the reference frame
        self._stage1 = np.zeros(3)
        self._smoothed = np.zeros(3)
        self.last_correction = (0.0, 0.0, 0.0)

    def process(self, image: np.ndarray) -> np.ndarray:
        """Return a new stabilized I420 image of the same shape as `image`."""
        w, h = self.width, self.height
        if image.shape != (h * 3 // 2, w) or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 I420 image of shape {(h * 3 // 2, w)}, got {image.dtype} {image.shape}")
        luma, u, v = i420_planes(image, w, h)
        cv2.resize(luma, self._analysis_size, dst=self._scratch, interpolation=cv2.INTER_AREA)
        # Lucas-Kanade on a sharp image locks sub-pixel shifts towards whole pixels (a 0.25 px shift read as 0.27 px,
        # 0.75 px as 0.73); a slight blur halves that bias, and each analysis pixel is 4 output pixels at 720p.
        cv2.GaussianBlur(self._scratch, (5, 5), 0.8, dst=self._small)
        if self._has_previous:
            motion = self._measure(self._previous_small, self._small)
            if motion is None:
                # A flat, dark or blurred frame: assume the camera held still rather than guess or raise.
                self.lost_frames += 1
            else:
                self._trajectory += motion
            self._stage1 += self._alpha * (self._trajectory - self._stage1)
            self._smoothed += self._alpha * (self._stage1 - self._smoothed)
            dx, dy, angle = self._clamp(*(self._smoothed - self._trajectory))
        else:
            # The reference frame (the first, or the first after a reset): the smoother starts at rest on it.
            dx = dy = angle = 0.0
            self._has_previous = True
        self._small, self._previous_small = self._previous_small, self._small
        self.last_correction = (dx, dy, angle)

        luma_map, chroma_map = self._warp_maps(dx, dy, angle)
        # A fresh picture per call: the encoder and the fan-out may still hold the previous one. Each plane is warped
        # straight into it, so no scratch copies.
        out = np.empty_like(image)
        out_y, out_u, out_v = i420_planes(out, w, h)
        flags, border = cv2.INTER_LINEAR, cv2.BORDER_REPLICATE
        cv2.warpAffine(luma, luma_map, (w, h), dst=out_y, flags=flags, borderMode=border)
        cv2.warpAffine(u, chroma_map, (w // 2, h // 2), dst=out_u, flags=flags, borderMode=border)
        cv2.warpAffine(v, chroma_map, (w // 2, h // 2), dst=out_v, flags=flags, borderMode=border)
        return out

    def _warp_maps(self, dx: float, dy: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
        """Return the luma and chroma affine maps that correct by (dx, dy, angle) and zoom into the crop."""
        # In luma pixel coordinates p' = zoom * (R(angle) (p - c) + d) + c, with c the picture's centre.
        cos, sin = self.zoom * math.cos(angle), self.zoom * math.sin(angle)
        rotate = np.array([[cos, -sin], [sin, cos]])
        centre = self._centre.astype(np.float64)
        luma_map = np.empty((2, 3))
        luma_map[:, :2] = rotate
        luma_map[:, 2] = self.zoom * np.array([dx, dy]) + centre - rotate @ centre
        # Chroma sample q sits at luma 2q + 0.5; conjugating by that keeps the colour planes registered with the luma.
        chroma_map = luma_map.copy()
        chroma_map[:, 2] = (rotate @ np.array([0.5, 0.5]) + luma_map[:, 2] - 0.5) / 2.0
        return luma_map, chroma_map

    def _measure(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray | None:
        """Return the scene's motion (dx, dy, angle) from `previous` to `current`, or None when it can't be trusted."""
        # Re-detected on every frame: at this size it costs ~0.5 ms and keeps the points spread over the whole picture,
        # where carried-over tracks would drift off the edge during a pan.
        points = cv2.goodFeaturesToTrack(previous, MAX_FEATURES, qualityLevel=0.01, minDistance=8, blockSize=3)
        if points is None or len(points) < MIN_FEATURES:
            return None
        tracked, status, _error = cv2.calcOpticalFlowPyrLK(
            previous, current, points, np.empty_like(points), winSize=(21, 21), maxLevel=3
        )
        found = status.ravel() == 1
        if int(found.sum()) < MIN_FEATURES:
            return None
        # Fit in full-resolution coordinates about the picture's centre, so the angle turns about the centre (as the
        # warp does) and the translation comes out in output pixels.
        start = (points[found].reshape(-1, 2) + 0.5) * self._to_full - 0.5 - self._centre
        end = (tracked[found].reshape(-1, 2) + 0.5) * self._to_full - 0.5 - self._centre
        fit, inliers = cv2.estimateAffinePartial2D(start, end, method=cv2.RANSAC, ransacReprojThreshold=self._ransac_px)
        if fit is None or inliers is None or int(inliers.sum()) < MIN_FEATURES:
            return None
        scale = math.hypot(fit[0, 0], fit[1, 0])
        if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
            return None
        return np.array([fit[0, 2], fit[1, 2], math.atan2(fit[1, 0], fit[0, 0])])

    def _extent(self, angle: float) -> tuple[float, float]:
        """Return the half-width and half-height of the source area the output shows when turned by `angle`."""
        half_w, half_h = self.width / 2.0 / self.zoom, self.height / 2.0 / self.zoom
        cos, sin = math.cos(angle), abs(math.sin(angle))
        return half_w * cos + half_h * sin, half_w * sin + half_h * cos

    def _largest_angle(self) -> float:
        """Return the largest turn that keeps the zoomed view inside the picture with no shift."""
        low, high = 0.0, math.pi / 4
        for _ in range(40):  # bisection: the extent grows monotonically over [0, pi/4]
            middle = (low + high) / 2
            ex, ey = self._extent(middle)
            if ex <= self.width / 2.0 and ey <= self.height / 2.0:
                low = middle
            else:
                high = middle
        return low

    def _clamp(self, dx: float, dy: float, angle: float) -> tuple[float, float, float]:
        """Limit a correction so the view never leaves the picture (a fast pan outruns the smoother's delay)."""
        angle = min(max(angle, -self._max_angle), self._max_angle)
        ex, ey = self._extent(angle)
        slack_x, slack_y = max(0.0, self.width / 2.0 - ex), max(0.0, self.height / 2.0 - ey)
        # The view's centre in the source is -R(-angle) d; clamp it there, then map back.
        cos, sin = math.cos(angle), math.sin(angle)
        cx, cy = -(cos * dx + sin * dy), -(-sin * dx + cos * dy)
        cx, cy = min(max(cx, -slack_x), slack_x), min(max(cy, -slack_y), slack_y)
        return -(cos * cx - sin * cy), -(sin * cx + cos * cy), angle
