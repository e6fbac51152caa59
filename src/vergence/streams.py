"""The streams of the running server by id: the cameras in their configured order, then the derived streams (stereo,
depth), each one `Stream` composed with its feed."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from vergence.config import CameraSettings, Settings
from vergence.errors import ConfigError
from vergence.events import EventBus
from vergence.hub import Hub
from vergence.pipeline.depth import DepthEstimator, StereoCalibration
from vergence.pipeline.depth_feed import DepthFeed
from vergence.pipeline.stereo import PairFeed
from vergence.registry import Registry
from vergence.sources.supervisor import SourceSupervisor
from vergence.stream import Stream

log = logging.getLogger(__name__)


class Streams(Registry[Stream]):
    """Streams by id: the cameras in their configured order, then the derived streams."""

    noun = "stream"
    empty = "no streams"


def build_streams(settings: Settings, hub: Hub, loop: asyncio.AbstractEventLoop, events: EventBus) -> Streams:
    """Every configured stream, not yet started: one per camera, then the stereo pair and its depth when enabled."""
    streams = Streams()

    def add(camera: CameraSettings, feed: SourceSupervisor | PairFeed | DepthFeed) -> None:
        streams[camera.id] = Stream(camera, settings, hub, loop, events, feed)

    for camera in settings.cameras:
        add(camera, SourceSupervisor.for_camera(camera))
        log.info("stream %s: %s %dx%d@%g", camera.id, camera.source, camera.width, camera.height, camera.fps)
    stereo = settings.stereo
    if stereo.enabled:
        left, right = streams[stereo.left], streams[stereo.right]
        eye = left.camera
        pairs = PairFeed(left, right, eye.fps)
        add(CameraSettings(id=stereo.id, size=(2 * eye.width, eye.height), fps=eye.fps), pairs)
        if stereo.depth:
            add(
                CameraSettings(id=stereo.depth_id, size=eye.size, fps=eye.fps),
                DepthFeed(stereo.depth_id, pairs, depth_estimator(settings, eye)),
            )
    return streams


def depth_estimator(settings: Settings, eye: CameraSettings) -> DepthEstimator:
    """The depth matcher for a pair of `eye`-sized pictures, with the configured calibration (ConfigError if bad)."""
    stereo = settings.stereo
    calibration = stereo_calibration(settings)
    try:
        return DepthEstimator(
            eye.width,
            eye.height,
            scale=stereo.depth_scale,
            num_disparities=stereo.depth_disparities,
            calibration=calibration,
        )
    except ValueError as err:
        raise ConfigError(f"stereo depth: {err}") from err


def stereo_calibration(settings: Settings) -> StereoCalibration | None:
    """The configured stereo calibration (None: none given); ConfigError when it cannot be read."""
    path = settings.stereo.calibration
    if path is None:
        return None
    try:
        return StereoCalibration.load(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"stereo.calibration: {err}") from err


def eye_calibrations(settings: Settings) -> dict[str, tuple[Any, Any, tuple[int, int]]]:
    """Each stereo eye's intrinsics from `[stereo] calibration` (left: K1, D1; right: K2, D2) and the size of the
    calibration's pictures; empty without one."""
    calibration = stereo_calibration(settings) if settings.stereo.enabled else None
    if calibration is None:
        return {}
    return {
        settings.stereo.left: (calibration.left_matrix, calibration.left_dist, calibration.image_size),
        settings.stereo.right: (calibration.right_matrix, calibration.right_dist, calibration.image_size),
    }
