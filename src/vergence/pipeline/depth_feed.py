"""The depth stream's feed: a colourized disparity map of each stereo pair, computed on its own thread."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from vergence.media.frame import Frame
from vergence.metrics import TimingMs
from vergence.pipeline.depth import DepthEstimator
from vergence.pipeline.stereo import PairFeed
from vergence.sources.supervisor import FrameListener, StateListener

log = logging.getLogger(__name__)


class DepthFeed:
    """Matching a pair takes longer than a frame interval on a small machine, so it runs on its own thread from a
    one-pair mailbox: the newest pair wins, the eyes' capture never waits."""

    kind = "depth"
    restarts = 0  # nothing to restart: it computes while the pairs come
    last_error: str | None = None
    source: None = None  # no camera of its own: no sensor crop, flip or still

    def __init__(self, name: str, pairs: PairFeed, estimator: DepthEstimator) -> None:
        self.name = name
        self.estimator = estimator
        self.stages = {"depth": TimingMs()}
        self._pairs = pairs
        self._pair: tuple[Frame, Frame] | None = None
        self._wake = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._untaps: list[Callable[[], None]] = []
        self._on_state: StateListener | None = None
        self.skipped_pairs = 0

    def offer(self, left: Frame, right: Frame) -> None:
        """Capture thread: leave the newest pair for the depth thread (an unmatched older one is replaced)."""
        with self._wake:
            if self._pair is not None:
                self.skipped_pairs += 1
            self._pair = (left, right)
            self._wake.notify()

    def _run(self, on_frame: FrameListener) -> None:
        while True:
            with self._wake:
                while self._pair is None and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                pair, self._pair = self._pair, None
            assert pair is not None
            try:
                frame = self.estimator.process(*pair)
            except Exception:  # a bad pair must not end the depth stream
                log.exception("depth of a stereo pair failed")
                continue
            frame.camera = self.name
            frame.timings_ms["capture"] = frame.timings_ms["depth"]
            self.stages["depth"].add(frame.timings_ms["depth"])
            on_frame(frame)

    def start(self, on_frame: FrameListener, on_state: StateListener) -> None:
        self._stopped = False
        self._thread = threading.Thread(target=self._run, args=(on_frame,), name=f"depth-{self.name}", daemon=True)
        self._thread.start()
        self._untaps = [self._pairs.tap_pairs(self.offer)]
        self._on_state = on_state
        on_state("running", None, None)

    def stop(self) -> None:
        for untap in self._untaps:
            untap()
        self._untaps = []
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._on_state is not None:
            self._on_state("stopped", None, None)

    def stats(self) -> dict[str, Any]:
        median = self.estimator.last_median_disparity
        return {
            "median_disparity_px": None if math.isnan(median) else round(median, 2),
            "skipped_pairs": self.skipped_pairs,
        }
