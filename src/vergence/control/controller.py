"""Camera control: PTZ state per camera, applied to the stream, persisted, and broadcast to every controller."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from vergence import ptz
from vergence.control.state import StateStore
from vergence.errors import CommandError
from vergence.stream import Stream

log = logging.getLogger(__name__)

Broadcast = Callable[[dict[str, Any]], None]


class CameraController:
    """The PTZ of one camera. Runs on the event loop; the crop reaches the capture thread as one reference swap."""

    def __init__(
        self, stream: Stream, saved: dict[str, Any], on_change: Callable[[], None], broadcast: Broadcast
    ) -> None:
        self.stream = stream
        self.max_zoom = stream.camera.max_zoom
        self._on_change = on_change
        self._broadcast = broadcast
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
        stream.on_geometry = self._reapply
        self._reapply()

    @property
    def output_size(self) -> tuple[int, int]:
        return (self.stream.info.width, self.stream.info.height)

    def _reapply(self) -> None:
        """Apply the current state to the sensor (at start, and whenever the source (re)opens)."""
        geometry = self.stream.geometry
        self.state = ptz.clamp(self.state, geometry, self.output_size, self.max_zoom)
        self.stream.set_crop(ptz.crop_for(self.state, geometry, self.output_size, self.max_zoom))

    def describe(self) -> dict[str, Any]:
        """The camera's PTZ as every transport shows it."""
        geometry = self.stream.geometry
        crop = ptz.crop_for(self.state, geometry, self.output_size, self.max_zoom)
        return {
            "camera": self.stream.id,
            "pan": round(self.state.pan, 6),
            "tilt": round(self.state.tilt, 6),
            "zoom": round(self.state.zoom, 6),
            "max_zoom": self.max_zoom,
            "crop": list(crop.as_tuple()),
            "sensor": [geometry.width, geometry.height],
        }

    def set_ptz(self, pan: float | None = None, tilt: float | None = None, zoom: float | None = None) -> dict[str, Any]:
        """Move to an absolute position (each of pan, tilt in 0…1, zoom in 1…max_zoom; None keeps the current one)."""
        for name, value, low, high in (
            ("pan", pan, 0.0, 1.0),
            ("tilt", tilt, 0.0, 1.0),
            ("zoom", zoom, 1.0, self.max_zoom),
        ):
            if value is not None and not (low <= value <= high):
                raise CommandError(f"{name} = {value} is outside {low:g} … {high:g}")
        wanted = ptz.PtzState(
            pan=self.state.pan if pan is None else pan,
            tilt=self.state.tilt if tilt is None else tilt,
            zoom=self.state.zoom if zoom is None else zoom,
        )
        self.state = ptz.clamp(wanted, self.stream.geometry, self.output_size, self.max_zoom)
        self._reapply()
        described = self.describe()
        self._broadcast({"type": "ptz", **described})
        self._on_change()
        return described

    def saved(self) -> dict[str, Any]:
        return {"ptz": asdict(self.state)}


class Controllers:
    """Every camera's controller, the persisted state they share, and the fan-out of state events."""

    def __init__(self, streams: dict[str, Stream], store: StateStore) -> None:
        self.store = store
        self.listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        saved = store.load().get("cameras", {})
        self.cameras = {
            stream_id: CameraController(stream, saved.get(stream_id, {}), self._changed, self.broadcast)
            for stream_id, stream in streams.items()
        }
        self._saving: asyncio.Task[None] | None = None
        self._dirty = False

    def get(self, camera: str) -> CameraController:
        controller = self.cameras.get(camera)
        if controller is None:
            raise CommandError(f"unknown camera {camera!r}; cameras: {', '.join(self.cameras)}")
        return controller

    def snapshot(self) -> dict[str, Any]:
        """Everything a new controller needs to show the current state."""
        return {"type": "state", "cameras": {cid: c.describe() for cid, c in self.cameras.items()}}

    def broadcast(self, event: dict[str, Any]) -> None:
        """Queue an event for every connected controller; one that does not keep up loses its oldest events."""
        for queue in list(self.listeners):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    def _changed(self) -> None:
        """Save soon, off the loop; changes arriving during a save are coalesced into one more save."""
        self._dirty = True
        if self._saving is None or self._saving.done():
            self._saving = asyncio.get_running_loop().create_task(self._save_until_clean())

    async def _save_until_clean(self) -> None:
        while self._dirty:
            self._dirty = False
            document = {"cameras": {cid: c.saved() for cid, c in self.cameras.items()}}
            try:
                await asyncio.to_thread(self.store.save, document)
            except OSError as err:
                log.error("cannot save state to %s: %s", self.store.path, err)

    async def flush(self) -> None:
        """Wait for pending saves (at shutdown)."""
        if self._saving is not None:
            await self._saving
