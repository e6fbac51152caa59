"""Following a target through a camera's frames: a tracker on its own thread that says where the target is on the sensor.

The tracker sees each frame as captured (a stream tap: before stabilization, plugins and overlays) through a one-frame
mailbox, newest frame wins, so a slow moment costs the stream nothing. It works in sensor pixels: each frame says
which crop it shows (`Frame.crop`), so a view that moves between two frames (the tracker's own PTZ, a crop that lands
frames after it was asked for) does not look like the target moving. What it reports, a `Sighting` per frame, is the
target's centre and size on the sensor with its velocity, or that it was not found; the controller
(control/tracking.py) turns sightings into pan and tilt.

Two methods (`[tracking] method`), measured side by side in `vergence bench tracking` (docs/benchmarks.md):
- `template` (default): normalised cross-correlation of the target's first picture in a window around where it should
  be, on a half-size luma plane, with sub-pixel peaks; when the target is lost it is looked for in the whole picture,
  and taken back only on a strong match. The template is never refreshed: blending in each sighting (tried at 10 %)
  let the template slide off the target by a pixel at a time (1.4 px median error without, 12.7 px with).
- `mil`: OpenCV's TrackerMIL (online multiple-instance learning), the one model-free tracker in OpenCV's main modules.
Neither downloads anything: OpenCV's DNN trackers (DaSiamRPN, Nano, Vit) need model files and are not offered.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from vergence.media.frame import Frame

log = logging.getLogger(__name__)

METHODS = ("template", "mil")
WORK_WIDTH = 640  # pictures wider than this are tracked at half size (a 720p target is still tens of pixels wide)
# A normalised correlation below this is not the target. The test camera's target scores 0.95-0.99, half hidden about
# 0.4; its textured background, once the target left, up to 0.5: at 0.5 the tracker went on following the background.
FOUND_SCORE = 0.65
REFIND_SCORE = 0.8  # a lost target is taken back only on a match this strong, anywhere in the picture
SEARCH_MARGIN = 1.0  # the search window reaches this many target sizes beyond where the target should be
MIN_BOX_PX = 8  # the smallest target, in pixels of the tracked picture


@dataclass(frozen=True, slots=True)
class View:
    """How one frame's pixels map onto the sensor: its crop, its size and its mirroring."""

    crop: tuple[int, int, int, int]
    width: int
    height: int
    flip: tuple[bool, bool] = (False, False)

    @property
    def scale(self) -> float:
        """Sensor pixels per picture pixel (the same both ways: crops keep the output's aspect)."""
        return self.crop[2] / self.width

    def to_sensor(self, u: float, v: float) -> tuple[float, float]:
        x, y, w, h = self.crop
        if self.flip[0]:
            u = self.width - u
        if self.flip[1]:
            v = self.height - v
        return x + u * w / self.width, y + v * h / self.height

    def to_picture(self, x: float, y: float) -> tuple[float, float]:
        cx, cy, w, h = self.crop
        u, v = (x - cx) * self.width / w, (y - cy) * self.height / h
        if self.flip[0]:
            u = self.width - u
        if self.flip[1]:
            v = self.height - v
        return u, v


@dataclass(frozen=True, slots=True)
class Target:
    """Where the target is on the sensor: centre and size in sensor pixels, velocity in sensor pixels a second."""

    x: float
    y: float
    width: float
    height: float
    vx: float = 0.0
    vy: float = 0.0


@dataclass(frozen=True, slots=True)
class Sighting:
    """What the tracker made of one frame."""

    seq: int
    capture_ns: int
    state: str  # "tracking" (found), "searching" (missed lately, not yet lost) or "lost"
    target: Target | None  # the latest estimate (while searching: where it should be now)
    score: float
    view: View
    cost_ms: float
    #: The stereo pair's other eye: the target's centre on the right eye's sensor (None: not looked for, or not found).
    right: tuple[float, float] | None = None


class Method(Protocol):
    """One way of finding the target again in the next picture (pixels of the tracked, maybe halved, picture)."""

    def start(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> None: ...

    def find(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> tuple[tuple[float, float], float]:
        """Return the target's centre near `box` (where it should be, at the size it should have) and how sure."""
        ...

    def refind(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> tuple[tuple[float, float], float]:
        """Return the best match for the lost target anywhere in the picture, at the size `box` says."""
        ...


class TemplateMethod:
    """Normalised cross-correlation of the first picture of the target around its predicted place, sub-pixel peak."""

    def __init__(self) -> None:
        self._first: np.ndarray = np.zeros((1, 1), np.float32)  # the target's picture when tracking started
        self._template = self._first  # the same, at the size the target has now

    def start(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> None:
        self._first = self._template = _patch(gray, box).astype(np.float32)

    def _sized(self, box: tuple[float, float, float, float]) -> np.ndarray:
        """The template at the size the target has now (a zoom changes it), always scaled from the first picture."""
        width, height = max(MIN_BOX_PX, round(box[2] - box[0])), max(MIN_BOX_PX, round(box[3] - box[1]))
        template = self._template
        if abs(template.shape[1] - width) > 1 or abs(template.shape[0] - height) > 1:
            template = np.asarray(cv2.resize(self._first, (width, height), interpolation=cv2.INTER_AREA), np.float32)
            self._template = template
        return template

    def find(
        self, gray: np.ndarray, box: tuple[float, float, float, float], reach_x: float | None = None
    ) -> tuple[tuple[float, float], float]:
        """The target near `box`; `reach_x` (pixels) widens the search sideways (the other eye, disparity unknown)."""
        template = self._sized(box)
        th, tw = template.shape
        margin_x, margin_y = SEARCH_MARGIN * tw if reach_x is None else reach_x, SEARCH_MARGIN * th
        x0 = max(0, math.floor(box[0] - margin_x))
        y0 = max(0, math.floor(box[1] - margin_y))
        x1 = min(gray.shape[1], math.ceil(box[2] + margin_x))
        y1 = min(gray.shape[0], math.ceil(box[3] + margin_y))
        if x1 - x0 < tw or y1 - y0 < th:
            return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), 0.0
        (u, v), score = self._match(gray[y0:y1, x0:x1], template)
        return (x0 + u, y0 + v), score

    def refind(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> tuple[tuple[float, float], float]:
        template = self._sized(box)
        if gray.shape[0] < template.shape[0] or gray.shape[1] < template.shape[1]:
            return (0.0, 0.0), 0.0
        # At half size again: a whole-picture search costs about what 16 windows do.
        small = cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_AREA)
        small_template = cv2.resize(template, (max(4, template.shape[1] // 2), max(4, template.shape[0] // 2)))
        (u, v), score = self._match(small, small_template)
        return (u * 2, v * 2), score

    @staticmethod
    def _match(window: np.ndarray, template: np.ndarray) -> tuple[tuple[float, float], float]:
        """The template's best place in `window` (its centre, sub-pixel) and the correlation there."""
        scores = cv2.matchTemplate(window.astype(np.float32, copy=False), template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (px, py) = cv2.minMaxLoc(scores)
        dx = _parabola_peak(scores, px, py, axis=1)
        dy = _parabola_peak(scores, px, py, axis=0)
        return (px + dx + template.shape[1] / 2, py + dy + template.shape[0] / 2), float(best)


class MilMethod:
    """OpenCV's TrackerMIL: it keeps its own idea of the target box in picture pixels and says only found or not.

    It has no notion of the view moving, so a crop that moves between frames looks to it like the target jumping."""

    def __init__(self) -> None:
        self._tracker = cv2.TrackerMIL.create()

    def start(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> None:
        self._tracker = cv2.TrackerMIL.create()
        self._tracker.init(_bgr(gray), _int_box(box))

    def find(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> tuple[tuple[float, float], float]:
        ok, (x, y, w, h) = self._tracker.update(_bgr(gray))
        return (x + w / 2, y + h / 2), 1.0 if ok else 0.0

    def refind(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> tuple[tuple[float, float], float]:
        return (0.0, 0.0), 0.0  # MIL cannot look everywhere: once lost, it stays lost


def make_method(name: str) -> Method:
    if name == "template":
        return TemplateMethod()
    if name == "mil":
        return MilMethod()
    raise ValueError(f"tracking method must be one of {', '.join(METHODS)}, got {name!r}")


@dataclass(frozen=True, slots=True)
class OtherEye:
    """The right eye of a stereo pair, for a tracker on the left eye: how it mirrors, what a frame naming no crop shows,
    and how far apart in time two frames may be and still be one instant."""

    flip: Callable[[], tuple[bool, bool]]
    full_crop: Callable[[], tuple[int, int, int, int]]
    tolerance_ns: int


RIGHT_MISSES = 5  # frames the other eye may miss the target before it is looked for along the whole row again


class TargetTracker:
    """Tracks one target on one camera's frames, on its own thread, and reports a `Sighting` for every frame it looks at.

    `start` is where the target is in the next frame, as fractions of the picture (x1, y1, x2, y2). `report` is called on
    the tracker's thread (hand it to the event loop). `flip` says how the camera mirrors now; `full_crop` what a frame
    that names no crop shows (the whole sensor).

    On a stereo pair (`right`: the other eye; its frames come through `offer_right`) the tracker follows the target in
    the left eye and finds it in the right eye's frame of the same instant, first along the whole row, then where the
    last disparity says; each sighting then carries the target's place on the right eye's sensor too.
    """

    def __init__(
        self,
        camera: str,
        method: str,
        start: tuple[float, float, float, float],
        report: Callable[[Sighting], None],
        flip: Callable[[], tuple[bool, bool]],
        full_crop: Callable[[], tuple[int, int, int, int]],
        lost_after_s: float,
        right: OtherEye | None = None,
    ) -> None:
        self.camera = camera
        self.method_name = method
        self._method = make_method(method)
        self._start_box: tuple[float, float, float, float] | None = start
        self._report = report
        self._flip = flip
        self._full_crop = full_crop
        self._lost_after_ns = int(lost_after_s * 1e9)
        self._target: Target | None = None
        self._last_ns = 0  # capture time of the last frame the target was found in
        self._state = "tracking"
        self._mailbox: Frame | None = None
        self._right = right
        self._right_frames: deque[Frame] = deque(maxlen=4)
        self._right_method = TemplateMethod()  # the left eye's first picture of the target, looked for in the right's
        self._disparity: tuple[float, float] | None = None  # left minus right, sensor pixels, smoothed
        self._right_misses = 0
        self._seen = (0.0, 0.0)  # where the target was found in the last frame (sensor pixels), before filtering
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"tracker-{camera}", daemon=True)
        self._thread.start()

    def offer(self, frame: Frame) -> None:
        """Capture thread (a stream tap): leave the frame for the tracker; an unread older one is dropped."""
        if frame.pix_fmt != "yuv420p":
            return
        with self._wake:
            self._mailbox = frame  # sources never write into a frame they handed out: no copy needed
            self._wake.notify()

    def offer_right(self, frame: Frame) -> None:
        """The right eye's capture thread (a stream tap): keep its latest frames for the pair's instants."""
        if frame.pix_fmt != "yuv420p":
            return
        with self._wake:
            self._right_frames.append(frame)
            self._wake.notify()

    def _partner(self, frame: Frame) -> Frame | None:
        """The right eye's frame of `frame`'s instant (under the lock), or None."""
        assert self._right is not None
        for right in self._right_frames:
            if abs(right.capture_ns - frame.capture_ns) <= self._right.tolerance_ns:
                return right
        return None

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._mailbox is None and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                frame, self._mailbox = self._mailbox, None
                assert frame is not None
                right = None
                if self._right is not None:  # the other eye's frame of this instant may be a moment behind
                    deadline = time.monotonic() + self._right.tolerance_ns / 1e9
                    while (right := self._partner(frame)) is None and not self._closed:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._wake.wait(remaining)
            try:
                sighting = self.look(frame, right)
            except Exception:  # a tracker bug must not end the thread silently: report the target lost
                log.exception("tracker on %s failed", self.camera)
                sighting = Sighting(frame.seq, frame.capture_ns, "lost", self._target, 0.0, self._view(frame), 0.0)
                self._state = "lost"
            self._report(sighting)

    def _view(self, frame: Frame) -> View:
        return View(frame.crop or self._full_crop(), frame.width, frame.height, self._flip())

    def look(self, frame: Frame, right: Frame | None = None) -> Sighting:
        """Find the target in `frame`, and in `right` (the other eye's frame of the same instant) when given (the
        tracker's thread; tests call it directly)."""
        started = time.perf_counter()
        view = self._view(frame)
        factor = 2 if frame.width > WORK_WIDTH else 1
        luma = frame.gray()
        gray = cv2.resize(luma, (frame.width // factor, frame.height // factor), interpolation=cv2.INTER_AREA)
        work = View(view.crop, gray.shape[1], gray.shape[0], view.flip)
        score = 0.0
        if self._start_box is not None:
            x1, y1, x2, y2 = self._start_box
            self._start_box = None
            box = (x1 * work.width, y1 * work.height, x2 * work.width, y2 * work.height)
            self._method.start(gray, box)
            self._right_method.start(gray, box)
            self._disparity, self._right_misses = None, 0
            cx, cy = work.to_sensor((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            self._seen = (cx, cy)
            self._target = Target(cx, cy, (box[2] - box[0]) * work.scale, (box[3] - box[1]) * work.scale)
            self._last_ns, self._state, score = frame.capture_ns, "tracking", 1.0
        elif self._target is not None:
            score = self._follow(gray, work, frame.capture_ns)
        seen_right = None
        if right is not None and self._right is not None and self._state == "tracking":
            seen_right = self._find_right(right, factor)
        cost_ms = (time.perf_counter() - started) * 1000
        return Sighting(frame.seq, frame.capture_ns, self._state, self._target, score, view, cost_ms, seen_right)

    def _find_right(self, frame: Frame, factor: int) -> tuple[float, float] | None:
        """The target on the right eye's sensor in its frame of the same instant (None: not found there)."""
        eye, target = self._right, self._target
        assert eye is not None and target is not None
        gray = cv2.resize(frame.gray(), (frame.width // factor, frame.height // factor), interpolation=cv2.INTER_AREA)
        work = View(frame.crop or eye.full_crop(), gray.shape[1], gray.shape[0], eye.flip())
        if self._disparity is None:  # not found yet: anywhere along the target's row
            box = _box_around(work, target.x, target.y, target.width, target.height)
            (u, v), score = self._right_method.find(gray, box, reach_x=float(gray.shape[1]))
        else:
            dx, dy = self._disparity
            box = _box_around(work, target.x - dx, target.y - dy, target.width, target.height)
            (u, v), score = self._right_method.find(gray, box)
        if score < FOUND_SCORE:
            self._right_misses += 1
            if self._right_misses >= RIGHT_MISSES:
                self._disparity = None
            return None
        self._right_misses = 0
        x, y = work.to_sensor(u, v)
        # Against the left eye's own match of this instant, not its filtered estimate (which trails while it settles).
        measured = (self._seen[0] - x, self._seen[1] - y)
        old = self._disparity
        self._disparity = measured if old is None else (0.5 * (old[0] + measured[0]), 0.5 * (old[1] + measured[1]))
        return target.x - self._disparity[0], target.y - self._disparity[1]

    def _follow(self, gray: np.ndarray, work: View, capture_ns: int) -> float:
        target = self._target
        assert target is not None
        dt = max(0.0, (capture_ns - self._last_ns) / 1e9)
        if self._state == "lost":
            box = _box_around(work, target.x, target.y, target.width, target.height)
            (u, v), score = self._method.refind(gray, box)
            if score >= REFIND_SCORE:
                x, y = work.to_sensor(u, v)
                self._target = Target(x, y, target.width, target.height)
                self._last_ns, self._state = capture_ns, "tracking"
            return score
        # Where it should be now, from where it was and how fast it went.
        px, py = target.x + target.vx * dt, target.y + target.vy * dt
        box = _box_around(work, px, py, target.width, target.height)
        (u, v), score = self._method.find(gray, box)
        if score < FOUND_SCORE:
            if capture_ns - self._last_ns >= self._lost_after_ns:
                self._state = "lost"
                self._target = Target(target.x, target.y, target.width, target.height)  # held where last seen
            else:
                self._state = "searching"
            return score
        x, y = work.to_sensor(u, v)
        self._seen = (x, y)
        # An alpha-beta filter: the measured place, and a velocity that follows the residuals smoothly.
        alpha, beta = 0.85, 0.3
        rx, ry = x - px, y - py
        vx = target.vx + (beta * rx / dt if dt > 0 else 0.0)
        vy = target.vy + (beta * ry / dt if dt > 0 else 0.0)
        self._target = Target(px + alpha * rx, py + alpha * ry, target.width, target.height, vx, vy)
        self._last_ns, self._state = capture_ns, "tracking"
        return score


def _box_around(view: View, x: float, y: float, width: float, height: float) -> tuple[float, float, float, float]:
    """The box (picture pixels of `view`) of a target centred at sensor (x, y) of the given sensor size."""
    u, v = view.to_picture(x, y)
    half_w, half_h = width / view.scale / 2, height / view.scale / 2
    return (u - half_w, v - half_h, u + half_w, v + half_h)


def _patch(gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The picture inside `box`, at least MIN_BOX_PX each way and inside the picture (edges repeated past it).

    Coordinates here count from the picture's edge (pixel i spans i … i + 1); getRectSubPix counts from pixel centres."""
    width, height = max(MIN_BOX_PX, round(box[2] - box[0])), max(MIN_BOX_PX, round(box[3] - box[1]))
    centre = ((box[0] + box[2]) / 2 - 0.5, (box[1] + box[3]) / 2 - 0.5)
    return cv2.getRectSubPix(gray, (width, height), centre)


def _parabola_peak(scores: np.ndarray, px: int, py: int, axis: int) -> float:
    """The sub-pixel offset of a correlation peak along one axis, from the parabola through it and its neighbours."""
    if axis == 1:
        if not 0 < px < scores.shape[1] - 1:
            return 0.0
        left, centre, right = scores[py, px - 1], scores[py, px], scores[py, px + 1]
    else:
        if not 0 < py < scores.shape[0] - 1:
            return 0.0
        left, centre, right = scores[py - 1, px], scores[py, px], scores[py + 1, px]
    denominator = left - 2 * centre + right
    if denominator >= 0:
        return 0.0
    return float(0.5 * (left - right) / denominator)


def _bgr(gray: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def _int_box(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    return (round(box[0]), round(box[1]), max(1, round(box[2] - box[0])), max(1, round(box[3] - box[1])))
