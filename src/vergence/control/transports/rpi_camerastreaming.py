"""RPI-CameraStreaming-for-multiple-users' interface (`[compat.rpi_camerastreaming]`), as its viewers and web page
speak it.

- Frames: a ZeroMQ PUB socket (`tcp://*:5555`) sending each frame as one single-part message, the JPEG alone, with
  SNDHWM 1; its viewers SUB with ZMQ_CONFLATE, which keeps one message *part*, so vergence's own three-part frames
  would abort their libzmq (`!_more`).
- Requests: a REP socket (`tcp://*:5558`) whose every request is answered `Ack`, done or not, as the project did.
  `… Service Mode …` shows the ROIs and pauses the plugins (its service mode drew only the ROIs), `… Application Mode …`
  undoes it, `… Stop Mode …` stops the server cleanly; `SaveROIs` writes the ROIs to its file; `Set ROI
  ImmutableMultiDict([('ROIName', 'A'), ('top', '25'), ('bottom', '35'), ('left', '30'), ('right', '40'),
  ('Colour', 'Red')])` sets one (corners in % of the frame), each a command of the one vocabulary.
- ROIs: its file `{"name": [[left %, top %], [right %, bottom %], "colour"], …}`, read at start and kept in step with
  the stream's ROIs from then on: a change from any transport (its `Set ROI`, the page, REST, MQTT, …) is written to
  it, so the project's tools that read the file see what vergence draws.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vergence.config import ZmqSettings
from vergence.control.commander import Commander
from vergence.events import EventBus

if TYPE_CHECKING:
    from collections.abc import Callable

    from vergence.config import RpiCameraStreamingCompat
    from vergence.context import Parts
    from vergence.outputs.zmq import ZmqService

log = logging.getLogger(__name__)

ACK = b"Ack"
_FIELD = re.compile(r"\('(\w+)', '([^']*)'\)")


class CameraStreamingRequests:
    """Its REP requests, each onto commands of `stream`."""

    def __init__(self, commander: Commander, stream: str, roi_file: Path | None, shutdown: Callable[[], None]) -> None:
        self._commander = commander
        self._stream = stream
        self._roi_file = roi_file
        self._shutdown = shutdown
        self.requests = 0
        self.failed = 0

    async def answer(self, parts: list[bytes]) -> bytes:
        """Carry out one request; the answer is `Ack` whatever became of it (the project's clients wait for it)."""
        self.requests += 1
        text = b"".join(parts).decode(errors="replace")
        for command in self.commands(text):
            reply = await self._commander.handle(command, source="rpi-camerastreaming zmq")
            if not reply["ok"]:
                self.failed += 1
                log.warning("rpi-camerastreaming request %r: %s", text[:200], reply["error"])
        if "SaveROIs" in text:
            await self.save_rois()
        if "Mode" in text and "Stop" in text:
            log.info("rpi-camerastreaming: stop requested; stopping the server")
            self._shutdown()
        return ACK

    def commands(self, text: str) -> list[dict[str, Any]]:
        """The commands a request stands for (none for a request that is not one of its own)."""
        stream = self._stream
        if "Mode" in text and "Service" in text:
            return [{"type": "overlay", "stream": stream, "rois": True}, *self._plugins("disable")]
        if "Mode" in text and "Application" in text:
            return [{"type": "overlay", "stream": stream, "rois": False}, *self._plugins("enable")]
        if "Set ROI " in text:
            fields = dict(_FIELD.findall(text))
            command: dict[str, Any] = {
                "type": "roi",
                "stream": stream,
                "action": "set",
                "name": fields.get("ROIName", ""),
                "x1": fields.get("left"),
                "y1": fields.get("top"),
                "x2": fields.get("right"),
                "y2": fields.get("bottom"),
            }
            if fields.get("Colour"):
                command["colour"] = fields["Colour"].lower()
            return [command]
        return []

    def _plugins(self, action: str) -> list[dict[str, Any]]:
        processing = self._commander.controllers.get_processing(self._stream)
        return [
            {"type": "plugin", "stream": self._stream, "action": action, "name": name} for name in processing.plugins
        ]

    async def load_rois(self) -> None:
        """Set the ROIs its file holds (a missing file: none yet)."""
        if self._roi_file is None or not self._roi_file.exists():
            return
        try:
            saved = json.loads(self._roi_file.read_text())
            for name, ((x1, y1), (x2, y2), colour) in saved.items():
                roi = {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "colour": str(colour).lower()}
                reply = await self._commander.handle(
                    {"type": "roi", "stream": self._stream, "action": "set", "name": name, **roi}
                )
                if not reply["ok"]:
                    log.warning("ROI file %s: %s: %s", self._roi_file, name, reply["error"])
        except (OSError, ValueError, TypeError) as err:
            log.warning("ROI file %s cannot be read: %s", self._roi_file, err)

    async def save_rois(self) -> None:
        """Write the stream's ROIs to its file, in its layout."""
        if self._roi_file is None:
            log.warning("rpi-camerastreaming: SaveROIs without [compat.rpi_camerastreaming] roi_file: not saved")
            return
        rois = self._commander.controllers.get_processing(self._stream).describe_rois()
        document = {roi["name"]: [[roi["x1"], roi["y1"]], [roi["x2"], roi["y2"]], roi["colour"]] for roi in rois}
        temporary = self._roi_file.with_name(f".{self._roi_file.name}.part")
        temporary.write_text(json.dumps(document, indent=2))
        temporary.replace(self._roi_file)


class CameraStreamingService:
    """Its PUB and REP sockets (a ZeroMQ service publishing single-part JPEGs) and its ROI file."""

    name = "rpi-camerastreaming"

    def __init__(
        self, zmq: ZmqService, requests: CameraStreamingRequests, events: EventBus, stream: str, roi_file: bool
    ) -> None:
        self._zmq = zmq
        self._requests = requests
        self._events = events
        self._stream = stream
        self._roi_file = roi_file
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._roi_file:
            events = self._events.subscribe("rpi-camerastreaming ROI file")
            self._follower = asyncio.create_task(self._keep_file_in_step(events), name="rpi-camerastreaming rois")
        await self._requests.load_rois()
        await self._zmq.start()

    async def _keep_file_in_step(self, events: Any) -> None:
        with events:
            async for event in events:
                if event["type"] == "rois" and event["stream"] == self._stream:
                    try:
                        await self._requests.save_rois()
                    except OSError as err:
                        log.warning("rpi-camerastreaming: the ROI file cannot be written: %s", err)

    async def stop(self) -> None:
        await self._zmq.stop()
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    def describe(self) -> dict[str, Any]:
        return {**self._zmq.describe(), "name": self.name, "failed_requests": self._requests.failed}


def create_service(parts: Parts) -> CameraStreamingService:
    """The `[compat.rpi_camerastreaming]` service."""
    from vergence.outputs.zmq import ZmqService  # ConfigError naming pyzmq when it is missing

    compat: RpiCameraStreamingCompat = parts.settings.compat.rpi_camerastreaming
    stream = compat.stream or next(iter(parts.streams))
    requests = CameraStreamingRequests(parts.commander, stream, compat.roi_file, parts.shutdown)
    settings = ZmqSettings(enabled=True, pub=compat.pub or "", rep=compat.rep or "", streams=[stream], hwm=1)
    zmq = ZmqService(settings, parts.streams, parts.settings, requests.answer, single_part=True, name="rpi zmq")
    return CameraStreamingService(zmq, requests, parts.events, stream, compat.roi_file is not None)
