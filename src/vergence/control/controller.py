"""Camera control: PTZ state per camera, applied to the stream, persisted, and published on the event bus."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vergence import ptz
from vergence.config import TrackingSettings
from vergence.control.commands import MAX_MOVE_S
from vergence.control.processing import ProcessingController
from vergence.control.state import StateStore
from vergence.control.tracking import Tracking
from vergence.errors import CommandError, InvalidCommand, NotFound
from vergence.events import EventBus, Publish
from vergence.pipeline.depth import StereoCalibration
from vergence.stream import Stream

log = logging.getLogger(__name__)


PRESET_NAME = re.compile(r"^[A-Za-z0-9_. -]{1,40}$")
MAX_PRESETS = 64
MOVE_EVENT_INTERVAL_S = 0.1  # during a velocity move, controllers hear the position at most ten times a second


class Every:
    """Says yes at most once every `interval_s` (events during a move: enough to follow, not one a frame)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last = float("-inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return False
        self._last = now
        return True


class CameraController:
    """The PTZ of one camera. Runs on the event loop; the crop reaches the capture thread as one reference swap."""

    def __init__(self, stream: Stream, saved: dict[str, Any], on_change: Callable[[], None], publish: Publish) -> None:
        self.stream = stream
        self.max_zoom = stream.camera.max_zoom
        self._on_change = on_change
        self._publish = publish
        saved_ptz = saved.get("ptz", {})
        try:
            self.state = ptz.PtzState(
                pan=float(saved_ptz.get("pan", 0.5)),
                tilt=float(saved_ptz.get("tilt", 0.5)),
                zoom=float(saved_ptz.get("zoom", 1.0)),
            )
        except (TypeError, ValueError):
            log.warning("ignoring saved PTZ state of %s: %r", stream.id, saved_ptz)
            self.state = ptz.PtzState(pan=0.5, tilt=0.5, zoom=1.0)
        self.presets: dict[str, ptz.PtzState] = {}
        for name, values in saved.get("presets", {}).items():
            try:
                self.presets[str(name)] = ptz.PtzState(
                    float(values["pan"]), float(values["tilt"]), float(values["zoom"])
                )
            except (KeyError, TypeError, ValueError):
                log.warning("ignoring saved preset %r of %s", name, stream.id)
        flip = saved.get("flip", {})
        if flip.get("horizontal") or flip.get("vertical"):
            stream.flip = (bool(flip.get("horizontal")), bool(flip.get("vertical")))
        stream.paused = bool(saved.get("paused", False))
        self.eye_offset: tuple[int, int] = (0, 0)  # stereo calibration, sensor pixels
        self.eye_disparity = 0.0  # this eye's signed share of the rig's vergence (fraction of the crop width)
        self._velocity = ptz.Velocity()
        self._move_until = 0.0
        self._mover: asyncio.Task[None] | None = None
        self._follow_events = Every(MOVE_EVENT_INTERVAL_S)
        stream.on_geometry = self._reapply
        stream.processing.ptz = self.describe  # what plugins see as ctx.ptz
        self._reapply()

    @property
    def output_size(self) -> tuple[int, int]:
        return (self.stream.info.width, self.stream.info.height)

    def crop(self) -> ptz.Rect:
        """The crop the current state gives, with this camera's stereo eye offset and vergence share if it is an eye."""
        geometry = self.stream.geometry
        if self.eye_offset == (0, 0) and self.eye_disparity == 0.0:
            return ptz.crop_for(self.state, geometry, self.output_size, self.max_zoom)
        return ptz.eye_crop(self.state, self.eye_offset, self.eye_disparity, geometry, self.output_size, self.max_zoom)

    def _reapply(self) -> None:
        """Apply the current state to the sensor (at start, and whenever the source (re)opens)."""
        self.state = ptz.clamp(self.state, self.stream.geometry, self.output_size, self.max_zoom)
        self.stream.set_crop(self.crop())
        processing = self.stream.processing
        processing.zoom = self.state.zoom
        processing.reset_stabilizer()  # a move on purpose is not shake: the trajectory starts again

    def describe(self) -> dict[str, Any]:
        """The camera's PTZ as every transport shows it."""
        geometry = self.stream.geometry
        crop = self.crop()
        return {
            "stream": self.stream.id,
            "pan": round(self.state.pan, 6),
            "tilt": round(self.state.tilt, 6),
            "zoom": round(self.state.zoom, 6),
            "max_zoom": self.max_zoom,
            "crop": list(crop.as_tuple()),
            "sensor": [geometry.width, geometry.height],
            "flip": {"horizontal": self.stream.flip[0], "vertical": self.stream.flip[1]},
            "paused": self.stream.paused,
        }

    def set_ptz(self, pan: float | None = None, tilt: float | None = None, zoom: float | None = None) -> dict[str, Any]:
        """Move to an absolute position (each of pan, tilt in 0…1, zoom in 1…max_zoom; None keeps the current one)."""
        for name, value, low, high in (
            ("pan", pan, 0.0, 1.0),
            ("tilt", tilt, 0.0, 1.0),
            ("zoom", zoom, 1.0, self.max_zoom),
        ):
            if value is not None and not (low <= value <= high):
                raise InvalidCommand(f"{name} = {value:g} is outside {low:g} … {high:g} for {self.stream.id}")
        wanted = ptz.PtzState(
            pan=self.state.pan if pan is None else pan,
            tilt=self.state.tilt if tilt is None else tilt,
            zoom=self.state.zoom if zoom is None else zoom,
        )
        described = self._apply_state(ptz.clamp(wanted, self.stream.geometry, self.output_size, self.max_zoom))
        self._on_change()
        return described

    def set_max_zoom(self, max_zoom: float) -> dict[str, Any]:
        """Set the greatest zoom from now on (until a restart) and go back to the whole field of view, as PiStreamer's
        `max_zoom` does."""
        self.max_zoom = max_zoom
        self._velocity = ptz.Velocity()  # a zoom under way ends here (its task sees no velocity and stops)
        return self.set_ptz(zoom=1.0)

    def _apply_state(self, state: ptz.PtzState) -> dict[str, Any]:
        self.state = state
        self._reapply()
        described = self.describe()
        self._publish({"type": "ptz", **described})
        return described

    def move(
        self, pan_per_s: float = 0.0, tilt_per_s: float = 0.0, zoom_per_s: float = 0.0, duration_s: float = 2.0
    ) -> dict[str, Any]:
        """Start (or change, or stop with all zero) a velocity move; it stops by itself after `duration_s`.

        Pan and tilt rates are in crop widths/heights per second, zoom a log rate (zoom *= e^(rate·s)). The time limit makes
        a controller that vanishes mid-move harmless: a joystick resends its velocity while it is held.
        """
        for name, value in (("pan_per_s", pan_per_s), ("tilt_per_s", tilt_per_s), ("zoom_per_s", zoom_per_s)):
            if not math.isfinite(value) or abs(value) > 10:
                raise InvalidCommand(f"{name} = {value} is outside -10 … 10")
        if not (0 < duration_s <= MAX_MOVE_S):
            raise InvalidCommand(f"duration_s = {duration_s} is outside 0 … {MAX_MOVE_S:g}")
        self._velocity = ptz.Velocity(pan_per_s, tilt_per_s, zoom_per_s)
        self._move_until = time.monotonic() + duration_s
        if self._velocity == ptz.Velocity():
            self._stop_moving()
        elif self._mover is None or self._mover.done():
            self._mover = asyncio.get_running_loop().create_task(self._run_move())
        return {**self.describe(), "moving": self._velocity != ptz.Velocity()}

    async def _run_move(self) -> None:
        """Integrate the velocity once per frame interval until it is zero or its time is up."""
        last = time.monotonic()
        last_event = 0.0
        interval_s = 1.0 / max(1.0, self.stream.info.fps)
        while self._velocity != ptz.Velocity() and time.monotonic() < self._move_until:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            geometry = self.stream.geometry
            self.state = ptz.integrate(
                self.state, self._velocity, now - last, geometry, self.output_size, self.max_zoom
            )
            last = now
            self._reapply()
            if now - last_event >= MOVE_EVENT_INTERVAL_S:
                last_event = now
                self._publish({"type": "ptz", **self.describe(), "moving": True})
        self._stop_moving()

    def _stop_moving(self) -> None:
        self._velocity = ptz.Velocity()
        self._publish({"type": "ptz", **self.describe(), "moving": False})
        self._on_change()

    def follow(self, x: float, y: float) -> None:
        """Centre the view on the sensor point (x, y), zoom kept: the tracker's moves, one a frame. Controllers hear the
        position at most ten times a second; it is saved when tracking ends (`followed`)."""
        self.state = ptz.look_at(self.state, x, y, self.stream.geometry, self.output_size, self.max_zoom)
        self._reapply()
        if self._follow_events.due():
            self._publish({"type": "ptz", **self.describe(), "moving": True})

    def followed(self) -> None:
        """Tracking ended: say where the view stopped, and save it."""
        self._publish({"type": "ptz", **self.describe(), "moving": False})
        self._on_change()

    def save_preset(self, name: str, state: ptz.PtzState | None = None) -> dict[str, Any]:
        """Keep the current view (or `state`) under `name`."""
        if not PRESET_NAME.match(name):
            raise InvalidCommand(f"preset name {name!r}: 1-40 of letters, digits, space, _ . -")
        if name not in self.presets and len(self.presets) >= MAX_PRESETS:
            raise CommandError(f"{self.stream.id} already has {MAX_PRESETS} presets")
        self.presets[name] = state or self.state
        self._publish({"type": "presets", "stream": self.stream.id, "presets": self.describe_presets()})
        self._on_change()
        return self.describe_presets()

    def recall_preset(self, name: str) -> dict[str, Any]:
        """Go to a saved view; `home` without a preset of that name is the whole field of view."""
        state = self.presets.get(name) or (ptz.PtzState.home() if name == "home" else None)
        if state is None:
            raise NotFound(f"{self.stream.id} has no preset {name!r}")
        described = self._apply_state(ptz.clamp(state, self.stream.geometry, self.output_size, self.max_zoom))
        self._on_change()
        return described

    def delete_preset(self, name: str) -> dict[str, Any]:
        if self.presets.pop(name, None) is None:
            raise NotFound(f"{self.stream.id} has no preset {name!r}")
        self._publish({"type": "presets", "stream": self.stream.id, "presets": self.describe_presets()})
        self._on_change()
        return self.describe_presets()

    def describe_presets(self) -> dict[str, Any]:
        return {name: asdict(state) for name, state in sorted(self.presets.items())}

    def set_flip(self, horizontal: bool, vertical: bool) -> dict[str, Any]:
        """Mirror this camera only."""
        try:
            self.stream.set_flip(horizontal, vertical)
        except NotImplementedError as err:
            raise CommandError(str(err)) from None
        return self._camera_changed()

    def set_paused(self, paused: bool) -> dict[str, Any]:
        """Hold this camera's picture (the others go on)."""
        self.stream.paused = paused
        return self._camera_changed()

    def _camera_changed(self) -> dict[str, Any]:
        described = self.describe()
        self._publish({"type": "camera", **described})
        self._on_change()
        return described

    def saved(self) -> dict[str, Any]:
        horizontal, vertical = self.stream.flip
        return {
            "ptz": asdict(self.state),
            "presets": self.describe_presets(),
            "flip": {"horizontal": horizontal, "vertical": vertical},
            "paused": self.stream.paused,
        }


class StereoRig:
    """Both eyes moved as one: a linked PTZ, each eye's calibration offset, and vergence (the eyes' crops moved
    horizontally in opposite directions; positive converges)."""

    def __init__(
        self,
        left: CameraController,
        right: CameraController,
        offsets: tuple[tuple[int, int], tuple[int, int]],
        saved: dict[str, Any],
        on_change: Callable[[], None],
        publish: Publish,
        stream_id: str = "stereo",
    ) -> None:
        self.stream_id = stream_id  # the side-by-side stream the rig's eyes make
        self.left, self.right = left, right
        left.eye_offset, right.eye_offset = offsets
        self._on_change = on_change
        self._publish = publish
        self.vergence = 0.0
        self._follow_events = Every(MOVE_EVENT_INTERVAL_S)
        self.set_vergence(float(saved.get("vergence", 0.0)), announce=False)

    def set_vergence(self, vergence: float, announce: bool = True) -> None:
        if not (-0.5 <= vergence <= 0.5):
            raise InvalidCommand(f"vergence = {vergence} is outside -0.5 … 0.5")
        self.vergence = vergence
        self.left.eye_disparity, self.right.eye_disparity = vergence, -vergence
        for eye in (self.left, self.right):
            eye._reapply()
        if announce:
            self._publish({"type": "stereo", **self.describe()})

    def move(self, pan: float | None, tilt: float | None, zoom: float | None, vergence: float | None) -> dict[str, Any]:
        """Move both eyes to one linked pan/tilt/zoom (the left eye's state leads) and/or change vergence."""
        if vergence is not None:
            self.set_vergence(vergence, announce=False)
        # A vergence change alone leaves the eyes where they are, even one moved on its own.
        if (pan, tilt, zoom) != (None, None, None):
            lead = self.left.set_ptz(pan, tilt, zoom)
            self.right.set_ptz(lead["pan"], lead["tilt"], lead["zoom"])
        described = self.describe()
        self._publish({"type": "stereo", **described})
        self._on_change()
        return described

    def fixate(self, left: tuple[float, float], right: tuple[float, float] | None) -> None:
        """Centre the left eye's view on the sensor point `left` and the right eye's on `right` (None: the vergence
        stays), by the linked pan and tilt between them and the vergence from their difference: the tracker's moves,
        one a frame. Controllers hear the rig at most ten times a second; it is saved when tracking ends."""
        crop = self.left.crop()
        (left_dx, left_dy), (right_dx, right_dy) = self.left.eye_offset, self.right.eye_offset
        x, y = left[0] - left_dx, left[1] - left_dy
        if right is None:
            x -= self.vergence * crop.width / 2
        else:
            rx, ry = right[0] - right_dx, right[1] - right_dy
            self.vergence = min(max((x - rx) / crop.width, -0.5), 0.5)
            self.left.eye_disparity, self.right.eye_disparity = self.vergence, -self.vergence
            x, y = (x + rx) / 2, (y + ry) / 2
        for eye in (self.left, self.right):
            eye.state = ptz.look_at(eye.state, x, y, eye.stream.geometry, eye.output_size, eye.max_zoom)
            eye._reapply()
        if self._follow_events.due():
            self._publish({"type": "stereo", **self.describe(), "moving": True})

    def followed(self) -> None:
        """Tracking ended: say where the eyes stopped, and save it."""
        self._publish({"type": "stereo", **self.describe(), "moving": False})
        self._on_change()

    def describe(self) -> dict[str, Any]:
        return {
            "stream": self.stream_id,
            "vergence": self.vergence,
            "left": self.left.describe(),
            "right": self.right.describe(),
            "offsets_px": [list(self.left.eye_offset), list(self.right.eye_offset)],
        }


class Controllers:
    """Every camera's controller, the persisted state they share; their changes go out on the event bus."""

    def __init__(self, streams: dict[str, Stream], store: StateStore, events: EventBus) -> None:
        self.store = store
        self.events = events
        saved = store.load().get("cameras", {})
        self.cameras = {
            stream_id: CameraController(stream, saved.get(stream_id, {}), self._changed, events.publish)
            for stream_id, stream in streams.items()
        }
        self.rig: StereoRig | None = None
        self.processing: dict[str, ProcessingController] = {}
        self.tracking: dict[str, Tracking] = {}
        self._saving: asyncio.Task[None] | None = None
        self._dirty = False

    def add_rig(
        self, left: str, right: str, offsets: tuple[tuple[int, int], tuple[int, int]], stream_id: str = "stereo"
    ) -> StereoRig:
        """Link two cameras as stereo eyes, seen together as `stream_id`."""
        saved = self.store.load().get("stereo", {})
        self.rig = StereoRig(
            self.cameras[left], self.cameras[right], offsets, saved, self._changed, self.events.publish, stream_id
        )
        return self.rig

    def add_tracking(self, settings: TrackingSettings, calibration: StereoCalibration | None = None) -> None:
        """Let every camera follow a target (`track`), and the stereo rig's eyes together (after `add_rig`), its
        `calibration` giving the target's distance."""
        for stream_id, camera in self.cameras.items():
            self.tracking[stream_id] = Tracking(camera, settings, self.events.publish)
        rig = self.rig
        if rig is not None:
            pair = self.processing.get(rig.stream_id)  # after add_processing: the box shows on the pair's stream too
            self.tracking[rig.stream_id] = Tracking(
                rig.left, settings, self.events.publish, rig, calibration, pair.stream.processing if pair else None
            )

    def get_tracking(self, camera: str) -> Tracking:
        tracking = self.tracking.get(camera)
        if tracking is None:
            raise NotFound(f"{camera!r} cannot track: only a camera can; cameras: {', '.join(self.tracking)}")
        return tracking

    def stop_tracking(self, reason: str = "stopped", cameras: tuple[str, ...] | None = None) -> None:
        """Stop the tracking that moves any of `cameras` (default: all of them): a hand on a camera, the server
        stopping."""
        for tracking in self.tracking.values():
            if cameras is None or set(tracking.cameras) & set(cameras):
                tracking.stop(reason)

    def add_processing(self, stream: Stream, budget_ms: float, plugin_dir: Path | None = None) -> None:
        """Give a stream (a camera or a derived one) its overlays, ROIs, stabilization and plugins, as saved."""
        saved = self.store.load().get("processing", {}).get(stream.id, {})
        self.processing[stream.id] = ProcessingController(
            stream, saved, budget_ms, self._changed, self.events, plugin_dir
        )

    def get_processing(self, stream: str) -> ProcessingController:
        controller = self.processing.get(stream)
        if controller is None:
            raise NotFound(f"unknown stream {stream!r}; streams: {', '.join(self.processing)}")
        return controller

    def get(self, camera: str) -> CameraController:
        controller = self.cameras.get(camera)
        if controller is None:
            raise NotFound(f"unknown camera {camera!r}; cameras: {', '.join(self.cameras)}")
        return controller

    def snapshot(self) -> dict[str, Any]:
        """Everything a new controller needs to show the current state."""
        snapshot: dict[str, Any] = {
            "type": "state",
            "cameras": {cid: {**c.describe(), "presets": c.describe_presets()} for cid, c in self.cameras.items()},
        }
        if self.rig is not None:
            snapshot["stereo"] = self.rig.describe()
        snapshot["processing"] = {sid: p.describe() for sid, p in self.processing.items()}
        snapshot["tracking"] = {sid: t.describe() for sid, t in self.tracking.items()}
        return snapshot

    def _changed(self) -> None:
        """Save soon, off the loop; changes arriving during a save are coalesced into one more save."""
        self._dirty = True
        if self._saving is None or self._saving.done():
            self._saving = asyncio.get_running_loop().create_task(self._save_until_clean())

    async def _save_until_clean(self) -> None:
        while self._dirty:
            self._dirty = False
            document: dict[str, Any] = {"cameras": {cid: c.saved() for cid, c in self.cameras.items()}}
            if self.rig is not None:
                document["stereo"] = {"vergence": self.rig.vergence}
            document["processing"] = {sid: p.saved() for sid, p in self.processing.items()}
            try:
                await asyncio.to_thread(self.store.save, document)
            except OSError as err:
                log.error("cannot save state to %s: %s", self.store.path, err)

    async def flush(self) -> None:
        """Wait for pending saves (at shutdown)."""
        if self._saving is not None:
            await self._saving
