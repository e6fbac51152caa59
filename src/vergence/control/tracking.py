"""Tracking: a camera's crop follows a target (`track` commands).

`Tracking` runs on the event loop. It starts a `TargetTracker` (pipeline/tracking.py) on the camera's frames and turns
each of its sightings into a pan and tilt that keep the target in the middle of the view:

- The tracker measures the target on the sensor, not in the picture, so the camera's own moves are not mistaken for the
  target's: the loop pursues a point and cannot swing (a loop that measured in the picture would see every move it made
  come back as an error, a frame or more late).
- The aim is where the target will be when the new crop shows: its place, plus its velocity times the time from the
  frame it was seen in to the first frame the new crop lands in (the source's `crop_delay_frames` after the last frame
  captured by now).
- Each sighting moves the view GAIN of the way to the aim; a still target inside DEADBAND does not move it at all.
- Zoom is never touched (a `zoom` command still works while tracking); a hand on pan or tilt (ptz, pan, tilt, move, a
  preset) stops tracking.
- Lost (not found for `[tracking] lost_after_s`): the view holds where it was, the state says `lost`, and the tracker
  looks for the target everywhere in the picture; found again, it follows again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from vergence.config import TrackingSettings
from vergence.errors import InvalidCommand
from vergence.events import Publish
from vergence.pipeline.depth import StereoCalibration
from vergence.pipeline.draw import Canvas
from vergence.pipeline.tracking import OtherEye, Sighting, Target, TargetTracker, View

if TYPE_CHECKING:
    from vergence.control.controller import CameraController, StereoRig
    from vergence.media.frame import Frame
    from vergence.pipeline.process import Processing

log = logging.getLogger(__name__)

GAIN = 0.5  # of the way to the aim each sighting moves the view: halves the shake a noisy sighting gives
DEADBAND = 0.01  # of the crop's width: a still target nearer the centre than this leaves the view where it is
STILL = 0.05  # of the crop's width a second: a target slower than this is still (a moving one is always followed)
EVENT_INTERVAL_S = 0.1  # tracking events while following: at most ten a second (every change of state at once)
GREEN, RED = (0, 255, 0), (255, 0, 0)


def next_centre(
    target: Target, centre: tuple[float, float], crop_width: float, age_ns: int, period_s: float, delay_frames: int
) -> tuple[float, float] | None:
    """Where to centre the view (sensor pixels) after a sighting of `target` in a frame `age_ns` old, the view centred at
    `centre` now; None: leave it.

    The aim is where the target will be in the first frame the new crop lands in: `delay_frames` after the last frame
    captured by now, and more, since moving GAIN of the way each frame trails a steadily moving target by
    (1 - GAIN) / GAIN frames. A dead band holds the view on a still target: only there, since on a moving one it would
    hold the view for a frame and then jump (the test camera's target moves half the band a frame).
    """
    age_s = max(0.0, age_ns / 1e9)
    lead_s = (math.floor(age_s / period_s) + delay_frames + (1 - GAIN) / GAIN) * period_s
    aim_x, aim_y = target.x + target.vx * lead_s, target.y + target.vy * lead_s
    error_x, error_y = aim_x - centre[0], aim_y - centre[1]
    still = math.hypot(target.vx, target.vy) < STILL * crop_width
    if still and math.hypot(error_x, error_y) < DEADBAND * crop_width:
        return None
    return centre[0] + GAIN * error_x, centre[1] + GAIN * error_y


class Tracking:
    """Tracking on one camera, or on a stereo rig (both eyes follow and turn in on the target): its tracker, its state
    (`idle`, `tracking`, `searching`, `lost`) and the view it drives.

    On the rig the tracker follows the target in the left eye and finds it in the right eye's frame of the same
    instant; the rig then centres each eye on it (`StereoRig.fixate`): the linked pan and tilt between the two, the
    vergence from their difference, so the target has no disparity between the two pictures. With a calibration, that
    disparity on the sensors gives the target's distance.
    """

    def __init__(
        self,
        camera: CameraController,
        settings: TrackingSettings,
        publish: Publish,
        rig: StereoRig | None = None,
        calibration: StereoCalibration | None = None,
        pair: Processing | None = None,
    ) -> None:
        self.camera = camera  # on a rig: the left eye, which the tracker follows
        self.rig = rig
        self._pair = pair  # on a rig: the side-by-side stream's processing, which shows the box in both eyes
        self.calibration = calibration
        self.settings = settings
        self._publish = publish
        self.state = "idle"
        self.reason = ""
        self._tracker: TargetTracker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._untaps: list[Callable[[], None]] = []
        self._last: Sighting | None = None
        self._right: tuple[float, float] | None = None  # the target on the right eye's sensor, last seen
        self._event_at = 0.0
        self.sightings = 0
        self.cost_ms = 0.0  # mean tracker cost per frame since the start

    @property
    def stream_id(self) -> str:
        return self.rig.stream_id if self.rig is not None else self.camera.stream.id

    @property
    def cameras(self) -> tuple[str, ...]:
        """The cameras this tracking moves (a hand on one of them ends it, as does another tracking of one)."""
        if self.rig is not None:
            return (self.rig.left.stream.id, self.rig.right.stream.id)
        return (self.camera.stream.id,)

    def start(
        self, point: tuple[float, float] | None = None, box: tuple[float, float, float, float] | None = None
    ) -> dict[str, Any]:
        """Follow what is at `point` (x, y, % of the frame; a box of `[tracking] point_box_pct` around it) or inside
        `box` (x1, y1, x2, y2, %) in the next frame."""
        stream = self.camera.stream
        width, height = stream.info.width, stream.info.height
        if box is None:
            if point is None:
                raise InvalidCommand("track needs a point (x, y) or a box (x1, y1, x2, y2), in % of the frame")
            half_x = self.settings.point_box_pct / 2 * height / width
            half_y = self.settings.point_box_pct / 2
            box = (point[0] - half_x, point[1] - half_y, point[0] + half_x, point[1] + half_y)
        x1, y1, x2, y2 = (min(max(value, 0.0), 100.0) / 100 for value in box)
        if (x2 - x1) * width < 8 or (y2 - y1) * height < 8:
            raise InvalidCommand(f"the box {box} is too small to track: at least 8 pixels each way")
        self._end_tracker()
        self._loop = asyncio.get_running_loop()
        other = None
        if self.rig is not None:
            right = self.rig.right.stream
            other = OtherEye(
                lambda: right.flip,
                lambda: (0, 0, right.geometry.width, right.geometry.height),
                int(0.5e9 / max(1.0, stream.info.fps)),
            )
        tracker = self._tracker = TargetTracker(
            self.stream_id,
            self.settings.method,
            (x1, y1, x2, y2),
            self._from_thread,
            lambda: stream.flip,
            lambda: (0, 0, stream.geometry.width, stream.geometry.height),
            self.settings.lost_after_s,
            other,
        )
        self._untaps = [stream.tap(tracker.offer)]
        if self.rig is not None:
            self._untaps.append(self.rig.right.stream.tap(tracker.offer_right))
        if self.settings.draw:
            stream.processing.marker = self._draw
            if self._pair is not None:
                self._pair.marker = self._draw_pair
        self.sightings, self.cost_ms, self._last, self._right = 0, 0.0, None, None
        self._set_state("tracking", "")
        log.info(
            "tracking on %s: box %s (%s)",
            stream.id,
            tuple(round(v * 100, 1) for v in (x1, y1, x2, y2)),
            self.settings.method,
        )
        return self.describe()

    def stop(self, reason: str = "stopped") -> dict[str, Any]:
        """Stop following; the view stays where it is."""
        if self._tracker is not None:
            self._end_tracker()
            self._set_state("idle", reason)
            if self.rig is not None:
                self.rig.followed()
            else:
                self.camera.followed()
        return self.describe()

    def _end_tracker(self) -> None:
        tracker, self._tracker = self._tracker, None
        for untap in self._untaps:
            untap()
        self._untaps = []
        self.camera.stream.processing.marker = None
        if self._pair is not None:
            self._pair.marker = None
        if tracker is not None:
            tracker.close()

    def _from_thread(self, sighting: Sighting) -> None:
        """The tracker's thread: hand the sighting to the event loop, tagged with the tracker that made it."""
        tracker, loop = self._tracker, self._loop
        if tracker is not None and loop is not None:
            loop.call_soon_threadsafe(self._on_sighting, tracker, sighting)

    def _on_sighting(self, tracker: TargetTracker, sighting: Sighting) -> None:
        if tracker is not self._tracker:
            return  # from a tracker stopped since
        self._last = sighting
        self.sightings += 1
        self.cost_ms += (sighting.cost_ms - self.cost_ms) / self.sightings
        if sighting.right is not None:
            self._right = sighting.right
        if sighting.state == "tracking" and sighting.target is not None:
            self._follow(sighting)
        if sighting.state != self.state:
            self._set_state(sighting.state, "")
        elif time.monotonic() - self._event_at >= EVENT_INTERVAL_S:
            self._announce()

    def _follow(self, sighting: Sighting) -> None:
        target = sighting.target
        assert target is not None
        camera = self.camera
        source = camera.stream.feed.source
        delay = source.crop_delay_frames if source is not None else 1
        crop = camera.crop()
        centre = (crop.x + crop.width / 2, crop.y + crop.height / 2)
        period_s = 1.0 / max(1.0, camera.stream.info.fps)
        age_ns = time.time_ns() - sighting.capture_ns
        moved = next_centre(target, centre, crop.width, age_ns, period_s, delay)
        rig = self.rig
        if rig is None:
            if moved is not None:
                camera.follow(*moved)
            return
        right_moved = None
        if sighting.right is not None:
            right_crop = rig.right.crop()
            right_centre = (right_crop.x + right_crop.width / 2, right_crop.y + right_crop.height / 2)
            seen = replace(target, x=sighting.right[0], y=sighting.right[1])
            right_moved = next_centre(seen, right_centre, right_crop.width, age_ns, period_s, delay)
            if moved is not None or right_moved is not None:
                rig.fixate(moved or centre, right_moved or right_centre)
        elif moved is not None:
            rig.fixate(moved, None)

    def _set_state(self, state: str, reason: str) -> None:
        if state != self.state:
            log.info("tracking on %s: %s%s", self.stream_id, state, f" ({reason})" if reason else "")
        self.state, self.reason = state, reason
        self._announce()

    def _announce(self) -> None:
        self._event_at = time.monotonic()
        self._publish({"type": "tracking", **self.describe()})

    def describe(self) -> dict[str, Any]:
        """The tracking state as every transport shows it: the target in % of the latest frame and on the sensor."""
        described: dict[str, Any] = {
            "stream": self.stream_id,
            "state": self.state,
            "method": self.settings.method,
        }
        if self.reason:
            described["reason"] = self.reason
        sighting = self._last
        if sighting is not None and sighting.target is not None and self.state != "idle":
            target = sighting.target
            view = sighting.view
            u, v = view.to_picture(target.x, target.y)
            described["target"] = {
                "x": round(100 * u / view.width, 2),
                "y": round(100 * v / view.height, 2),
                "width": round(100 * target.width / view.scale / view.width, 2),
                "height": round(100 * target.height / view.scale / view.height, 2),
                "sensor": [round(target.x, 1), round(target.y, 1)],
                "velocity_px_s": [round(target.vx, 1), round(target.vy, 1)],
            }
            if self.rig is not None and self._right is not None:
                disparity = target.x - self._right[0]
                described["target"]["right_sensor"] = [round(self._right[0], 1), round(self._right[1], 1)]
                described["target"]["disparity_px"] = round(disparity, 2)
                if self.calibration is not None:
                    distance = self.calibration.distance(disparity, self.rig.left.stream.geometry.width)
                    if distance is not None:
                        described["target"]["distance"] = round(distance, 4)
            described["score"] = round(sighting.score, 3)
            described["seq"] = sighting.seq
            described["capture_ns"] = sighting.capture_ns
            described["cost_ms"] = round(self.cost_ms, 3)
        return described

    def _draw(self, frame: Frame, canvas: Canvas) -> None:
        """Capture thread: the target's box on a frame, where the frame's own crop shows it."""
        sighting = self._last
        if sighting is None or sighting.target is None:
            return
        target = sighting.target
        stream = self.camera.stream
        view = View(
            frame.crop or (0, 0, stream.geometry.width, stream.geometry.height), frame.width, frame.height, stream.flip
        )
        self._box(canvas, view, target.x, target.y, 0, GREEN if sighting.state == "tracking" else RED)

    def _draw_pair(self, frame: Frame, canvas: Canvas) -> None:
        """Capture thread: the box in each eye's half of the stereo stream, where that eye's crop shows it."""
        sighting, right = self._last, self._right
        if sighting is None or sighting.target is None or self.rig is None or frame.eye_crops is None:
            return
        target = sighting.target
        colour = GREEN if sighting.state == "tracking" else RED
        eye_width = frame.width // 2
        for offset, eye, crop, x, y in (
            (0, self.rig.left, frame.eye_crops[0], target.x, target.y),
            (eye_width, self.rig.right, frame.eye_crops[1], *(right or (None, None))),
        ):
            if crop is None or x is None or y is None:
                continue
            self._box(canvas, View(crop, eye_width, frame.height, eye.stream.flip), x, y, offset, colour)

    def _box(self, canvas: Canvas, view: View, x: float, y: float, offset: int, colour: tuple[int, int, int]) -> None:
        sighting = self._last
        assert sighting is not None and sighting.target is not None
        u, v = view.to_picture(x, y)
        half_w = sighting.target.width / view.scale / 2
        half_h = sighting.target.height / view.scale / 2
        box = (round(u - half_w) + offset, round(v - half_h), round(u + half_w) + offset, round(v + half_h))
        canvas.rectangle(*box, colour, 2)
