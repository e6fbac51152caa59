"""The one command model every transport speaks: pydantic types, the `<type> <value>` text form, and replies.

REST, the control WebSocket, `vergence ctl`, MQTT, ZeroMQ REP, the SQLite inbox and the FIFO all turn what they receive into
a `Command` with `parse_command` and run it with `Commander.run`; a bad command gets the same error on every transport.
Pure: no I/O here beyond what `Commander` asks of the running server.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from vergence.control import json_text
from vergence.errors import CommandError
from vergence.media.names import NAME_PATTERN, check_name

log = logging.getLogger(__name__)

ZOOM_RATE_PER_S = 0.5  # log rate of `zoom in` / `zoom out`: about 1.65× per second, as PiStreamer's ZOOM_RATE
ZOOM_MOVE_S = 30.0  # `zoom in` keeps going until `zoom stop`, a limit, or this long
# What a recording, clip or photo may be called: the media directory's one rule, which the recordings API lists by.
MediaName = Annotated[str, AfterValidator(check_name), WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str | int | None = Field(None, description="echoed in the reply, to match replies to commands")


class ZoomCommand(_Command):
    """Zoom to a factor, or start zooming in / out until `stop`."""

    type: Literal["zoom"]
    camera: str | None = Field(None, description="camera or stereo stream id (default: the first camera)")
    value: float | None = Field(None, ge=1, le=64, description="zoom factor, 1 = the whole field of view")
    action: Literal["in", "out", "stop"] | None = None

    @model_validator(mode="after")
    def _one(self) -> ZoomCommand:
        if (self.value is None) == (self.action is None):
            raise ValueError("give either value (a zoom factor) or action (in, out, stop)")
        return self


class PanCommand(_Command):
    """Move the crop centre horizontally (0 = left edge … 1 = right edge)."""

    type: Literal["pan"]
    camera: str | None = None
    value: float = Field(ge=0, le=1)


class TiltCommand(_Command):
    """Move the crop centre vertically (0 = top … 1 = bottom)."""

    type: Literal["tilt"]
    camera: str | None = None
    value: float = Field(ge=0, le=1)


class PtzCommand(_Command):
    """An absolute pan/tilt/zoom; omitted values stay."""

    type: Literal["ptz"]
    camera: str | None = None
    pan: float | None = Field(None, ge=0, le=1)
    tilt: float | None = Field(None, ge=0, le=1)
    zoom: float | None = Field(None, ge=1, le=64)


class PresetCommand(_Command):
    """Save, recall or delete a named view."""

    type: Literal["preset"]
    camera: str | None = None
    action: Literal["save", "recall", "delete"] = "recall"
    name: str = Field("home", pattern=r"^[A-Za-z0-9_. -]{1,40}$")


class BitrateCommand(_Command):
    """Set a stream's H.264 bitrate (every H.264 consumer of the stream shares its encoder)."""

    type: Literal["bitrate"]
    stream: str | None = Field(None, description="stream id (default: the first camera)")
    kbps: int = Field(ge=100, le=50_000, description="kbit/s, 100 … 50000")


class DestinationCommand(_Command):
    """Send a UDP output somewhere else."""

    type: Literal["destination"]
    output: str | None = Field(None, description="UDP output id (default: the first [[udp]])")
    host: str | None = Field(None, min_length=1, max_length=253)
    port: int | None = Field(None, ge=1, le=65535)

    @model_validator(mode="after")
    def _some(self) -> DestinationCommand:
        if self.host is None and self.port is None:
            raise ValueError("give host, port or both")
        return self


class StreamCommand(_Command):
    """Start or stop an output (UDP or restream)."""

    type: Literal["stream"]
    output: str | None = None
    action: Literal["start", "stop"]


class ProtocolCommand(_Command):
    """Switch a UDP output between RTP and MPEG-TS."""

    type: Literal["protocol"]
    output: str | None = None
    protocol: Literal["rtp", "mpegts"]


class RecordCommand(_Command):
    """Start or stop recording a stream to MP4 (H.264 as encoded, no re-encoding)."""

    type: Literal["record"]
    stream: str | None = None
    action: Literal["start", "stop"] = "start"
    name: MediaName | None = Field(None, description="file name prefix (default: none, the file is stream and time)")


class ClipCommand(_Command):
    """Save a clip: the pre-event buffer (the last [recording] pre_event_s seconds) and `post_s` seconds from now."""

    type: Literal["clip"]
    stream: str | None = None
    post_s: float | None = Field(
        None, ge=0, le=3600, description="seconds after now (default [recording] post_event_s)"
    )
    name: MediaName | None = Field(None, description="file name prefix (default: none, the file is stream and time)")


class PhotoCommand(_Command):
    """Save a still of a stream as a JPEG with EXIF: full sensor resolution where the camera can, else the newest frame."""

    type: Literal["photo"]
    stream: str | None = None
    name: MediaName | None = Field(None, description="file name without extension (default: stream and time)")


class GpsCommand(_Command):
    """Tell vergence where the camera is: photos taken from now on carry the position in their EXIF."""

    type: Literal["gps"]
    lat: float = Field(ge=-90, le=90, description="latitude, degrees north")
    lon: float = Field(ge=-180, le=180, description="longitude, degrees east")
    alt_m: float | None = Field(None, ge=-1000, le=100_000, description="altitude above sea level, m")


class StabilizeCommand(_Command):
    """Turn stabilization of a stream on or off."""

    type: Literal["stabilize"]
    stream: str | None = None
    enabled: bool = True


class StatusCommand(_Command):
    """Return the whole control state and the outputs."""

    type: Literal["status"]


Command = Annotated[
    ZoomCommand
    | PanCommand
    | TiltCommand
    | PtzCommand
    | PresetCommand
    | BitrateCommand
    | DestinationCommand
    | StreamCommand
    | ProtocolCommand
    | RecordCommand
    | ClipCommand
    | PhotoCommand
    | GpsCommand
    | StabilizeCommand
    | StatusCommand,
    Field(discriminator="type"),
]
_COMMAND: TypeAdapter[Command] = TypeAdapter(Command)
_MODELS: tuple[type[_Command], ...] = (
    ZoomCommand,
    PanCommand,
    TiltCommand,
    PtzCommand,
    PresetCommand,
    BitrateCommand,
    DestinationCommand,
    StreamCommand,
    ProtocolCommand,
    RecordCommand,
    ClipCommand,
    PhotoCommand,
    GpsCommand,
    StabilizeCommand,
    StatusCommand,
)
COMMAND_TYPES = sorted(model.model_fields["type"].annotation.__args__[0] for model in _MODELS)  # type: ignore[union-attr]

# PiStreamer's command names (its FIFO and SQLite table), mapped onto ours.
_ALIASES = {
    "gcs_ip": "ip",
    "gcs_port": "port",
    "gcs_host": "host",
    "take_photo": "photo",
    "start_gcs_stream": "stream start",
    "stop_gcs_stream": "stream stop",
    "stop_recording": "record stop",
}
_TRUE = {"on", "true", "1", "yes", "start"}
_FALSE = {"off", "false", "0", "no", "stop"}


def command_schema() -> dict[str, Any]:
    """The JSON Schema of a command: one of the command models, told apart by `type`."""
    return _COMMAND.json_schema()


def as_object(raw: Any) -> Any:
    """Return JSON text (str or bytes) of an object as a dict, so even a refused command's reply can echo its `id`;
    anything else unchanged, for `parse_command` to parse or to explain what is wrong with it."""
    if isinstance(raw, (str, bytes)) and raw.lstrip()[:1] in ("{", b"{"):
        try:
            decoded = json_text.loads(raw)
        except ValueError:
            return raw
        return decoded if isinstance(decoded, dict) else raw
    return raw


def parse_command(raw: Any) -> Command:
    """Turn a JSON object, JSON text or a `<type> <value>` line into a Command; raise CommandError saying what is wrong."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            raise CommandError("a command must be UTF-8 text") from None
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("{"):
            try:
                raw = json_text.loads(text)
            except ValueError as err:
                raise CommandError(f"invalid JSON: {err}", code="invalid") from None
        else:
            raw = parse_text(text)
    if not isinstance(raw, dict):
        raise CommandError("a command is a JSON object with a type, or a `<type> <value>` line")
    kind = raw.get("type")
    if kind not in COMMAND_TYPES:
        raise CommandError(f"unknown command {kind!r}; commands: {', '.join(COMMAND_TYPES)}", code="unknown_command")
    try:
        return _COMMAND.validate_python(raw)
    except ValidationError as err:
        raise CommandError(describe_validation(err), code="invalid") from None


def describe_validation(err: ValidationError) -> str:
    """One line per problem, naming the field."""
    parts = []
    for error in err.errors():
        loc = [str(part) for part in error["loc"][1:]]  # the first element is the union tag
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {message}" if loc else message)
    return "; ".join(parts)


def parse_text(line: str) -> dict[str, Any]:
    """Parse `<type> [value] [key=value …]`, PiStreamer's names included, into a command dict (not yet validated)."""
    words = line.split()
    if not words:
        raise CommandError("empty command")
    extras = {}
    positional = []
    for word in words[1:]:
        key, sep, setting = word.partition("=")
        if sep and re.fullmatch(r"[a-z_]+", key):
            extras[key] = setting
        else:
            positional.append(word)
    kind = words[0].lower()
    alias = _ALIASES.get(kind)
    if alias is not None:
        alias_words = alias.split()
        kind, positional = alias_words[0], alias_words[1:] + positional
    value: str | None = positional[0] if positional else None
    command: dict[str, Any] = {"type": kind, **extras}
    if len(positional) > 1:
        raise CommandError(f"{kind}: too many values {positional!r}")

    def need(what: str) -> str:
        if value is None:
            raise CommandError(f"{kind} needs a value: {what}", code="invalid")
        return value

    if kind == "zoom":
        word = need("a factor, in, out or stop")
        if word.lower() in ("in", "out", "stop"):
            command["action"] = word.lower()
        else:
            command["value"] = _number(kind, word)
    elif kind in ("pan", "tilt"):
        command["value"] = _number(kind, need("0 … 1"))
    elif kind == "bitrate":
        command["kbps"] = _number(kind, need("kbit/s"))
    elif kind == "ip":
        command.update(type="destination", host=need("an address"))
    elif kind == "port":
        command.update(type="destination", port=_number(kind, need("a UDP port")))
    elif kind in ("host", "destination"):
        host, sep, port = need("HOST:PORT").rpartition(":")
        if not sep or not host:
            raise CommandError(f"{kind}: expected HOST:PORT, got {value!r}", code="invalid")
        command.update(type="destination", host=host.strip("[]"), port=_number(kind, port))
    elif kind == "stream":
        command["action"] = need("start or stop").lower()
    elif kind == "protocol":
        command["protocol"] = need("rtp or mpegts").lower()
    elif kind == "record":
        if value is None or value.lower() == "start":
            command["action"] = "start"
        elif value.lower() == "stop":
            command["action"] = "stop"
        else:
            command.update(action="start", name=value)
    elif kind == "photo":
        if value is not None:
            command["name"] = value
    elif kind == "clip":
        if value is not None:
            command["post_s"] = _number(kind, value)
    elif kind == "gps":
        if value is not None:
            parts = value.split(",")
            if not 2 <= len(parts) <= 3:
                raise CommandError(f"gps: expected LAT,LON[,ALT], got {value!r}", code="invalid")
            for key, part in zip(("lat", "lon", "alt_m"), parts, strict=False):
                command[key] = _number(kind, part)
    elif kind == "stabilize":
        word = (value or "on").lower()
        if word not in _TRUE | _FALSE:
            raise CommandError(f"stabilize: expected on or off, got {value!r}", code="invalid")
        command["enabled"] = word in _TRUE
    elif kind == "preset":
        if value is not None:
            command["name"] = value
    elif value is not None and kind in COMMAND_TYPES:
        raise CommandError(f"{kind} takes no value here (use key=value)", code="invalid")
    return command


def _number(kind: str, word: str) -> float | int:
    try:
        number = float(word)
    except ValueError:
        raise CommandError(f"{kind}: {word!r} is not a number", code="invalid") from None
    if not math.isfinite(number):
        raise CommandError(f"{kind}: {word!r} is not a finite number", code="invalid")
    return int(number) if number.is_integer() else number


def reply(command_id: Any, kind: str | None, result: dict[str, Any]) -> dict[str, Any]:
    """A success reply as every transport sends it."""
    body: dict[str, Any] = {"ok": True, "type": kind, "result": result}
    if command_id is not None:
        body["id"] = command_id
    return body


def error_reply(command_id: Any, err: CommandError) -> dict[str, Any]:
    """A failure reply as every transport sends it."""
    body: dict[str, Any] = {"ok": False, "code": err.code, "error": str(err)}
    if command_id is not None:
        body["id"] = command_id
    return body
