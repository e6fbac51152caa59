"""Run Commands against the running server: one place, whichever transport a command came from."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from vergence.control.commands import (
    ZOOM_MOVE_S,
    ZOOM_RATE_PER_S,
    BitrateCommand,
    ClipCommand,
    Command,
    DestinationCommand,
    GpsCommand,
    PanCommand,
    PhotoCommand,
    PresetCommand,
    ProtocolCommand,
    PtzCommand,
    RecordCommand,
    StabilizeCommand,
    StatusCommand,
    StreamCommand,
    TiltCommand,
    ZoomCommand,
    as_object,
    error_reply,
    parse_command,
    reply,
)
from vergence.errors import CommandError, VergenceError
from vergence.media.exif import Position
from vergence.stills import take_photo

if TYPE_CHECKING:
    from vergence.app import Vergence
    from vergence.control.controller import CameraController, Controllers
    from vergence.outputs.base import Output
    from vergence.stream import Stream

log = logging.getLogger(__name__)


class Commander:
    """Executes commands on the event loop and shapes every answer as a reply (docs/protocol.md, "Commands")."""

    def __init__(self, vergence: Vergence) -> None:
        self._vergence = vergence

    async def handle(self, raw: Any, source: str = "") -> dict[str, Any]:
        """Parse and run one command from any transport; never raises: failures become `{"ok": false, …}` replies."""
        raw = as_object(raw)
        command_id = raw.get("id") if isinstance(raw, dict) else None
        try:
            command = parse_command(raw)
            command_id = command.id
            result = await self.run(command)
        except CommandError as err:
            if source:
                log.info("command from %s refused: %s", source, err)
            return error_reply(command_id, err)
        except VergenceError as err:
            return error_reply(command_id, CommandError(str(err), code=err.code))
        return reply(command_id, command.type, result)

    async def run(self, command: Command) -> dict[str, Any]:
        """Run a validated command; raise CommandError when it cannot be done."""
        match command:
            case ZoomCommand():
                return self._zoom(command)
            case PanCommand() | TiltCommand() | PtzCommand():
                return self._ptz(command)
            case PresetCommand():
                return self._preset(command)
            case BitrateCommand():
                stream = self._stream(command.stream)
                stream.set_bitrate(command.kbps * 1000)
                return {"stream": stream.id, "bitrate_bps": stream.bitrate_bps}
            case DestinationCommand():
                return await self._udp(command.output).set_destination(command.host, command.port)
            case ProtocolCommand():
                return self._udp(command.output).set_protocol(command.protocol)
            case StreamCommand():
                output = self._output(command.output)
                await (output.start() if command.action == "start" else output.stop())
                return output.describe()
            case RecordCommand():
                return await self._record(command)
            case ClipCommand():
                return await self._clip(command)
            case PhotoCommand():
                return await self._photo(command)
            case GpsCommand():
                return self._gps(command)
            case StabilizeCommand():
                stream = self._stream(command.stream)
                return self._controllers.get_processing(stream.id).set_stabilize(command.enabled)
            case StatusCommand():
                return self.status()
        raise CommandError(f"command {command.type!r} has no handler")  # pragma: no cover - the union is exhaustive

    def status(self) -> dict[str, Any]:
        """The control state, the outputs and the recordings."""
        snapshot = self._controllers.snapshot()
        snapshot.pop("type", None)
        vergence = self._vergence
        return {
            **snapshot,
            "streams": [stream.describe() for stream in vergence.streams.values()],
            "outputs": [output.describe() for output in vergence.outputs.values()],
            "services": {service.name: service.describe() for service in vergence.services},
            "recordings": vergence.recordings.describe(),
        }

    @property
    def _controllers(self) -> Controllers:
        controllers = self._vergence.controllers
        if controllers is None:
            raise CommandError("the server is still starting", code="unavailable")
        return controllers

    def _camera(self, camera: str | None) -> CameraController:
        controllers = self._controllers
        return controllers.get(camera or next(iter(controllers.cameras)))

    def _is_rig(self, camera: str | None) -> bool:
        rig = self._controllers.rig
        return rig is not None and camera == rig.stream_id

    def _zoom(self, command: ZoomCommand) -> dict[str, Any]:
        if command.value is not None:
            return self._ptz(PtzCommand(type="ptz", camera=command.camera, zoom=command.value))
        if self._is_rig(command.camera):
            raise CommandError("zoom in/out moves one camera; give the stereo pair a value (zoom 2)")
        controller = self._camera(command.camera)
        rate = {"in": ZOOM_RATE_PER_S, "out": -ZOOM_RATE_PER_S, "stop": 0.0}[command.action or "stop"]
        return controller.move(zoom_per_s=rate, duration_s=ZOOM_MOVE_S)

    def _ptz(self, command: PanCommand | TiltCommand | PtzCommand) -> dict[str, Any]:
        if isinstance(command, PtzCommand):
            pan, tilt, zoom = command.pan, command.tilt, command.zoom
        else:
            pan = command.value if isinstance(command, PanCommand) else None
            tilt = command.value if isinstance(command, TiltCommand) else None
            zoom = None
        if self._is_rig(command.camera):
            rig = self._controllers.rig
            assert rig is not None
            return rig.move(pan, tilt, zoom, None)
        controller = self._camera(command.camera)
        if zoom is not None and zoom > controller.max_zoom:
            raise CommandError(f"zoom = {zoom:g} is outside 1 … {controller.max_zoom:g} for {controller.stream.id}")
        return controller.set_ptz(pan, tilt, zoom)

    def _preset(self, command: PresetCommand) -> dict[str, Any]:
        controller = self._camera(command.camera)
        if command.action == "save":
            return controller.save_preset(command.name)
        if command.action == "delete":
            return controller.delete_preset(command.name)
        return controller.recall_preset(command.name)

    def _stream(self, stream_id: str | None) -> Stream:
        streams = self._vergence.streams
        stream = streams.get(stream_id or next(iter(streams)))
        if stream is None:
            raise CommandError(f"unknown stream {stream_id!r}; streams: {', '.join(streams)}")
        return stream

    def _output(self, output_id: str | None) -> Output:
        outputs = self._vergence.outputs
        if not outputs:
            raise CommandError("no outputs are configured ([[udp]] or [[restream]] in the config)")
        output = outputs.get(output_id or next(iter(outputs)))
        if output is None:
            raise CommandError(f"unknown output {output_id!r}; outputs: {', '.join(outputs)}")
        return output

    def _udp(self, output_id: str | None) -> Any:
        if output_id is None:
            udp = [output for output in self._vergence.outputs.values() if output.kind == "udp"]
            if not udp:
                raise CommandError("no UDP output is configured ([[udp]] in the config)")
            return udp[0]
        output = self._output(output_id)
        if output.kind != "udp":
            raise CommandError(f"output {output_id!r} is a {output.kind} output, not udp")
        return output

    async def _record(self, command: RecordCommand) -> dict[str, Any]:
        stream = self._stream(command.stream)
        recordings = self._vergence.recordings
        if command.action == "stop":
            return await recordings.stop(stream)
        return await recordings.record(stream, command.name)

    async def _clip(self, command: ClipCommand) -> dict[str, Any]:
        return await self._vergence.recordings.clip(self._stream(command.stream), command.post_s, command.name)

    async def _photo(self, command: PhotoCommand) -> dict[str, Any]:
        return await take_photo(self._vergence, self._stream(command.stream), command.name)

    def _gps(self, command: GpsCommand) -> dict[str, Any]:
        position = Position(command.lat, command.lon, command.alt_m, time.time_ns())
        self._vergence.position = position
        return {"lat": position.lat, "lon": position.lon, "alt_m": position.alt_m}
