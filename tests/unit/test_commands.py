"""The one command model: JSON and `<type> <value>` lines (PiStreamer's names included) parse to the same commands."""

from __future__ import annotations

import json

import pytest

from tests.aio import run
from vergence.config import Settings
from vergence.control.commander import Commander, error_reply, reply
from vergence.control.commands import (
    COMMAND_TYPES,
    BitrateCommand,
    DestinationCommand,
    FlipCommand,
    OutputSwitchCommand,
    RoiCommand,
    command_table,
)
from vergence.control.parsing import parse_command
from vergence.errors import HTTP_STATUS, CommandError, InvalidCommand, NotFound
from vergence.streams import Streams


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("zoom 2.5", {"type": "zoom", "value": 2.5}),
        ("zoom in", {"type": "zoom", "action": "in"}),
        ("ZOOM stop", {"type": "zoom", "action": "stop"}),
        ("zoom 3 camera=cam1", {"type": "zoom", "value": 3, "stream": "cam1"}),  # `camera`, the older name
        ("zoom 3 stream=cam1", {"type": "zoom", "value": 3, "stream": "cam1"}),
        ("zoom cam1 2", {"type": "zoom", "value": 2, "stream": "cam1"}),
        ("pan 0.25", {"type": "pan", "value": 0.25}),
        ("tilt 1", {"type": "tilt", "value": 1}),
        ("bitrate 2500", {"type": "bitrate", "kbps": 2500}),
        ("ip 192.168.1.85", {"type": "destination", "host": "192.168.1.85"}),
        ("gcs_ip 10.0.0.2", {"type": "destination", "host": "10.0.0.2"}),
        ("port 5600", {"type": "destination", "port": 5600}),
        ("gcs_host 10.0.0.2:5601", {"type": "destination", "host": "10.0.0.2", "port": 5601}),
        ("destination [::1]:5000", {"type": "destination", "host": "::1", "port": 5000}),
        ("stream stop", {"type": "output", "action": "stop"}),
        ("stream start", {"type": "output", "action": "start"}),
        ("start_gcs_stream", {"type": "output", "action": "start"}),
        ("stop_gcs_stream output=ground", {"type": "output", "action": "stop", "output": "ground"}),
        ("output gcs stop", {"type": "output", "action": "stop", "output": "gcs"}),
        ("output start", {"type": "output", "action": "start"}),
        ("protocol mpegts", {"type": "protocol", "protocol": "mpegts"}),
        ("record", {"type": "record", "action": "start"}),
        ("record flight-3", {"type": "record", "action": "start", "name": "flight-3"}),
        ("stop_recording", {"type": "record", "action": "stop"}),
        ("photo", {"type": "photo"}),
        ("take_photo north", {"type": "photo", "name": "north"}),
        ("stabilize off", {"type": "stabilize", "enabled": False}),
        ("stabilize", {"type": "stabilize", "enabled": True}),
        ("flip cam1 h", {"type": "flip", "stream": "cam1", "horizontal": True, "vertical": False}),
        ("flip hv", {"type": "flip", "horizontal": True, "vertical": True}),
        ("flip none", {"type": "flip", "horizontal": False, "vertical": False}),
        ("pause cam1 off", {"type": "pause", "stream": "cam1", "paused": False}),
        ("pause", {"type": "pause", "paused": True}),
        ("roi cam0 delete door", {"type": "roi", "stream": "cam0", "action": "delete", "name": "door"}),
        (
            "roi set door x1=10 y1=20 x2=30.5 y2=40 colour=red",
            {"type": "roi", "action": "set", "name": "door", "x1": 10, "y1": 20, "x2": 30.5, "y2": 40, "colour": "red"},
        ),
        (
            "plugin add motion module=vergence.plugins.motion",
            {"type": "plugin", "action": "add", "name": "motion", "module": "vergence.plugins.motion"},
        ),
        ("plugin cam1 disable motion", {"type": "plugin", "stream": "cam1", "action": "disable", "name": "motion"}),
        ("move 0.5", {"type": "move", "pan_per_s": 0.5, "tilt_per_s": 0, "zoom_per_s": 0, "duration_s": 2}),
        (
            "move cam1 0 -0.2 1 5",
            {"type": "move", "stream": "cam1", "tilt_per_s": -0.2, "zoom_per_s": 1, "duration_s": 5},
        ),
        ("preset home", {"type": "preset", "action": "recall", "name": "home"}),
        ("preset", {"type": "preset", "action": "recall", "name": "home"}),
        ("preset recall home", {"type": "preset", "action": "recall", "name": "home"}),
        ("preset save door", {"type": "preset", "action": "save", "name": "door"}),
        (
            "preset cam1 save door pan=0.25 zoom=2",
            {"type": "preset", "stream": "cam1", "action": "save", "name": "door", "pan": 0.25, "zoom": 2},
        ),
        ("preset delete door", {"type": "preset", "action": "delete", "name": "door"}),
        ("stereo 0.1", {"type": "stereo", "vergence": 0.1}),
        ("stereo zoom=2", {"type": "stereo", "zoom": 2}),
        ("status", {"type": "status"}),
    ],
)
def test_text_lines_parse_to_commands(line: str, expected: dict[str, object]) -> None:
    command = parse_command(line)
    dumped = command.model_dump(exclude_none=True)
    defaults = {key: value for key, value in dumped.items() if key not in expected}
    assert {key: dumped[key] for key in expected} == expected, dumped
    assert all(key not in ("value", "host", "port", "name", "stream", "output", "pan", "zoom") for key in defaults), (
        dumped
    )


def test_the_older_camera_key_is_read_as_stream() -> None:
    as_camera = parse_command({"type": "zoom", "camera": "cam1", "value": 2})
    as_stream = parse_command({"type": "zoom", "stream": "cam1", "value": 2})
    assert as_camera == as_stream and as_camera.stream == "cam1"
    assert "camera" not in as_camera.model_dump()
    roi = parse_command({"type": "roi", "camera": "cam2", "action": "delete", "name": "door"})
    assert isinstance(roi, RoiCommand) and roi.stream == "cam2"


def test_text_and_json_forms_of_the_new_commands_are_the_same_command() -> None:
    pairs = [
        ("flip cam1 h", {"type": "flip", "stream": "cam1", "horizontal": True}),
        ("roi cam0 delete door", {"type": "roi", "stream": "cam0", "action": "delete", "name": "door"}),
        ("output gcs stop", {"type": "output", "output": "gcs", "action": "stop"}),
        ("stereo 0.1", {"type": "stereo", "vergence": 0.1}),
        ("move cam0 0.5 0 0 1", {"type": "move", "stream": "cam0", "pan_per_s": 0.5, "duration_s": 1}),
    ]
    for line, fields in pairs:
        assert parse_command(line) == parse_command(fields), line
    assert isinstance(parse_command("flip cam1 h"), FlipCommand)
    assert isinstance(parse_command("stream stop"), OutputSwitchCommand)


def test_json_text_and_objects_are_the_same_command() -> None:
    as_object = parse_command({"type": "bitrate", "kbps": 1500, "id": "a"})
    as_text = parse_command('{"type": "bitrate", "kbps": 1500, "id": "a"}')
    as_bytes = parse_command(b"bitrate 1500 id=a")
    assert as_object == as_text
    assert isinstance(as_bytes, BitrateCommand) and as_bytes.kbps == 1500 and as_bytes.id == "a"


@pytest.mark.parametrize(
    ("raw", "code", "fragment"),
    [
        ("fly 2", "unknown_command", "unknown command 'fly'"),
        ({"type": "warp"}, "unknown_command", "commands: attitude, bitrate"),
        # Found by fuzzing: a type that is not a string (a list is not even hashable) was a 500 over REST.
        ({"type": [], "id": None}, "unknown_command", "unknown command []"),
        ('{"type": {"a": 1}}', "unknown_command", "unknown command"),
        ({"value": 2}, "unknown_command", "unknown command None"),
        ("zoom", "invalid", "give one of value"),
        ("zoom 99", "invalid", "less than or equal to 64"),
        ("zoom sideways", "invalid", "not a number"),
        ("pan nan", "invalid", "value: Input should be a finite number"),
        ("bitrate 5", "invalid", "kbps"),
        ("destination 10.0.0.2", "invalid", "HOST:PORT"),
        ("port 70000", "invalid", "port"),
        ("protocol webrtc", "invalid", "protocol"),
        ("stabilize cam0 maybe", "invalid", "enabled: Input should be a valid boolean"),
        ({"type": "zoom"}, "invalid", "give one of value"),
        ({"type": "zoom", "value": 2, "speed": 3}, "invalid", "speed"),
        ({"type": "destination"}, "invalid", "host, port or both"),
        ("record ../etc/passwd", "invalid", "name"),
        ('{"type": "zoom", "value": 2', "bad_request", "invalid JSON"),
        # Found by fuzzing: JSON text Python reads but JSON cannot carry, which a reply then echoed (a 500 over REST).
        ('{"type": "zoom", "value": 2, "id": NaN}', "bad_request", "NaN is not a JSON number"),
        ('{"type": "zoom", "value": 1e999}', "bad_request", "out of range"),
        ('{"type": "status", "id": "\\udcff"}', "bad_request", "lone surrogate"),
        ('{"type": "status", "id": ' + "[" * 5000 + "]" * 5000 + "}", "bad_request", "nested deeper"),
        (b"zoom \xff", "bad_request", "UTF-8"),
        ([1, 2], "bad_request", "JSON object"),
        ("", "invalid", "empty command"),
        ("   ", "invalid", "empty command"),
        # The new commands' text forms
        ("flip x", "invalid", "flip takes one of h, v, hv, none"),
        ("flip cam1 h v", "invalid", "flip takes one of"),
        ("roi set door", "invalid", "set needs x1, y1, x2, y2"),
        ("roi set door x1=10 y1=10 x2=60", "invalid", "set needs y2"),
        ("roi set door x1=50 y1=10 x2=20 y2=40", "invalid", "x2 must be > x1"),
        ("roi delete door x1=10", "invalid", "corners and colour are given only to set an ROI"),
        ("roi door", "invalid", "action"),
        ("move cam0 0.5", "invalid", "pan_per_s"),  # two values: a move's, not a stream and a move
        ("move 11", "invalid", "pan_per_s: Input should be less than or equal to 10"),
        ("move 0.5 0 0 31", "invalid", "duration_s"),
        ("preset home pan=0.5", "invalid", "pan, tilt and zoom are given only to save a preset"),
        ("preset recall home pan=0.5", "invalid", "pan, tilt and zoom are given only to save a preset"),
        ("preset delete door zoom=2", "invalid", "given only to save"),
        ("preset save ../x", "invalid", "name"),
        ("stereo 0.6", "invalid", "vergence: Input should be less than or equal to 0.5"),
        ("plugin add motion", "invalid", "add needs either path or module"),
        ("plugin disable", "invalid", "disable needs the plugin's name"),
        ("plugin enable motion module=vergence.plugins.motion", "invalid", "given only to add a plugin"),
        ("output gcs sideways", "invalid", "action"),
        ({"type": "zoom", "camera": "cam1", "stream": "cam2", "value": 2}, "invalid", "camera"),
    ],
)
def test_bad_commands_say_what_is_wrong(raw: object, code: str, fragment: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(raw)
    assert caught.value.code == code
    assert fragment in str(caught.value)
    assert code in HTTP_STATUS  # every refusal has a status over HTTP


def test_replies_have_one_shape() -> None:
    assert reply("a", "zoom", {"zoom": 2}) == {"ok": True, "command": "zoom", "result": {"zoom": 2}, "id": "a"}
    assert reply(None, "status", {}) == {"ok": True, "command": "status", "result": {}}
    refused = error_reply(7, NotFound("no preset 'door'"), "preset")
    assert refused == {"ok": False, "command": "preset", "code": "not_found", "error": "no preset 'door'", "id": 7}
    assert error_reply(None, InvalidCommand("bad")) == {"ok": False, "command": None, "code": "invalid", "error": "bad"}
    assert CommandError("busy").code == "conflict"
    assert (HTTP_STATUS["bad_request"], HTTP_STATUS["unknown_command"], HTTP_STATUS["invalid"]) == (400, 400, 422)
    assert (HTTP_STATUS["forbidden"], HTTP_STATUS["not_found"], HTTP_STATUS["conflict"]) == (403, 404, 409)
    assert (HTTP_STATUS["too_large"], HTTP_STATUS["unavailable"]) == (413, 503)


def refusing_commander() -> Commander:
    """A commander with nothing to command: every command here is refused before it would reach a part."""
    return Commander(Settings(), Streams(), None, {}, [], None)  # type: ignore[arg-type]


def test_a_refused_commands_reply_names_its_command_and_echoes_its_id() -> None:
    commander = refusing_commander()
    refused = run(commander.handle({"type": "zoom", "value": 99, "id": "z1"}))
    assert refused["ok"] is False and refused["command"] == "zoom" and refused["code"] == "invalid", refused
    assert refused["id"] == "z1" and "value" in refused["error"]
    refused = run(commander.handle('{"type": "flip", "horizontal": "sideways", "id": 3}'))
    assert (refused["command"], refused["code"], refused["id"]) == ("flip", "invalid", 3), refused
    refused = run(commander.handle("warp 9"))
    assert (refused["ok"], refused["command"], refused["code"]) == (False, None, "unknown_command"), refused
    refused = run(commander.handle([1, 2]))
    assert (refused["ok"], refused["command"], refused["code"]) == (False, None, "bad_request"), refused


def test_a_refused_commands_reply_is_json_whatever_its_id_was() -> None:
    """Found by fuzzing: `{"type": "zoom", "id": NaN}` over REST was a 500 (the reply echoed NaN, JSON has none)."""
    commander = refusing_commander()
    for raw in ('{"type": "zoom", "id": NaN}', b'{"type": "zoom", "id": 1e999}', '{"type": "zoom", "id": "\\ud800"}'):
        reply = run(commander.handle(raw))  # a fresh thread: Playwright's loop may run in this one
        assert reply["ok"] is False and reply["code"] == "bad_request" and "id" not in reply, reply
        json.dumps(reply, allow_nan=False).encode()  # what a JSON response and a WebSocket frame need


def test_every_command_type_has_a_documented_text_form() -> None:
    """docs/protocol.md holds the command table as the models generate it (`vergence.control.commands.command_table`),
    so the documented vocabulary is the one the server reads."""
    from pathlib import Path

    protocol = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    assert command_table() in protocol, "docs/protocol.md lacks the current command_table(): regenerate it"


def test_the_command_table_lists_every_command_type_with_its_text_form() -> None:
    table = command_table()
    for kind in COMMAND_TYPES:
        assert f"| `{kind}` |" in table, kind
    assert "`flip [STREAM] h\\|v\\|hv\\|none`" in table  # a bar inside a cell is escaped


def test_destination_needs_something_to_change() -> None:
    command = parse_command("port 5602")
    assert isinstance(command, DestinationCommand) and command.host is None and command.port == 5602
