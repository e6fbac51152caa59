"""Stereo: pair the two eyes' frames by capture time and put them side by side in one picture."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vergence.config import CameraSettings, Settings
from vergence.events import EventBus
from vergence.hub import Hub
from vergence.media.frame import Frame, i420_planes
from vergence.stream import Stream


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


class StereoStream(Stream):
    """The `stereo` stream: every output works on it as on a camera; its frames come from the pairer, not a source."""

    def __init__(
        self,
        left: Stream,
        right: Stream,
        settings: Settings,
        hub: Hub,
        loop: asyncio.AbstractEventLoop,
        events: EventBus,
    ) -> None:
        camera = CameraSettings(
            id=settings.stereo.id, size=(2 * left.camera.width, left.camera.height), fps=left.camera.fps
        )
        super().__init__(camera, settings, hub, loop, events)
        self.backend = "stereo"
        self.left, self.right = left, right
        self.pairer = StereoPairer(round(1e9 / left.camera.fps / 2), self._on_pair)
        self.pair_listeners: tuple[Callable[[Frame, Frame], None], ...] = ()  # e.g. depth; on a capture thread

    def _on_pair(self, left: Frame, right: Frame) -> None:
        started = time.perf_counter()
        frame = side_by_side(left, right)
        frame.timings_ms["capture"] = (time.perf_counter() - started) * 1000
        self._on_frame(frame)
        for listener in self.pair_listeners:
            listener(left, right)

    def start(self) -> None:
        self.state = "running"
        self.left.frame_listeners = (*self.left.frame_listeners, lambda frame: self.pairer.offer("left", frame))
        self.right.frame_listeners = (*self.right.frame_listeners, lambda frame: self.pairer.offer("right", frame))

    def stop(self) -> None:
        self.left.frame_listeners = ()
        self.right.frame_listeners = ()
        for channel in self.channels:
            channel.close()
        for plugin in self.processing.plugins:
            plugin.close()
        self.state = "stopped"

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "pairs": self.pairer.pairs, "unpaired": self.pairer.unpaired}
