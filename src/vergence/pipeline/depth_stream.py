"""The `depth` stream: a colourized disparity map of the stereo pair, computed on its own thread."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from typing import Any

from vergence.config import CameraSettings, Settings
from vergence.errors import ConfigError
from vergence.events import EventBus
from vergence.hub import Hub
from vergence.media.frame import Frame
from vergence.metrics import TimingMs
from vergence.pipeline.depth import DepthEstimator, StereoCalibration
from vergence.pipeline.stereo import StereoStream
from vergence.stream import Stream

log = logging.getLogger(__name__)


class DepthStream(Stream):
    """Every output works on it as on a camera. Matching a pair takes longer than a frame interval on a small machine,
    so it runs on its own thread from a one-pair mailbox: the newest pair wins, the eyes' capture never waits."""

    def __init__(
        self, stereo: StereoStream, settings: Settings, hub: Hub, loop: asyncio.AbstractEventLoop, events: EventBus
    ) -> None:
        eye = stereo.left.camera
        camera = CameraSettings(id=settings.stereo.depth_id, size=eye.size, fps=eye.fps)
        super().__init__(camera, settings, hub, loop, events)
        self.backend = "depth"
        self.stereo = stereo
        calibration = None
        if settings.stereo.calibration is not None:
            try:
                calibration = StereoCalibration.load(settings.stereo.calibration)
            except (OSError, ValueError) as err:
                raise ConfigError(f"stereo.calibration: {err}") from err
        try:
            self.estimator = DepthEstimator(
                eye.width,
                eye.height,
                scale=settings.stereo.depth_scale,
                num_disparities=settings.stereo.depth_disparities,
                calibration=calibration,
            )
        except ValueError as err:
            raise ConfigError(f"stereo depth: {err}") from err
        self.stage_ms["depth"] = TimingMs()
        self._pair: tuple[Frame, Frame] | None = None
        self._wake = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.skipped_pairs = 0

    def offer(self, left: Frame, right: Frame) -> None:
        """Capture thread: leave the newest pair for the depth thread (an unmatched older one is replaced)."""
        with self._wake:
            if self._pair is not None:
                self.skipped_pairs += 1
            self._pair = (left, right)
            self._wake.notify()

    def _run(self) -> None:
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
            frame.camera = self.id
            frame.timings_ms["capture"] = frame.timings_ms["depth"]
            self.stage_ms["depth"].add(frame.timings_ms["depth"])
            self._on_frame(frame)

    def start(self) -> None:
        self._stopped = False
        self.state = "running"
        self.stereo.pair_listeners = (*self.stereo.pair_listeners, self.offer)
        self._thread = threading.Thread(target=self._run, name=f"depth-{self.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stereo.pair_listeners = tuple(
            listener for listener in self.stereo.pair_listeners if listener != self.offer
        )
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for channel in self.channels:
            channel.close()
        self.state = "stopped"

    def stats(self) -> dict[str, Any]:
        median = self.estimator.last_median_disparity
        return {
            **super().stats(),
            "median_disparity_px": None if math.isnan(median) else round(median, 2),
            "skipped_pairs": self.skipped_pairs,
        }
