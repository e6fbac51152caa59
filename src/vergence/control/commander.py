"""Run commands against the running server: one place, whichever transport a command came from, and one reply shape.

A reply is `{"ok": true, "command": <type>, "result": {…}}` or `{"ok": false, "command": <type or null>, "code": …,
"error": …}`, with the command's `id` when it had one (docs/protocol.md, "Commands"). Transports add only their envelope.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from vergence import ptz
from vergence.config import PluginSettings
from vergence.control.commands import (
    ZOOM_MOVE_S,
    ZOOM_RATE_PER_S,
    AnyCommand,
    AttitudeCommand,
    BitrateCommand,
    ClipCommand,
    DestinationCommand,
    FlipCommand,
    GpsCommand,
    MoveCommand,
    OutputSwitchCommand,
    OverlayCommand,
    PanCommand,
    PauseCommand,
    PhotoCommand,
    PluginCommand,
    PresetCommand,
    ProtocolCommand,
    PtzCommand,
    RecordCommand,
    RoiCommand,
    StabilizeCommand,
    StatusCommand,
    StereoCommand,
    TiltCommand,
    TrackCommand,
    ZoomCommand,
)
from vergence.control.parsing import as_object, command_type, parse_command, validate
from vergence.errors import CommandError, InvalidCommand, NotFound, VergenceError
from vergence.media.exif import Attitude, Position
from vergence.stills import take_photo

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vergence.config import Settings
    from vergence.control.controller import CameraController, Controllers, StereoRig
    from vergence.control.processing import ProcessingController
    from vergence.outputs.base import Output, Outputs, Service
    from vergence.recording.recordings import Recordings
    from vergence.stream import Stream
    from vergence.streams import Streams

log = logging.getLogger(__name__)


def reply(command_id: Any, kind: str | None, result: dict[str, Any]) -> dict[str, Any]:
    """The reply to a command that ran."""
    body: dict[str, Any] = {"ok": True, "command": kind, "result": result}
    if command_id is not None:
        body["id"] = command_id
    return body


def error_reply(command_id: Any, err: VergenceError, kind: str | None = None) -> dict[str, Any]:
    """The reply to a command that was refused or failed."""
    body: dict[str, Any] = {"ok": False, "command": kind, "code": err.code, "error": str(err)}
    if command_id is not None:
        body["id"] = command_id
    return body


class Commander:
    """Validates and executes commands on the event loop."""

    def __init__(
        self,
        settings: Settings,
        streams: Streams,
        controllers: Controllers,
        outputs: Outputs,
        services: Sequence[Service],
        recordings: Recordings,
    ) -> None:
        self._settings = settings
        self._streams = streams
        self.controllers = controllers
        self._outputs = outputs
        self._services = services
        self._recordings = recordings
        self.position: Position | None = None  # from the last `gps` command, for the EXIF of photos
        self.attitude: Attitude | None = None  # from the last `attitude` command, for the EXIF and XMP of photos

    async def handle(self, raw: Any, source: str = "") -> dict[str, Any]:
        """Parse and run one command from any transport; never raises: a failure is an `{"ok": false, …}` reply."""
        raw = as_object(raw)
        command_id = raw.get("id") if isinstance(raw, dict) else None
        kind = command_type(raw)
        try:
            command = parse_command(raw, self.targets())
            command_id, kind = command.id, command.type
            result = await self.execute(command)
        except VergenceError as err:
            if source:
                log.info("command from %s refused: %s", source, err)
            return error_reply(command_id, err, kind)
        return reply(command_id, kind, result)

    async def run(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Validate and execute a command given as its fields (a REST route's path and body); raise CommandError."""
        return await self.execute(validate(fields))

    async def execute(self, command: AnyCommand) -> dict[str, Any]:
        """Execute a validated command and return its result; raise CommandError when it cannot be done."""
        match command:
            case PtzCommand():
                return self._ptz(command.stream, command.pan, command.tilt, command.zoom)
            case PanCommand():
                return self._ptz(command.stream, command.value, None, None)
            case TiltCommand():
                return self._ptz(command.stream, None, command.value, None)
            case ZoomCommand():
                return self._zoom(command)
            case MoveCommand():
                return self._move(command)
            case PresetCommand():
                return self._preset(command)
            case StereoCommand():
                if (command.pan, command.tilt) != (None, None):
                    self._hands_on(command.stream)
                return self.rig(command.stream).move(command.pan, command.tilt, command.zoom, command.vergence)
            case TrackCommand():
                return self._track(command)
            case FlipCommand():
                return self._camera(command.stream).set_flip(command.horizontal, command.vertical)
            case PauseCommand():
                return self._camera(command.stream).set_paused(command.paused)
            case OverlayCommand():
                return self._processing(command.stream).set_overlay(command)
            case RoiCommand():
                return self._roi(command)
            case StabilizeCommand():
                return self._processing(command.stream).set_stabilize(command.enabled)
            case PluginCommand():
                return self._plugin(command)
            case BitrateCommand():
                stream = self.stream(command.stream)
                stream.set_bitrate(command.kbps * 1000)
                return {"stream": stream.id, "bitrate_bps": stream.bitrate_bps}
            case RecordCommand():
                recordings = self._recordings
                stream = self.stream(command.stream)
                if command.action == "stop":
                    return await recordings.stop(stream)
                return await recordings.record(stream, command.name)
            case ClipCommand():
                return await self._recordings.clip(self.stream(command.stream), command.post_s, command.name)
            case PhotoCommand():
                stream = self.stream(command.stream)
                return await take_photo(
                    stream, command.name, self._settings, self.position, self.attitude, command.path
                )
            case GpsCommand():
                position = Position(command.lat, command.lon, command.alt_m, time.time_ns())
                self.position = position
                self.controllers.events.publish(
                    {"type": "gps", "lat": position.lat, "lon": position.lon, "alt_m": position.alt_m}
                )
                return {"lat": position.lat, "lon": position.lon, "alt_m": position.alt_m}
            case AttitudeCommand():
                self.attitude = Attitude(command.pitch_deg, command.roll_deg, command.model, command.focal_length_mm)
                return self.attitude.summary()
            case DestinationCommand():
                return await self._udp(command.output).set_destination(command.host, command.port)
            case ProtocolCommand():
                return self._udp(command.output).set_protocol(command.protocol)  # type: ignore[no-any-return]
            case OutputSwitchCommand():
                output = self.output(command.output)
                await (output.start() if command.action == "start" else output.stop())
                return output.describe()
            case StatusCommand():
                return self.status()
        raise CommandError(f"command {command.type!r} has no handler", code="internal_error")  # pragma: no cover

    def status(self) -> dict[str, Any]:
        """The control state, the streams, the outputs and the recordings."""
        snapshot = self.controllers.snapshot()
        snapshot.pop("type", None)
        return {
            **snapshot,
            "streams": [stream.describe() for stream in self._streams.values()],
            "outputs": [output.describe() for output in self._outputs.values()],
            "services": {service.name: service.describe() for service in self._services},
            "recordings": self._recordings.describe(),
        }

    # ---- what a command names

    def targets(self) -> dict[str, list[str]]:
        """The stream and output ids commands may name."""
        return {"stream": list(self._streams), "output": list(self._outputs)}

    def stream(self, stream_id: str | None) -> Stream:
        """A stream by id (None: the first); NotFound names the streams there are."""
        return self._streams.find(stream_id)

    def _camera(self, stream_id: str | None) -> CameraController:
        controllers = self.controllers
        return controllers.get(stream_id or next(iter(controllers.cameras)))

    def _processing(self, stream_id: str | None) -> ProcessingController:
        return self.controllers.get_processing(self.stream(stream_id).id)

    def rig(self, stream_id: str | None = None) -> StereoRig:
        """The stereo rig (of `stream_id` when given); NotFound when stereo is off."""
        rig = self.controllers.rig
        if rig is None:
            raise NotFound("stereo is not enabled ([stereo] enabled = true)")
        if stream_id is not None and stream_id != rig.stream_id:
            raise NotFound(f"{stream_id!r} is not a stereo stream; the stereo stream is {rig.stream_id!r}")
        return rig

    def _is_rig(self, stream_id: str | None) -> bool:
        rig = self.controllers.rig
        return rig is not None and stream_id == rig.stream_id

    def output(self, output_id: str | None) -> Output:
        """An output by id (None: the first); NotFound names the outputs there are."""
        return self._outputs.find(output_id)

    def _udp(self, output_id: str | None) -> Any:
        if output_id is None:
            udp = [output for output in self._outputs.values() if output.kind == "udp"]
            if not udp:
                raise NotFound("no UDP output is configured ([[udp]] in the config)")
            return udp[0]
        output = self.output(output_id)
        if output.kind != "udp":
            raise InvalidCommand(f"output {output_id!r} is a {output.kind} output, not udp")
        return output

    # ---- handlers that choose between parts

    def _hands_on(self, stream_id: str | None) -> None:
        """Someone moves the view by hand: tracking on the camera (or the rig's eyes) ends, the view goes where told."""
        cameras: tuple[str, ...]
        if self._is_rig(stream_id):
            rig = self.rig(stream_id)
            cameras = (rig.left.stream.id, rig.right.stream.id)
        else:
            cameras = (self._camera(stream_id).stream.id,)
        self.controllers.stop_tracking("moved by command", cameras)

    def _track(self, command: TrackCommand) -> dict[str, Any]:
        if self._is_rig(command.stream):
            rig = self.rig(command.stream)
            camera, tracking = rig.left, self.controllers.get_tracking(rig.stream_id)
        else:
            camera = self._camera(command.stream)
            tracking = self.controllers.get_tracking(camera.stream.id)
        if command.action == "stop":
            return tracking.stop()
        # One tracking per camera: the rig's eyes are the cameras', so whichever started last moves them.
        for other in self.controllers.tracking.values():
            if other is not tracking and set(other.cameras) & set(tracking.cameras):
                other.stop(f"{tracking.stream_id} tracks now")
        if command.point_px is not None:
            width, height = camera.stream.info.width, camera.stream.info.height
            x, y = command.point_px
            if not (0 <= x < width and 0 <= y < height):
                raise InvalidCommand(
                    f"point ({x:g}, {y:g}) is outside the {width}x{height} picture of {camera.stream.id}"
                )
            return tracking.start(point=(100 * x / width, 100 * y / height))
        if command.box is not None:
            return tracking.start(box=command.box)
        assert command.x is not None and command.y is not None
        return tracking.start(point=(command.x, command.y))

    def _ptz(self, stream_id: str | None, pan: float | None, tilt: float | None, zoom: float | None) -> dict[str, Any]:
        if (pan, tilt) != (None, None):
            self._hands_on(stream_id)
        if self._is_rig(stream_id):
            return self.rig(stream_id).move(pan, tilt, zoom, None)
        return self._camera(stream_id).set_ptz(pan, tilt, zoom)

    def _zoom(self, command: ZoomCommand) -> dict[str, Any]:
        if command.max is not None:
            if self._is_rig(command.stream):
                raise InvalidCommand("max zoom is each camera's; give one camera")
            return self._camera(command.stream).set_max_zoom(command.max)
        if command.value is not None:
            return self._ptz(command.stream, None, None, command.value)
        if self._is_rig(command.stream):
            raise InvalidCommand("zoom in/out moves one camera; give the stereo pair a value (zoom 2)")
        rate = {"in": ZOOM_RATE_PER_S, "out": -ZOOM_RATE_PER_S, "stop": 0.0}[command.action or "stop"]
        return self._camera(command.stream).move(zoom_per_s=rate, duration_s=ZOOM_MOVE_S)

    def _move(self, command: MoveCommand) -> dict[str, Any]:
        if self._is_rig(command.stream):
            raise InvalidCommand("a velocity move moves one camera; move the stereo pair with ptz or stereo")
        controller = self._camera(command.stream)
        if (command.pan_per_s, command.tilt_per_s) != (0.0, 0.0):
            self._hands_on(command.stream)
        return controller.move(command.pan_per_s, command.tilt_per_s, command.zoom_per_s, command.duration_s)

    def _preset(self, command: PresetCommand) -> dict[str, Any]:
        controller = self._camera(command.stream)
        if command.action == "save":
            current = controller.state
            state = ptz.PtzState(
                current.pan if command.pan is None else command.pan,
                current.tilt if command.tilt is None else command.tilt,
                current.zoom if command.zoom is None else command.zoom,
            )
            return controller.save_preset(command.name, state)
        if command.action == "delete":
            return controller.delete_preset(command.name)
        self._hands_on(command.stream)
        return controller.recall_preset(command.name)

    def _roi(self, command: RoiCommand) -> dict[str, Any]:
        processing = self._processing(command.stream)
        if command.action == "delete":
            return processing.delete_roi(command.name)
        return processing.set_roi(command.name, command.roi())

    def _plugin(self, command: PluginCommand) -> dict[str, Any]:
        processing = self._processing(command.stream)
        if command.action == "add":
            settings = PluginSettings(
                name=command.name,
                path=command.path,
                module=command.module,
                enabled=True if command.enabled is None else command.enabled,
                options=command.options or {},
            )
            return processing.add_plugin(settings)
        if command.action == "remove":
            return processing.remove_plugin(command.name)
        return processing.set_plugin_enabled(command.name, command.action == "enable")
