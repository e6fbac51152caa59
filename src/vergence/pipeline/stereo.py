"""Stereo: pair the two eyes' frames by capture time and put them side by side in one picture."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from vergence.media.frame import Frame, i420_planes
from vergence.metrics import TimingMs
from vergence.sources.supervisor import FrameListener, StateListener


def side_by_side(left: Frame, right: Frame) -> Frame:
    """Return one I420 frame twice as wide: left eye | right eye, stamped with the older capture time."""
    w, h = left.width, left.height
    out = np.empty((h * 3 // 2, 2 * w), np.uint8)
    for target, a, b in zip(
        i420_planes(out, 2 * w, h), i420_planes(left.image, w, h), i420_planes(right.image, w, h), strict=True
    ):
        half = a.shape[1]
        target[:, :half] = a
        target[:, half:] = b
    frame = Frame(
        image=out,
        pix_fmt="yuv420p",
        width=2 * w,
        height=h,
        seq=0,
        pts=left.pts,
        capture_ns=min(left.capture_ns, right.capture_ns),
        limited_range=left.limited_range,
    )
    frame.timings_ms["pair_skew"] = abs(left.capture_ns - right.capture_ns) / 1e6
    frame.eye_crops = (left.crop, right.crop)
    return frame


class StereoPairer:
    """Match frames of two eyes whose capture times lie within `tolerance_ns`; each frame is used at most once.

    Called from both capture threads; a lock keeps the two latest frames consistent. A frame that finds no partner in time is
    dropped (counted), never paired with a stale one, so both halves of a stereo frame show the same instant.
    """

    def __init__(self, tolerance_ns: int, on_pair: Callable[[Frame, Frame], None]) -> None:
        self.tolerance_ns = tolerance_ns
        self._on_pair = on_pair
        self._lock = threading.Lock()
        self._waiting: dict[str, Frame | None] = {"left": None, "right": None}
        self.pairs = 0
        self.unpaired = 0

    def offer(self, eye: str, frame: Frame) -> None:
        """Offer a frame of `eye` ("left" or "right"); emits a pair when the other eye has a frame close enough in time."""
        other = "right" if eye == "left" else "left"
        with self._lock:
            partner = self._waiting[other]
            if partner is not None and abs(partner.capture_ns - frame.capture_ns) <= self.tolerance_ns:
                self._waiting[other] = None
                pair = (frame, partner) if eye == "left" else (partner, frame)
                self.pairs += 1
            else:
                if self._waiting[eye] is not None:
                    self.unpaired += 1
                self._waiting[eye] = frame
                return
        self._on_pair(*pair)


class FrameTap(Protocol):
    """A stream whose frames, as captured, can be tapped (stream.Stream.tap)."""

    def tap(self, listener: FrameListener) -> Callable[[], None]: ...


PairListener = Callable[[Frame, Frame], None]


class PairFeed:
    """The stereo stream's feed: the two eyes' frames paired by capture time, side by side. Every output works on the
    stereo stream as on a camera; its pairs can be tapped in turn (the depth feed)."""

    kind = "stereo"
    restarts = 0  # the eyes restart, the pairing does not
    last_error: str | None = None
    source: None = None  # no camera of its own: crops are cut from the pair, stills come from the eyes

    def __init__(self, left: FrameTap, right: FrameTap, fps: float) -> None:
        self.stages: dict[str, TimingMs] = {}
        self._eyes = (left, right)
        self.pairer = StereoPairer(round(1e9 / fps / 2), self._on_pair)
        self._on_frame: FrameListener = _ignore_frame
        self._on_state: StateListener = _ignore_state
        self._untaps: list[Callable[[], None]] = []
        self._pair_taps: tuple[PairListener, ...] = ()  # on a capture thread

    def tap_pairs(self, listener: PairListener) -> Callable[[], None]:
        """Call `listener` with every pair (left, right) as the eyes captured it; return what stops it."""
        self._pair_taps = (*self._pair_taps, listener)

        def untap() -> None:
            self._pair_taps = tuple(tapped for tapped in self._pair_taps if tapped is not listener)

        return untap

    def _on_pair(self, left: Frame, right: Frame) -> None:
        started = time.perf_counter()
        frame = side_by_side(left, right)
        frame.timings_ms["capture"] = (time.perf_counter() - started) * 1000
        self._on_frame(frame)
        for listener in self._pair_taps:
            listener(left, right)

    def start(self, on_frame: FrameListener, on_state: StateListener) -> None:
        self._on_frame, self._on_state = on_frame, on_state
        left, right = self._eyes
        self._untaps = [
            left.tap(lambda frame: self.pairer.offer("left", frame)),
            right.tap(lambda frame: self.pairer.offer("right", frame)),
        ]
        on_state("running", None, None)

    def stop(self) -> None:
        for untap in self._untaps:
            untap()
        self._untaps = []
        self._on_state("stopped", None, None)

    def stats(self) -> dict[str, Any]:
        return {"pairs": self.pairer.pairs, "unpaired": self.pairer.unpaired}


def _ignore_frame(frame: Frame) -> None:
    """Where pairs go before the feed is started."""


def _ignore_state(state: str, message: str | None, info: object) -> None:
    """Where state changes go before the feed is started."""
