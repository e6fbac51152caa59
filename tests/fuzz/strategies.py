"""Hypothesis strategies for what a hostile or broken client sends: control messages and commands that are well-formed
but wrong (the right `type`, its fields missing, extreme, of the wrong type or unknown), any JSON at all, and text or
bytes that are not JSON."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.harness import OUTPUTS, STREAMS
from vergence.control.commands import BY_TYPE, COMMAND_TYPES

# Numbers at and beyond every range the API has: 0 … 1, 1 … 64, ±10, ports, kbit/s, int64 and float64 limits.
EDGE_NUMBERS: tuple[Any, ...] = (
    0,
    -0.0,
    0.5,
    1,
    1.0000001,
    -1,
    2,
    8,
    10,
    -10,
    10.000001,
    30,
    64,
    65,
    100,
    65535,
    65536,
    50_000,
    2**31,
    2**53 + 1,
    2**63,
    -(2**63) - 1,
    10**30,
    10**400,  # a JSON integer no float holds
    1e-320,
    1e308,
    -1e308,
)
# What JSON text can carry but RFC 8259 JSON cannot: json.dumps writes NaN and Infinity as bare words and escapes lone
# surrogates. Each frame holds at most one of them (`unjsonable`), so most frames get past the JSON check.
NOT_JSON_VALUES = (float("nan"), float("inf"), float("-inf"), "\ud800", "\udcff", "a\udfffb")

numbers = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-2, max_value=70),
)
texts = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=10),
    st.sampled_from(("", " ", "home", "../../etc/passwd", "%s%n", "\x00", "ｚｏｏｍ", "🎥", "a" * 300)),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(texts, children, max_size=4)),
    max_leaves=12,
)


def deeply_nested(depth: int) -> str:
    """JSON text of `[[[…]]]` `depth` levels deep (written out: json.dumps itself stops at the recursion limit)."""
    return "[" * depth + "]" * depth


@st.composite
def often(draw: st.DrawFn, likely: st.SearchStrategy[Any], otherwise: st.SearchStrategy[Any]) -> Any:
    """`likely` three times in four, else `otherwise`: enough sane inputs to get past the first check into the handler.

    Not `one_of(likely, likely, likely, otherwise)`: Hypothesis steers towards choices it has not made yet, so once the
    few values of `likely` are used up, nearly every draw would go to `otherwise`.
    """
    return draw(likely if draw(st.integers(0, 99)) < 75 else otherwise)


def wild(*plausible: Any) -> st.SearchStrategy[Any]:
    """A field's value: mostly one of `plausible` (which holds wrong ones too), else an edge number, text or any JSON."""
    return often(st.sampled_from(plausible), st.one_of(numbers, texts, json_values))


cameras = often(st.sampled_from(STREAMS), wild("nope", "", "CAM0"))
unit = wild(0.0, 0.25, 1.0, 1.5, -0.1)
zoom = wild(1.0, 2.0, 8.0, 64.0, 0.5)
rate = wild(0.0, 1.0, -10.0, 10.5)
flags = wild(True, False, 0, 1, "true")
names = wild("home", "door", "a b", "x" * 41, "")
percent = wild(0.0, 10.0, 50.0, 100.0, 101.0)

# The control WebSocket's message types besides `command`, and their fields (docs/protocol.md, "Control WebSocket";
# control/transports/websocket.py).
CONTROL_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "ping": {"t": wild(0, 123.4, "t")},
    "report": {
        "stream": cameras,
        "player": wild("webcodecs", "mse", "mjpeg", "webrtc"),
        "fps": wild(30, 29.97, 0),
        "latency_ms": wild({"p50": 6.1, "p95": 9.8, "max": 14.0}, {}, {"p50": None}),
        "frames": wild(300, 0),
        "dropped": wild(0, 3),
    },
}
# The message kinds of the older protocol, each with the command whose fields it carried: no message kinds any more
# (commands go in the command envelope), so each must get an `unknown_message` error and change nothing.
LEGACY_KINDS: dict[str, str] = {
    "ptz": "ptz",
    "ptz_velocity": "move",
    "preset": "preset",
    "stereo": "stereo",
    "overlay": "overlay",
    "roi": "roi",
    "stabilize": "stabilize",
    "plugin": "plugin",
}

# Values for each command field by name: sane ones, wrong ones and junk.
_COMMAND_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "camera": cameras,
    "stream": cameras,
    "output": wild(*OUTPUTS, "nope"),
    "value": wild(0.5, 2, 64, 65, 0),
    "action": wild(
        "in",
        "out",
        "stop",
        "start",
        "save",
        "recall",
        "delete",
        "set",
        "add",
        "enable",
        "disable",
        "remove",
        "sideways",
        "rename",
        "load",
    ),  # fmt: skip
    "pan": unit,
    "tilt": unit,
    "zoom": zoom,
    "pan_per_s": rate,
    "tilt_per_s": rate,
    "zoom_per_s": rate,
    "duration_s": wild(0.1, 1, 30, 31, 0),
    "vergence": wild(0.0, 0.1, -0.5, 0.6),
    "horizontal": flags,
    "vertical": flags,
    "paused": flags,
    "name": wild("north", "home", "door", "flight-1", "motion", "edges", "nope", "a b", "x" * 81, "../up", ""),
    "kbps": wild(100, 2500, 99, 50_001),
    # Loopback and unresolvable names only: the fuzz must not send video to the world (the netns has no route out).
    "host": wild("127.0.0.1", "::1", "localhost", "no.such.host.invalid", "", "[::1]"),
    "port": wild(5600, 1, 65535, 0, 65536),
    "protocol": wild("rtp", "mpegts", "srt"),
    "post_s": wild(0, 0.5, 3600, 3601),
    "lat": wild(47.37, 90, -91),
    "lon": wild(8.54, 180, 181),
    "alt_m": wild(408, -1000, 100_001),
    "enabled": flags,
    "timestamp": flags,
    "timestamp_format": wild("%H:%M:%S.%f", "%", "%Q", "%%f", ""),
    "crosshair": flags,
    "grid": flags,
    "rec": flags,
    "rois": flags,
    "texts": wild([], [{"text": "hi", "x_pct": 5, "y_pct": 5}], [{"text": "x", "x_pct": 1e9, "y_pct": -1}]),
    "x1": percent,
    "y1": percent,
    "x2": percent,
    "y2": percent,
    "colour": wild("red", "lime", "#00ff00", "#0f0", "ultraviolet"),
    # Plugins or no module at all: the loader imports, and reloads, any module it is given (an operator may run code by
    # design); reloading the server's own modules is not an input that tests input validation.
    "module": wild("vergence.plugins.motion", "vergence.plugins.edges", "no_such_plugin", ""),
    "path": wild("/nonexistent/plugin.py", "", "/"),
    "options": wild({}, {"threshold": 25}, {"threshold": "high"}),
    "id": wild("a1", 7, None),
}
# A field whose name means something else in one command: an overlay's `zoom` is the zoom read-out on or off.
_TYPE_VALUES: dict[str, dict[str, st.SearchStrategy[Any]]] = {"overlay": {"zoom": flags}}
COMMAND_FIELDS = {kind: [name for name in model.model_fields if name != "type"] for kind, model in BY_TYPE.items()}


def _field_values(kind: str, name: str) -> st.SearchStrategy[Any]:
    special = _TYPE_VALUES.get(kind, {})
    return special[name] if name in special else _COMMAND_VALUES.get(name, json_values)


@st.composite
def command_fields(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """Any subset of the fields of command `kind` (its target sometimes by the older name, `camera`)."""
    fields: dict[str, Any] = {}
    for name in COMMAND_FIELDS.get(kind, []):
        if draw(st.integers(0, 2)):  # each field two times in three: required ones are often there, often not
            fields[name] = draw(_field_values(kind, name))
    if "stream" in fields and draw(st.integers(0, 3)) == 0:
        fields["camera"] = fields.pop("stream")
    return fields


@st.composite
def command_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A command as JSON: a known type with any subset of its fields (and sometimes a stranger), or an unknown type."""
    kind = draw(st.sampled_from(COMMAND_TYPES) if draw(st.integers(0, 99)) < 85 else wild("warp", "ZOOM"))
    command: dict[str, Any] = {"type": kind}
    if isinstance(kind, str):
        command.update(draw(command_fields(kind)))
    if draw(st.integers(0, 19)) == 0:
        command[draw(st.sampled_from(("id", "extra", "Type", "camera")))] = draw(json_values)
    if draw(st.integers(0, 19)) == 0:
        del command["type"]
    return command


_WORDS = (*COMMAND_TYPES, "gcs_ip", "gcs_port", "gcs_host", "take_photo", "start_gcs_stream", "stop_gcs_stream")
_WORDS += ("stop_recording", "ip", "port", "host", "stream", "ZOOM", "Zoom", "warp")
_VALUES = ("2", "0.5", "in", "out", "stop", "start", "on", "off", "nan", "inf", "-inf", "1e999", "0x10", "1_000")
_VALUES += ("10.0.0.2:5600", "[::1]:5600", ":5600", "host:", "47.3,8.5,408", "47.3,8.5", "1,2,3,4", "north", "")
# Targets and the words of the newer text forms: `zoom cam1 2`, `flip cam1 h`, `roi cam0 delete door`, `output udp0 stop`
_VALUES += ("cam0", "cam1", "stereo", "udp0", "h", "v", "hv", "none", "set", "delete", "save", "recall", "door")
_VALUES += ("add", "enable", "disable", "remove", "motion", "-0.2", "0.1")


@st.composite
def command_lines(draw: st.DrawFn) -> str:
    """A command as a text line: `<type> [value] [key=value …]` with real and made-up words, or any text at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.one_of(texts, st.text(max_size=200)))
    values = often(st.sampled_from(_VALUES), texts)
    words = [draw(often(st.sampled_from(_WORDS), texts))]
    words += draw(st.lists(values, max_size=3))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(often(st.sampled_from(sorted(_COMMAND_VALUES)), st.from_regex(r"[a-z_]{1,8}", fullmatch=True)))
        words.append(f"{key}={draw(values)}")
    separator = draw(st.sampled_from((" ", "  ", "\t", " \n ")))
    return separator.join(str(word) for word in words)


@st.composite
def control_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A `ping` or `report` with any subset of its fields, each of them sane or wild; or one of the older protocol's
    message kinds with the fields of its command."""
    kind = draw(
        st.sampled_from(sorted(CONTROL_FIELDS)) if draw(st.integers(0, 3)) else st.sampled_from(sorted(LEGACY_KINDS))
    )
    message: dict[str, Any] = {"type": kind}
    if kind in LEGACY_KINDS:
        message.update(draw(command_fields(LEGACY_KINDS[kind])))
    else:
        for name, values in CONTROL_FIELDS[kind].items():
            if draw(st.integers(0, 2)):
                message[name] = draw(values)
    if draw(st.integers(0, 7)) == 0:
        message[draw(texts)] = draw(json_values)
    return message


@st.composite
def command_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A `command` message: the command as an object, as text or as JSON text, with or without an id."""
    form = draw(st.integers(0, 9))
    message: dict[str, Any] = {"type": "command"}
    if form < 5:
        message["command"] = draw(often(command_objects(), json_values))
    elif form < 8:
        message["text"] = draw(often(command_lines(), json_values))
    elif form == 8:
        message["command"] = json.dumps(draw(command_objects()))
    if draw(st.booleans()):
        message["id"] = draw(_COMMAND_VALUES["id"])
    return message


@st.composite
def unjsonable(draw: st.DrawFn, messages: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A message with one value JSON cannot hold (NaN, ±Infinity, a lone surrogate) in a field or as a key."""
    message = dict(draw(messages))
    bad = draw(st.sampled_from(NOT_JSON_VALUES))
    if isinstance(bad, str) and draw(st.booleans()):
        message[bad] = 1
    else:
        message[draw(st.sampled_from(sorted(message) or ["type"]))] = bad
    return message


def dumps(value: Any) -> str:
    """JSON text as a careless client writes it: NaN and Infinity as bare words, lone surrogates escaped."""
    return json.dumps(value)


@st.composite
def control_frames(draw: st.DrawFn) -> str | bytes:
    """One WebSocket frame for /ws/control: mostly JSON messages, sometimes any JSON, text that is not JSON, or bytes."""
    choice = draw(st.integers(0, 19))
    if choice < 6:
        return dumps(draw(control_messages()))
    if choice < 15:
        return dumps(draw(command_messages()))
    if choice == 15:
        return dumps(draw(st.one_of(json_values, st.builds(lambda kind: {"type": kind}, json_values))))
    if choice == 16:
        return draw(st.one_of(st.text(max_size=100), st.sampled_from(("{", '{"type":', "[1,]", "NaN", "{'a': 1}"))))
    if choice == 17:
        return draw(st.binary(max_size=100))
    if choice == 18:
        depth = draw(st.sampled_from((31, 32, 33, 100, 1_000, 5_000)))
        kind, field = draw(st.sampled_from((("ping", "t"), ("report", "latency_ms"), ("command", "id"))))
        return f'{{"type": "{kind}", "{field}": {deeply_nested(depth)}}}'
    return dumps(draw(unjsonable(st.one_of(control_messages(), command_messages()))))
