"""Every operation a user or a program can ask of vergence, as one pydantic model each: the one command vocabulary.

REST, the control WebSocket, the WebRTC data channel, `vergence ctl`, MQTT, ZeroMQ, the SQLite inbox and the FIFO all
turn what they receive into one of these (`control.text` reads the `<type> [stream] <value>` line form) and hand it to
the `Commander`. A command names what it acts on with `stream` (or `output` for an output); `camera`, the name older
clients used, is read as `stream`. Pure: models and validation, no I/O.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from vergence.media.names import NAME_PATTERN, check_name
from vergence.pipeline.draw import parse_colour

ZOOM_RATE_PER_S = 0.5  # log rate of `zoom in` / `zoom out`: about 1.65× per second, as PiStreamer's ZOOM_RATE
ZOOM_MOVE_S = 30.0  # `zoom in` keeps going until `zoom stop`, a limit, or this long
MAX_MOVE_S = 30.0  # a velocity move stops by itself after at most this long
MAX_TEXTS = 16
NAME = r"^[A-Za-z0-9_. -]{1,40}$"  # presets and ROIs: 1-40 of letters, digits, space, _ . -
# What a recording, clip or photo may be called: the media directory's one rule, which the recordings API lists by.
MediaName = Annotated[str, AfterValidator(check_name), WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})]


def _colour(value: str) -> str:
    parse_colour(value)  # ValueError names the allowed forms
    return value


class Command(BaseModel):
    """What every command has: its `type`, and an `id` a reply echoes."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    type: str
    id: str | int | None = Field(None, description="echoed in the reply, to match replies to commands")

    target: ClassVar[str | None] = None  # the field a leading word of the text form names (`zoom cam1 2`)
    # The fields the text form's value words fill, in order (a command reading its words itself names what they are).
    words: ClassVar[tuple[str, ...]] = ()
    usage: ClassVar[str] = ""  # the text form, as docs/protocol.md lists it

    @classmethod
    def from_words(cls, words: list[str]) -> dict[str, Any]:
        """The fields the words of a text line give (after the type and the target)."""
        if len(words) > len(cls.words):
            raise ValueError(f"too many values {words!r}; {cls.usage}")
        return dict(zip(cls.words, words, strict=False))


class StreamCommand(Command):
    """A command acting on one stream."""

    stream: str | None = Field(
        None,
        validation_alias=AliasChoices("stream", "camera"),
        description="stream id (default: the first camera)",
    )

    target: ClassVar[str | None] = "stream"


class OutputCommand(Command):
    """A command acting on one output."""

    output: str | None = Field(None, description="output id (default: the first output of its kind)")

    target: ClassVar[str | None] = "output"


# ---- pan, tilt, zoom


class PtzCommand(StreamCommand):
    """Move to an absolute pan/tilt/zoom; omitted values stay. On the stereo stream both eyes move together."""

    type: Literal["ptz"]
    pan: float | None = Field(None, ge=0, le=1, description="crop centre, 0 = left edge … 1 = right edge")
    tilt: float | None = Field(None, ge=0, le=1, description="crop centre, 0 = top … 1 = bottom")
    zoom: float | None = Field(None, ge=1, le=64, description="1 = the whole field of view … the camera's max_zoom")

    words = ("pan", "tilt", "zoom")
    usage = "ptz [STREAM] PAN [TILT [ZOOM]]"


class PanCommand(StreamCommand):
    """Move the crop centre horizontally (0 = left edge … 1 = right edge)."""

    type: Literal["pan"]
    value: float = Field(ge=0, le=1)

    words = ("value",)
    usage = "pan [STREAM] 0…1"


class TiltCommand(StreamCommand):
    """Move the crop centre vertically (0 = top … 1 = bottom)."""

    type: Literal["tilt"]
    value: float = Field(ge=0, le=1)

    words = ("value",)
    usage = "tilt [STREAM] 0…1"


class ZoomCommand(StreamCommand):
    """Zoom to a factor, start zooming in / out until `stop`, or set the camera's greatest zoom (`max`: the view goes
    back to the whole field, as PiStreamer's `max_zoom` does)."""

    type: Literal["zoom"]
    value: float | None = Field(None, ge=1, le=64, description="zoom factor, 1 = the whole field of view")
    action: Literal["in", "out", "stop"] | None = None
    max: float | None = Field(None, ge=1, le=64, description="the greatest zoom from now on (until a restart)")

    words = ("value",)
    usage = "zoom [STREAM] FACTOR|in|out|stop"

    @model_validator(mode="after")
    def _one(self) -> ZoomCommand:
        if sum(field is not None for field in (self.value, self.action, self.max)) != 1:
            raise ValueError("give one of value (a zoom factor), action (in, out, stop) or max (the greatest zoom)")
        return self

    @classmethod
    def from_words(cls, words: list[str]) -> dict[str, Any]:
        if not words:
            return {}  # `zoom cam0 max=8`: the fields come as key=value
        if len(words) != 1:
            raise ValueError(f"zoom needs one value; {cls.usage}")
        word = words[0].lower()
        if word in ("in", "out", "stop"):
            return {"action": word}
        try:
            return {"value": float(word)}
        except ValueError:
            raise ValueError(f"zoom: {words[0]!r} is not a number, in, out or stop") from None


class MoveCommand(StreamCommand):
    """Start, change or stop (all zero) a velocity move; it stops by itself after `duration_s`, so a joystick resends
    it while held."""

    type: Literal["move"]
    pan_per_s: float = Field(0.0, ge=-10, le=10, description="crop widths per second, + = right")
    tilt_per_s: float = Field(0.0, ge=-10, le=10, description="crop heights per second, + = down")
    zoom_per_s: float = Field(0.0, ge=-10, le=10, description="log rate: zoom × e^(rate·s), + = in")
    duration_s: float = Field(2.0, gt=0, le=MAX_MOVE_S, description="the move stops after this long")

    words = ("pan_per_s", "tilt_per_s", "zoom_per_s", "duration_s")
    usage = "move [STREAM] PAN_PER_S [TILT_PER_S [ZOOM_PER_S [DURATION_S]]]"


class PresetCommand(StreamCommand):
    """Save (the current view, or the pan/tilt/zoom given), recall or delete a named view; `home` always exists."""

    type: Literal["preset"]
    action: Literal["save", "recall", "delete"] = "recall"
    name: str = Field("home", pattern=NAME)
    pan: float | None = Field(None, ge=0, le=1, description="save: this pan instead of the current one")
    tilt: float | None = Field(None, ge=0, le=1, description="save: this tilt instead of the current one")
    zoom: float | None = Field(None, ge=1, le=64, description="save: this zoom instead of the current one")

    words = ("action", "name")
    usage = "preset [STREAM] [save|recall|delete] [NAME]"

    @model_validator(mode="after")
    def _view_only_to_save(self) -> PresetCommand:
        if self.action != "save" and (self.pan, self.tilt, self.zoom) != (None, None, None):
            raise ValueError("pan, tilt and zoom are given only to save a preset")
        return self

    @classmethod
    def from_words(cls, words: list[str]) -> dict[str, Any]:
        if words and words[0].lower() in ("save", "recall", "delete"):
            return super().from_words([words[0].lower(), *words[1:]])
        if len(words) > 1:
            raise ValueError(f"too many values {words!r}; {cls.usage}")
        return {"name": words[0]} if words else {}


class StereoCommand(StreamCommand):
    """Move both eyes together (pan, tilt, zoom) and/or set the vergence: the eyes' crops turned in (+) or out (−)."""

    type: Literal["stereo"]
    pan: float | None = Field(None, ge=0, le=1)
    tilt: float | None = Field(None, ge=0, le=1)
    zoom: float | None = Field(None, ge=1, le=64)
    vergence: float | None = Field(
        None, ge=-0.5, le=0.5, description="disparity as a fraction of the crop width, + converges"
    )

    words = ("vergence",)
    usage = "stereo [STREAM] [VERGENCE] [pan=… tilt=… zoom=…]"


class TrackCommand(StreamCommand):
    """Follow a target with the crop: what is at a point or inside a box (% of the frame) in the next frame, or `stop`.
    The zoom stays as it is; a pan, tilt, move or preset recall stops tracking."""

    type: Literal["track"]
    action: Literal["start", "stop"] = "start"
    x: float | None = Field(None, ge=0, le=100, description="start: the target's centre, % of the width")
    y: float | None = Field(None, ge=0, le=100, description="start: the target's centre, % of the height")
    box: tuple[float, float, float, float] | None = Field(
        None, description="start: the target's box, x1, y1, x2, y2 in % of the frame (x2 > x1, y2 > y1)"
    )
    point_px: tuple[float, float] | None = Field(
        None,
        description="start: the target's centre in pixels of the stream's picture (PiStreamer's init_tracking_poi)",
    )

    words = ("value",)
    usage = "track [STREAM] X,Y|X1,Y1,X2,Y2|stop"

    @model_validator(mode="after")
    def _one_target(self) -> TrackCommand:
        given = [name for name in ("point", "box", "point_px") if self._given(name)]
        if self.action == "stop":
            if given:
                raise ValueError("stop takes no target")
            return self
        if (self.x is None) != (self.y is None):
            raise ValueError("a point needs both x and y")
        if len(given) != 1:
            raise ValueError("give one target: x and y (a point), box (x1, y1, x2, y2), or point_px")
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            if not all(0 <= value <= 100 for value in self.box) or x2 <= x1 or y2 <= y1:
                raise ValueError(f"box corners are in % (0 … 100) with x2 > x1 and y2 > y1, got {list(self.box)}")
        return self

    def _given(self, name: str) -> bool:
        if name == "point":
            return self.x is not None
        return getattr(self, name) is not None

    @classmethod
    def from_words(cls, words: list[str]) -> dict[str, Any]:
        if len(words) != 1:
            raise ValueError(f"expected one value; {cls.usage}")
        word = words[0].lower()
        if word == "stop":
            return {"action": "stop"}
        values = word.split(",")
        if len(values) == 2:
            return {"x": values[0], "y": values[1]}
        if len(values) == 4:
            return {"box": values}
        raise ValueError(f"expected X,Y or X1,Y1,X2,Y2 (% of the frame) or stop, got {words[0]!r}")


class FlipCommand(StreamCommand):
    """Mirror one camera (a backend may restart that camera, never another)."""

    type: Literal["flip"]
    horizontal: bool = False
    vertical: bool = False

    words = ("mirror",)
    usage = "flip [STREAM] h|v|hv|none"
    _MIRRORS: ClassVar[dict[str, tuple[bool, bool]]] = {
        "h": (True, False),
        "v": (False, True),
        "hv": (True, True),
        "vh": (True, True),
        "both": (True, True),
        "none": (False, False),
        "off": (False, False),
    }

    @classmethod
    def from_words(cls, words: list[str]) -> dict[str, Any]:
        if len(words) > 1 or (words and words[0].lower() not in cls._MIRRORS):
            raise ValueError(f"flip takes one of h, v, hv, none; {cls.usage}")
        horizontal, vertical = cls._MIRRORS[words[0].lower()] if words else (False, False)
        return {"horizontal": horizontal, "vertical": vertical}


class PauseCommand(StreamCommand):
    """Hold (or release) one camera's picture; the others go on."""

    type: Literal["pause"]
    paused: bool = True

    words = ("paused",)
    usage = "pause [STREAM] [on|off]"


# ---- processing: overlays, regions of interest, stabilization, plugins


class TextItemModel(BaseModel):
    """A line of text drawn on the picture."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    text: str = Field(max_length=200)
    x_pct: float = Field(ge=0, le=100)
    y_pct: float = Field(ge=0, le=100)
    colour: str = "white"
    size_pct: float = Field(4.0, gt=0, le=50)

    _check_colour = field_validator("colour")(_colour)


class OverlayChange(BaseModel):
    """Which overlays a stream draws; any subset changes, the rest stay."""

    timestamp: bool | None = None
    timestamp_format: str | None = Field(None, min_length=1, max_length=100)
    crosshair: bool | None = None
    grid: bool | None = None
    rec: bool | None = None
    zoom: bool | None = None
    rois: bool | None = None
    texts: list[TextItemModel] | None = Field(None, max_length=MAX_TEXTS)


class OverlayCommand(OverlayChange, StreamCommand):
    """Turn overlays on or off (timestamp, timestamp_format, crosshair, grid, rec, zoom, rois, texts)."""

    type: Literal["overlay"]

    usage = "overlay [STREAM] grid=on crosshair=off …"


class Roi(BaseModel):
    """A region of interest, corners in % of the frame."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    x1: float = Field(ge=0, le=100, description="left edge, % of the width")
    y1: float = Field(ge=0, le=100, description="top edge, % of the height")
    x2: float = Field(ge=0, le=100, description="right edge, % of the width, > x1")
    y2: float = Field(ge=0, le=100, description="bottom edge, % of the height, > y1")
    colour: str = Field("lime", description="a colour name (red, lime, …) or #rrggbb")

    _check_colour = field_validator("colour")(_colour)

    @model_validator(mode="after")
    def _ordered(self) -> Roi:
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError(f"x2 must be > x1 and y2 > y1, got ({self.x1}, {self.y1}) … ({self.x2}, {self.y2})")
        return self


class RoiCommand(StreamCommand):
    """Create or replace (`set`, with corners in %) or `delete` a named region of interest."""

    type: Literal["roi"]
    action: Literal["set", "delete"]
    name: str = Field(pattern=NAME)
    x1: float | None = Field(None, ge=0, le=100, description="set: left edge, % of the width")
    y1: float | None = Field(None, ge=0, le=100, description="set: top edge, % of the height")
    x2: float | None = Field(None, ge=0, le=100, description="set: right edge, % of the width, > x1")
    y2: float | None = Field(None, ge=0, le=100, description="set: bottom edge, % of the height, > y1")
    colour: str | None = Field(None, description="set: a colour name (red, lime, …) or #rrggbb (default lime)")

    words = ("action", "name")
    usage = "roi [STREAM] set|delete NAME [x1=… y1=… x2=… y2=… colour=…]"

    @model_validator(mode="after")
    def _corners_to_set(self) -> RoiCommand:
        corners = (self.x1, self.y1, self.x2, self.y2)
        if self.action == "set":
            self.roi()  # x1 … y2 given, ordered, and the colour known
        elif corners != (None, None, None, None) or self.colour is not None:
            raise ValueError("corners and colour are given only to set an ROI")
        return self

    def roi(self) -> Roi:
        """The region a `set` gives (ValueError naming what is missing or wrong)."""
        missing = [key for key in ("x1", "y1", "x2", "y2") if getattr(self, key) is None]
        if missing:
            raise ValueError(f"set needs {', '.join(missing)}")
        values = {
            key: getattr(self, key) for key in ("x1", "y1", "x2", "y2", "colour") if getattr(self, key) is not None
        }
        return Roi(**values)


class StabilizeCommand(StreamCommand):
    """Turn stabilization of a stream on or off (either way it starts from a clean trajectory)."""

    type: Literal["stabilize"]
    enabled: bool = True

    words = ("enabled",)
    usage = "stabilize [STREAM] [on|off]"


class PluginCommand(StreamCommand):
    """Load (`add`: a file in [processing] plugin_dir or one of vergence's modules), `enable`, `disable` or `remove` a
    plugin; one added is kept across restarts."""

    type: Literal["plugin"]
    action: Literal["add", "enable", "disable", "remove"]
    name: str = Field("", pattern=r"^[A-Za-z0-9_.-]{0,40}$", description="plugin name (add: default from path)")
    path: str | None = Field(None, min_length=1, description="add: a .py file in [processing] plugin_dir")
    module: str | None = Field(None, min_length=1, description="add: or a module, e.g. vergence.plugins.motion")
    options: dict[str, Any] | None = Field(None, description="add: passed to the plugin as ctx.options")
    enabled: bool | None = Field(None, description="add: run it from the start (default true)")

    words = ("action", "name")
    usage = "plugin [STREAM] add|enable|disable|remove NAME [module=… path=…]"

    @model_validator(mode="after")
    def _what_each_needs(self) -> PluginCommand:
        if self.action == "add":
            if (self.path is None) == (self.module is None):
                raise ValueError("add needs either path or module")
            return self
        if not self.name:
            raise ValueError(f"{self.action} needs the plugin's name")
        if (self.path, self.module, self.options, self.enabled) != (None, None, None, None):
            raise ValueError("path, module, options and enabled are given only to add a plugin")
        return self


# ---- encoding, recording, stills


class BitrateCommand(StreamCommand):
    """Set a stream's H.264 bitrate (every H.264 consumer of the stream shares its encoder)."""

    type: Literal["bitrate"]
    kbps: int = Field(ge=100, le=50_000, description="kbit/s, 100 … 50000")

    words = ("kbps",)
    usage = "bitrate [STREAM] KBPS"


class RecordCommand(StreamCommand):
    """Start or stop recording a stream to MP4 (H.264 as encoded, no re-encoding)."""

    type: Literal["record"]
    action: Literal["start", "stop"] = "start"
    name: MediaName | None = Field(None, description="file name prefix (default: none, the file is stream and time)")

    words = ("action",)
    usage = "record [STREAM] [start|stop|NAME]"

    @classmethod
    def from_words(cls, words: list[str]) -> dict[str, Any]:
        if len(words) > 1:
            raise ValueError(f"too many values {words!r}; {cls.usage}")
        if not words or words[0].lower() in ("start", "stop"):
            return {"action": words[0].lower() if words else "start"}
        return {"action": "start", "name": words[0]}


class ClipCommand(StreamCommand):
    """Save a clip: the pre-event buffer (the last [recording] pre_event_s seconds) and `post_s` seconds from now."""

    type: Literal["clip"]
    post_s: float | None = Field(
        None, ge=0, le=3600, description="seconds after now (default [recording] post_event_s)"
    )
    name: MediaName | None = Field(None, description="file name prefix (default: none, the file is stream and time)")

    words = ("post_s",)
    usage = "clip [STREAM] [POST_S]"


class PhotoCommand(StreamCommand):
    """Save a still of a stream as a JPEG with EXIF: full sensor resolution where the camera can, else the newest frame."""

    type: Literal["photo"]
    name: MediaName | None = Field(None, description="file name without extension (default: stream and time)")
    path: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="or a .jpg file's absolute path inside one of [media] photo_dirs (PiStreamer's take_photo)",
    )

    @model_validator(mode="after")
    def _one_place(self) -> PhotoCommand:
        if self.name is not None and self.path is not None:
            raise ValueError("give name or path, not both")
        return self

    words = ("name",)
    usage = "photo [STREAM] [NAME]"


class GpsCommand(Command):
    """Tell vergence where the camera is: photos taken from now on carry the position in their EXIF."""

    type: Literal["gps"]
    lat: float = Field(ge=-90, le=90, description="latitude, degrees north")
    lon: float = Field(ge=-180, le=180, description="longitude, degrees east")
    alt_m: float | None = Field(None, ge=-1000, le=100_000, description="altitude above sea level, m")

    words = ("position",)
    usage = "gps LAT,LON[,ALT_M]"

    @classmethod
    def from_words(cls, words: list[str]) -> dict[str, Any]:
        if not words:
            return {}
        parts = words[0].split(",")
        if len(words) > 1 or not 2 <= len(parts) <= 3:
            raise ValueError(f"gps: expected LAT,LON[,ALT_M], got {' '.join(words)!r}")
        return dict(zip(("lat", "lon", "alt_m"), parts, strict=False))


class AttitudeCommand(Command):
    """Tell vergence how the camera is held and what it is: photos taken from now on carry it in their EXIF (lens focal
    length, model) and XMP (pitch and roll, as photogrammetry software reads them)."""

    type: Literal["attitude"]
    pitch_deg: float | None = Field(None, ge=-180, le=180, description="camera pitch, degrees (up is positive)")
    roll_deg: float | None = Field(None, ge=-180, le=180, description="camera roll, degrees (right side down positive)")
    model: str | None = Field(None, min_length=1, max_length=64, description="camera model for the EXIF")
    focal_length_mm: float | None = Field(None, gt=0, le=10_000, description="lens focal length, mm")

    words = ()
    usage = "attitude pitch_deg=P roll_deg=R [model=M] [focal_length_mm=F]"


# ---- outputs


class DestinationCommand(OutputCommand):
    """Send a UDP output somewhere else."""

    type: Literal["destination"]
    host: str | None = Field(None, min_length=1, max_length=253)
    port: int | None = Field(None, ge=1, le=65535)

    words = ("address",)
    usage = "destination [OUTPUT] HOST:PORT"

    @model_validator(mode="after")
    def _some(self) -> DestinationCommand:
        if self.host is None and self.port is None:
            raise ValueError("give host, port or both")
        return self

    @classmethod
    def from_words(cls, words: list[str]) -> dict[str, Any]:
        if len(words) > 1:
            raise ValueError(f"too many values {words!r}; {cls.usage}")
        if not words:
            return {}
        host, sep, port = words[0].rpartition(":")
        if not sep or not host:
            raise ValueError(f"destination: expected HOST:PORT, got {words[0]!r}")
        return {"host": host.strip("[]"), "port": port}


class ProtocolCommand(OutputCommand):
    """Switch a UDP output between RTP and MPEG-TS."""

    type: Literal["protocol"]
    protocol: Literal["rtp", "mpegts"]

    words = ("protocol",)
    usage = "protocol [OUTPUT] rtp|mpegts"


class OutputSwitchCommand(OutputCommand):
    """Start or stop an output (UDP or restream)."""

    type: Literal["output"]
    action: Literal["start", "stop"]

    words = ("action",)
    usage = "output [OUTPUT] start|stop"


class StatusCommand(Command):
    """Return the whole control state, the streams, the outputs and the recordings."""

    type: Literal["status"]

    usage = "status"


MODELS: tuple[type[Command], ...] = (
    PtzCommand,
    PanCommand,
    TiltCommand,
    ZoomCommand,
    MoveCommand,
    PresetCommand,
    StereoCommand,
    TrackCommand,
    FlipCommand,
    PauseCommand,
    OverlayCommand,
    RoiCommand,
    StabilizeCommand,
    PluginCommand,
    BitrateCommand,
    RecordCommand,
    ClipCommand,
    PhotoCommand,
    GpsCommand,
    AttitudeCommand,
    DestinationCommand,
    ProtocolCommand,
    OutputSwitchCommand,
    StatusCommand,
)
AnyCommand = Annotated[
    PtzCommand
    | PanCommand
    | TiltCommand
    | ZoomCommand
    | MoveCommand
    | PresetCommand
    | StereoCommand
    | TrackCommand
    | FlipCommand
    | PauseCommand
    | OverlayCommand
    | RoiCommand
    | StabilizeCommand
    | PluginCommand
    | BitrateCommand
    | RecordCommand
    | ClipCommand
    | PhotoCommand
    | GpsCommand
    | AttitudeCommand
    | DestinationCommand
    | ProtocolCommand
    | OutputSwitchCommand
    | StatusCommand,
    Field(discriminator="type"),
]
ANY_COMMAND: TypeAdapter[AnyCommand] = TypeAdapter(AnyCommand)
BY_TYPE: dict[str, type[Command]] = {
    model.model_fields["type"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in MODELS
}
COMMAND_TYPES = sorted(BY_TYPE)


def command_schema() -> dict[str, Any]:
    """The JSON Schema of a command: one of the command models, told apart by `type`."""
    return ANY_COMMAND.json_schema()


def fields_of(model: type[Command]) -> dict[str, Any]:
    """The JSON Schema of a command's own fields (not `type`, `id` or its target), for a REST body that carries them."""
    schema = model.model_json_schema()
    hidden = {"type", "id", model.target}
    properties = {key: value for key, value in schema["properties"].items() if key not in hidden}
    body: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if "$defs" in schema:
        body["$defs"] = schema["$defs"]
    required = [key for key in schema.get("required", []) if key not in hidden]
    if required:
        body["required"] = required
    return body


def command_table() -> str:
    """The command vocabulary as the Markdown table docs/protocol.md holds (`vergence commands` prints it)."""
    rows = [
        "| type | JSON fields (besides `type`, `id`) | text form | what it does |",
        "|---|---|---|---|",
    ]
    for kind in COMMAND_TYPES:
        model = BY_TYPE[kind]
        fields = []
        for name, field in model.model_fields.items():
            if name in ("type", "id"):
                continue
            fields.append(f"`{name}`" if field.is_required() else f"`{name}`?")
        summary = (model.__doc__ or "").strip().replace("\n", " ")
        summary = " ".join(summary.split())
        usage = model.usage.replace("|", "\\|")  # a bar inside a table cell, even in code, ends the cell
        rows.append(f"| `{kind}` | {', '.join(fields) or '—'} | `{usage}` | {summary} |")
    return "\n".join(rows) + "\n"
