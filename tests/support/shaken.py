"""A shaken scene and a motion meter, for the stabilizer's tests and `bench/stabilize.py`.

`shaken_sequence` is a window onto a textured scene twice the frame's size, moved each frame by a seeded random jitter
(translation and rotation, independent per frame: the white, high-frequency shake a stabilizer is for) plus an optional
steady pan. `MotionMeter` measures what a viewer sees: the phase-correlation shift between consecutive luma planes
(centre region), in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np

from vergence.media.frame import i420_planes

#: Frames left out of both residuals: the stabilizer's first frame is its reference and its smoother starts at rest.
WARMUP_FRAMES = 10


def textured_scene(width: int, height: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return Y, U, V planes (U, V at half size) of a smooth random texture of blobs and edges, width x height."""
    rng = np.random.default_rng(seed)
    luma = np.zeros((height, width), np.float32)
    # Octaves of smoothed noise: large soft blobs for the look, fine grain so every region has corners to track.
    for cell, weight in ((64, 90.0), (16, 50.0), (4, 30.0)):
        noise = rng.standard_normal((height // cell + 2, width // cell + 2)).astype(np.float32)
        luma += (
            weight
            * cv2.resize(noise, (width + 2 * cell, height + 2 * cell), interpolation=cv2.INTER_CUBIC)[
                cell : cell + height, cell : cell + width
            ]
        )
    for _ in range(width * height // 20_000):  # hard-edged rectangles: the corners a camera sees on real objects
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size_w, size_h = (int(s) for s in rng.integers(8, 60, 2))
        luma[y : y + size_h, x : x + size_w] += float(rng.uniform(-60, 60))
    luma = cv2.GaussianBlur(luma, (0, 0), 1.0) + 128.0
    chroma = []
    for _ in range(2):
        noise = rng.standard_normal((height // 64 + 2, width // 64 + 2)).astype(np.float32)
        chroma.append(128.0 + 60.0 * cv2.resize(noise, (width // 2, height // 2), interpolation=cv2.INTER_CUBIC))
    y_plane, u_plane, v_plane = (np.clip(p, 16, 240).astype(np.uint8) for p in (luma, *chroma))
    return y_plane, u_plane, v_plane


def shaken_sequence(
    frames: int,
    width: int = 1280,
    height: int = 720,
    *,
    jitter_px: float = 12.0,
    jitter_deg: float = 0.5,
    pan_px_per_frame: float = 0.0,
    seed: int = 0,
) -> Iterator[np.ndarray]:
    """Yield `frames` I420 images of a scene shaken by a seeded jitter (±`jitter_px`, ±`jitter_deg`), panning right."""
    scene_y, scene_u, scene_v = textured_scene(2 * width, 2 * height, seed)
    rng = np.random.default_rng(seed + 1)
    start_x = width - pan_px_per_frame * frames / 2.0  # the pan's middle frame sits on the scene's centre
    flags, border = cv2.INTER_LINEAR, cv2.BORDER_REFLECT_101
    for index in range(frames):
        jx, jy = rng.uniform(-jitter_px, jitter_px, 2)
        angle = math.radians(rng.uniform(-jitter_deg, jitter_deg))
        # Scene point s lands on frame point R(angle) (s - o) + c: the camera looks at o, turned by -angle.
        ox, oy = start_x + pan_px_per_frame * index + jx, height + jy
        cos, sin = math.cos(angle), math.sin(angle)
        rotate = np.array([[cos, -sin], [sin, cos]])
        luma_map = np.hstack([rotate, (np.array([(width - 1) / 2, (height - 1) / 2]) - rotate @ [ox, oy])[:, None]])
        chroma_map = luma_map.copy()
        chroma_map[:, 2] = (rotate @ np.array([0.5, 0.5]) + luma_map[:, 2] - 0.5) / 2.0
        image = np.empty((height * 3 // 2, width), np.uint8)
        y, u, v = i420_planes(image, width, height)
        cv2.warpAffine(scene_y, luma_map, (width, height), dst=y, flags=flags, borderMode=border)
        cv2.warpAffine(scene_u, chroma_map, (width // 2, height // 2), dst=u, flags=flags, borderMode=border)
        cv2.warpAffine(scene_v, chroma_map, (width // 2, height // 2), dst=v, flags=flags, borderMode=border)
        yield image


class MotionMeter:
    """Measure the frame-to-frame motion of a stream of width x height planes by phase correlation of their centres."""

    def __init__(self, width: int, height: int, *, skip: int = 0) -> None:
        self.width, self.height = width, height
        self.skip = skip
        # The middle half of each axis: clear of the borders the stabilizer's shift may replicate into view.
        self._box = (height // 4, height // 4 + height // 2, width // 4, width // 4 + width // 2)
        self._window = cv2.createHanningWindow((width // 2, height // 2), cv2.CV_32F)
        self._previous: np.ndarray | None = None
        self._count = 0
        self.shifts: list[tuple[float, float]] = []

    def add(self, plane: np.ndarray) -> tuple[float, float] | None:
        """Record `plane`; return its shift (dx, dy) in pixels from the previous one once past the skipped frames."""
        top, bottom, left, right = self._box
        region = plane[top:bottom, left:right].astype(np.float32)
        previous, self._previous = self._previous, region
        self._count += 1
        if previous is None or self._count <= self.skip:
            return None
        (dx, dy), _response = cv2.phaseCorrelate(previous, region, self._window)
        self.shifts.append((dx, dy))
        return dx, dy

    @property
    def mean_px(self) -> float:
        """Return the mean magnitude of the recorded shifts."""
        if not self.shifts:
            return 0.0
        return float(np.mean(np.hypot(*np.array(self.shifts).T)))
