"""The one command model: JSON and `<type> <value>` lines (PiStreamer's names included) parse to the same commands."""

from __future__ import annotations

import json

import pytest

from tests.aio import run
from vergence.control.commander import Commander
from vergence.control.commands import (
    COMMAND_TYPES,
    BitrateCommand,
    DestinationCommand,
    parse_command,
)
from vergence.errors import CommandError


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("zoom 2.5", {"type": "zoom", "value": 2.5}),
        ("zoom in", {"type": "zoom", "action": "in"}),
        ("ZOOM stop", {"type": "zoom", "action": "stop"}),
        ("zoom 3 camera=cam1", {"type": "zoom", "value": 3, "camera": "cam1"}),
        ("pan 0.25", {"type": "pan", "value": 0.25}),
        ("tilt 1", {"type": "tilt", "value": 1}),
        ("bitrate 2500", {"type": "bitrate", "kbps": 2500}),
        ("ip 192.168.1.85", {"type": "destination", "host": "192.168.1.85"}),
        ("gcs_ip 10.0.0.2", {"type": "destination", "host": "10.0.0.2"}),
        ("port 5600", {"type": "destination", "port": 5600}),
        ("gcs_host 10.0.0.2:5601", {"type": "destination", "host": "10.0.0.2", "port": 5601}),
        ("destination [::1]:5000", {"type": "destination", "host": "::1", "port": 5000}),
        ("stream stop", {"type": "stream", "action": "stop"}),
        ("start_gcs_stream", {"type": "stream", "action": "start"}),
        ("stop_gcs_stream output=ground", {"type": "stream", "action": "stop", "output": "ground"}),
        ("protocol mpegts", {"type": "protocol", "protocol": "mpegts"}),
        ("record", {"type": "record", "action": "start"}),
        ("record flight-3", {"type": "record", "action": "start", "name": "flight-3"}),
        ("stop_recording", {"type": "record", "action": "stop"}),
        ("photo", {"type": "photo"}),
        ("take_photo north", {"type": "photo", "name": "north"}),
        ("stabilize off", {"type": "stabilize", "enabled": False}),
        ("stabilize", {"type": "stabilize", "enabled": True}),
        ("preset recall home", None),  # two values: refused below
        ("status", {"type": "status"}),
    ],
)
def test_text_lines_parse_to_commands(line: str, expected: dict[str, object] | None) -> None:
    if expected is None:
        with pytest.raises(CommandError):
            parse_command(line)
        return
    command = parse_command(line)
    dumped = command.model_dump(exclude_none=True)
    defaults = {key: value for key, value in dumped.items() if key not in expected}
    assert {key: dumped[key] for key in expected} == expected, dumped
    assert all(key not in ("value", "host", "port", "name") for key in defaults), dumped


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
        ({"type": "warp"}, "unknown_command", "commands: bitrate"),
        ("zoom", "invalid", "zoom needs a value"),
        ("zoom 99", "invalid", "less than or equal to 64"),
        ("zoom sideways", "invalid", "not a number"),
        ("pan nan", "invalid", "not a finite number"),
        ("bitrate 5", "invalid", "kbps"),
        ("destination 10.0.0.2", "invalid", "HOST:PORT"),
        ("port 70000", "invalid", "port"),
        ("protocol webrtc", "invalid", "protocol"),
        ("stabilize maybe", "invalid", "on or off"),
        ({"type": "zoom"}, "invalid", "give either value"),
        ({"type": "zoom", "value": 2, "speed": 3}, "invalid", "speed"),
        ({"type": "destination"}, "invalid", "host, port or both"),
        ("record ../etc/passwd", "invalid", "name"),
        ('{"type": "zoom", "value": 2', "invalid", "invalid JSON"),
        # Found by fuzzing: JSON text Python reads but JSON cannot carry, which a reply then echoed (a 500 over REST).
        ('{"type": "zoom", "value": 2, "id": NaN}', "invalid", "NaN is not a JSON number"),
        ('{"type": "zoom", "value": 1e999}', "invalid", "out of range"),
        ('{"type": "status", "id": "\\udcff"}', "invalid", "lone surrogate"),
        ('{"type": "status", "id": ' + "[" * 5000 + "]" * 5000 + "}", "invalid", "nested deeper"),
        ([1, 2], "command_error", "JSON object"),
        ("", "command_error", "empty command"),
    ],
)
def test_bad_commands_say_what_is_wrong(raw: object, code: str, fragment: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(raw)
    assert caught.value.code == code
    assert fragment in str(caught.value)


def test_a_refused_commands_reply_is_json_whatever_its_id_was() -> None:
    """Found by fuzzing: `{"type": "zoom", "id": NaN}` over REST was a 500 (the reply echoed NaN, JSON has none)."""
    commander = Commander(vergence=None)  # type: ignore[arg-type]  # refused before it reaches a server
    for raw in ('{"type": "zoom", "id": NaN}', b'{"type": "zoom", "id": 1e999}', '{"type": "zoom", "id": "\\ud800"}'):
        reply = run(commander.handle(raw))  # a fresh thread: Playwright's loop may run in this one
        assert reply["ok"] is False and reply["code"] == "invalid" and "id" not in reply, reply
        json.dumps(reply, allow_nan=False).encode()  # what a JSON response and a WebSocket frame need


def test_every_command_type_has_a_documented_text_form() -> None:
    from pathlib import Path

    protocol = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    for kind in COMMAND_TYPES:
        assert f'| `{{"type": "{kind}"' in protocol, f"command {kind} is not in docs/protocol.md"


def test_destination_needs_something_to_change() -> None:
    command = parse_command("port 5602")
    assert isinstance(command, DestinationCommand) and command.host is None and command.port == 5602
