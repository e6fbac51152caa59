"""The per-camera stages between capture and the encoders: stabilize → plugins → overlay, each timed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vergence.media.frame import Frame
from vergence.metrics import TimingMs, WindowedMean
from vergence.pipeline.draw import Canvas
from vergence.pipeline.overlay import OverlaySettings, RoiBox, draw_overlays
from vergence.pipeline.plugins import Plugin, RoiRect, roi_rects
from vergence.pipeline.stabilize import Stabilizer

STAGES = ("stabilize", "plugins", "overlay")


class Processing:
    """What one camera does to its frames after the crop. Settings are replaced whole from the event loop (one reference
    swap each), so the capture thread always sees a consistent set without a lock."""

    def __init__(self, camera: str, stage_ms: dict[str, WindowedMean]) -> None:
        self.camera = camera
        self.ptz: Callable[[], dict[str, Any]] = dict  # the camera's PTZ state, for plugins (set by its controller)
        self.overlay = OverlaySettings()
        self.rois: tuple[RoiBox, ...] = ()
        self.plugins: tuple[Plugin, ...] = ()
        #: Draws the tracked target on a frame (set by the camera's tracking while it tracks; capture thread).
        self.marker: Callable[[Frame, Canvas], None] | None = None
        self.zoom = 1.0
        self.recording = False
        self._stabilize = False
        self._stabilizer: Stabilizer | None = None
        self._stage_ms = stage_ms
        for stage in STAGES:
            stage_ms.setdefault(stage, TimingMs())

    @property
    def stabilize(self) -> bool:
        return self._stabilize

    @stabilize.setter
    def stabilize(self, enabled: bool) -> None:
        self._stabilize = enabled
        self._stabilizer = None  # a toggle always starts from a clean trajectory

    def reset_stabilizer(self) -> None:
        """Forget the camera's trajectory (the view moved on purpose: a PTZ change is not shake)."""
        self._stabilizer = None

    def plugin_context(self, width: int, height: int) -> tuple[dict[str, RoiRect], dict[str, Any]]:
        """The ROIs in pixels of a width x height frame and the PTZ state, as plugins see them."""
        return roi_rects(self.rois, width, height), self.ptz()

    @property
    def active(self) -> bool:
        """Whether any stage would touch a frame (cheap: read on every frame)."""
        overlay = self.overlay
        return (
            self._stabilize
            or bool(self.plugins)
            or self.marker is not None
            or overlay.timestamp
            or overlay.crosshair
            or overlay.grid
            or overlay.zoom
            or bool(overlay.texts)
            or (overlay.rec and self.recording)
            or (overlay.rois and bool(self.rois))
        )

    def run(self, frame: Frame, shared: bool) -> Frame:
        """Return `frame` processed; when `shared` (someone else holds it), the result is a new Frame, `frame` untouched."""
        if frame.pix_fmt != "yuv420p" or not self.active:
            return frame
        image = frame.image
        owned = not shared
        if self._stabilize:
            started = time.perf_counter()
            stabilizer = self._stabilizer
            if stabilizer is None or (stabilizer.width, stabilizer.height) != (frame.width, frame.height):
                stabilizer = self._stabilizer = Stabilizer(frame.width, frame.height)
            image = stabilizer.process(image)  # a new image
            owned = True
            self._stage_ms["stabilize"].add((time.perf_counter() - started) * 1000)
        if not owned:
            image = image.copy()
        out = Frame(
            image, frame.pix_fmt, frame.width, frame.height, frame.seq, frame.pts, frame.capture_ns, frame.camera
        )
        out.timings_ms, out.limited_range, out.crop = frame.timings_ms, frame.limited_range, frame.crop
        out.eye_crops = frame.eye_crops
        plugins = self.plugins
        if plugins:
            started = time.perf_counter()
            for plugin in plugins:
                plugin.offer(out)  # inline plugins run now; the others get a copy on their branch
            self._stage_ms["plugins"].add((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        marker = self.marker
        draw_overlays(
            out.image,
            out.width,
            out.height,
            self.overlay,
            capture_ns=out.capture_ns,
            zoom=self.zoom,
            recording=self.recording,
            rois=self.rois,
            extra=_drawings(out, plugins, marker) if plugins or marker is not None else None,
        )
        self._stage_ms["overlay"].add((time.perf_counter() - started) * 1000)
        return out


def _drawings(
    frame: Frame, plugins: tuple[Plugin, ...], marker: Callable[[Frame, Canvas], None] | None
) -> Callable[[Canvas], None]:
    def draw(canvas: Canvas) -> None:
        for plugin in plugins:
            plugin.draw(canvas)
        if marker is not None:
            marker(frame, canvas)

    return draw
