"""Every command type over every transport: the same reply, the same resulting state, the same refusals.

One server (cameras cam0 and cam1, the stereo pair, a UDP output, MQTT to a real mosquitto, ZeroMQ, the SQLite inbox,
the FIFO, WebRTC) is shared by every transport. Each transport starts from the same state (reset over REST, then checked),
sends the same sequence of commands, which names every type of `COMMAND_TYPES`, and the same bad commands. Its replies,
the state read back between and after the commands, and its refusals must equal those of a reference run over REST.

Only what differs by nature is normalised: times and counters, the names of the photo and recordings each run makes
(unique per run: `…-via-<transport>`), and the position while or right after a velocity move. Transports that speak
JSON send the JSON form of each command; `vergence ctl`, the SQLite inbox and the FIFO (and the `-text` variants) send
its text line, which is checked to parse to the same command.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import zmq
from websockets.sync.client import connect

from tests.conftest import ServerProcess, free_port, start_server
from tests.mosquitto import Broker, Subscriber, running_mosquitto
from tests.polling import poll
from vergence.control.commands import BY_TYPE, COMMAND_TYPES
from vergence.control.parsing import parse_command

TOPIC = "vcmd"
TIMEOUT_S = 15.0  # generous: the machine is shared with other test runs
TAG, PORT = "<tag>", "<port>"  # filled per run: the transport's name, the UDP output's second destination port
STAMP = re.compile(r"\d{8}-\d{6}-\d{3}")  # a recording's file name stamp (first frame's local time)
RUN_TAG = re.compile(r"via-[a-z]+")

# ---- the commands


def _same(result: Any) -> Any:
    return result


def _blank(mapping: dict[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    """The mapping with the values of `keys` replaced (the keys stay, so a missing or extra key still shows)."""
    return {key: "~" if key in keys else value for key, value in mapping.items()}


POSITION = frozenset({"pan", "tilt", "zoom", "crop"})
OUTPUT_COUNTERS = frozenset(
    {
        "packets",
        "bytes",
        "bitrate_bps",
        "frames",
        "drops",
        "datagrams_dropped",
        "capture_to_wire_ms",
        "datagram_max_bytes",
        "ssrc",
        "last_error",
    }
)
RECORDING_COUNTERS = frozenset({"frames", "bytes", "started_ns", "drops", "duration_s"})
# Right after a start the recording may wait for a keyframe or already write: its state and file are not yet known.
RECORDING_STARTING = RECORDING_COUNTERS | {"state", "path", "segments", "pre_event_s"}


def _moved(result: dict[str, Any]) -> dict[str, Any]:
    """A velocity move's reply: where the camera is depends on how long the command took to arrive."""
    return _blank(result, POSITION)


def _plugin(described: dict[str, Any]) -> dict[str, Any]:
    """A plugin: its counters are timing; an enabled plugin runs on its own thread or inline, as its cost decides."""
    state = "running" if described.get("state") in ("branch", "inline") else described.get("state")
    return {**_blank(described, frozenset({"calls", "results", "call_ms"})), "state": state}


def _plugins(result: dict[str, Any]) -> dict[str, Any]:
    if "plugins" in result:
        return {**result, "plugins": [_plugin(p) for p in result["plugins"]]}
    return _plugin(result)


def _output(result: dict[str, Any]) -> dict[str, Any]:
    return _blank(result, OUTPUT_COUNTERS)


def _recording_started(result: dict[str, Any]) -> dict[str, Any]:
    return _blank(result, RECORDING_STARTING)


def _recording_stopped(result: dict[str, Any]) -> dict[str, Any]:
    """A stopped recording: its file is known, but whether a keyframe rolled it into a second segment is timing."""
    segments = sorted({STAMP.sub("<stamp>", segment["path"]) for segment in result["segments"]})
    return {**_blank(result, RECORDING_COUNTERS), "segments": segments}


def _photo(result: dict[str, Any]) -> dict[str, Any]:
    exif = _blank(result["exif"], frozenset({"time"}))
    return {**_blank(result, frozenset({"bytes", "capture_ns", "stall_ms"})), "exif": exif}


def _status(result: dict[str, Any]) -> dict[str, Any]:
    """The status that is state, not measurement: cameras, stereo, processing, what streams and outputs are set to."""
    return {
        "keys": sorted(result),
        "cameras": result["cameras"],
        "stereo": result["stereo"],
        "processing": {
            stream: {**processing, "plugins": [_plugin(p) for p in processing["plugins"]]}
            for stream, processing in result["processing"].items()
        },
        "streams": [_stream(stream) for stream in result["streams"]],
        "outputs": [_output(output) for output in result["outputs"]],
        "services": sorted(result["services"]),
        "recording": sorted(
            stream
            for stream, entry in result["recordings"].items()
            if entry.get("recording") or entry.get("clip", {}).get("recording")
        ),
    }


def _stream(described: dict[str, Any]) -> dict[str, Any]:
    return {key: described[key] for key in ("id", "width", "height", "fps", "bitrate_bps", "source")}


@dataclass(frozen=True)
class Cmd:
    """One command in its two spellings, and what of its reply is state (not timing) and so must match."""

    json: dict[str, Any]
    text: str
    view: Callable[[Any], Any] = _same

    @property
    def type(self) -> str:
        return str(self.json["type"])


@dataclass(frozen=True)
class Probe:
    """A read of state over REST between commands; `expect` is a part of it every transport must have produced."""

    path: str
    expect: dict[str, Any] = field(default_factory=dict)
    view: Callable[[Any], Any] = _same


@dataclass(frozen=True)
class Until:
    """Wait (with a deadline) until the status read over REST says something: a recording has a frame, a clip ended."""

    what: str
    check: Callable[[dict[str, Any]], bool]


def _recording_has_frames(status: dict[str, Any]) -> bool:
    entry = status["recordings"].get("cam0", {})
    return bool(entry.get("recording") and entry.get("frames", 0) > 0)


def _nothing_recording(status: dict[str, Any]) -> bool:
    return _status(status)["recording"] == []


H, V, HV, NONE = (
    {"horizontal": True, "vertical": False},
    {"horizontal": False, "vertical": True},
    {"horizontal": True, "vertical": True},
    {"horizontal": False, "vertical": False},
)

SEQUENCE: tuple[Cmd | Probe | Until, ...] = (
    Cmd({"type": "status"}, "status", _status),
    Cmd({"type": "ptz", "stream": "cam0", "pan": 0.3, "tilt": 0.6, "zoom": 2}, "ptz cam0 0.3 0.6 2"),
    Cmd({"type": "pan", "stream": "cam0", "value": 0.25}, "pan cam0 0.25"),
    Cmd({"type": "tilt", "stream": "cam0", "value": 0.7}, "tilt cam0 0.7"),
    Cmd({"type": "zoom", "stream": "cam0", "value": 3}, "zoom cam0 3"),
    Probe("/api/cameras/cam0/ptz", {"zoom": 3.0}),
    Cmd({"type": "zoom", "stream": "cam0", "action": "in"}, "zoom cam0 in", _moved),
    Cmd({"type": "zoom", "stream": "cam0", "action": "stop"}, "zoom cam0 stop", _moved),
    Cmd({"type": "zoom", "stream": "cam0", "max": 6}, "zoom cam0 max=6"),
    Probe("/api/cameras/cam0/ptz", {"zoom": 1.0, "max_zoom": 6.0}),
    # Tracking while the whole field is in view: the view cannot move, so every run leaves the same state.
    Cmd({"type": "track", "stream": "cam0", "x": 50, "y": 50}, "track cam0 50,50"),
    Cmd({"type": "track", "stream": "cam0", "action": "stop"}, "track cam0 stop"),
    Cmd(
        {"type": "move", "stream": "cam0", "pan_per_s": 0.5, "tilt_per_s": -0.25, "zoom_per_s": 0, "duration_s": 1},
        "move cam0 0.5 -0.25 0 1",
        _moved,
    ),
    Cmd(
        {"type": "move", "stream": "cam0", "pan_per_s": 0, "tilt_per_s": 0, "zoom_per_s": 0, "duration_s": 2},
        "move cam0 0 0 0 2",
        _moved,
    ),
    # Back to a known view after the moves: a preset saved with its values, then recalled.
    Cmd(
        {"type": "preset", "stream": "cam0", "action": "save", "name": "spot", "pan": 0.4, "tilt": 0.45, "zoom": 2},
        "preset cam0 save spot pan=0.4 tilt=0.45 zoom=2",
    ),
    Cmd({"type": "preset", "stream": "cam0", "action": "recall", "name": "spot"}, "preset cam0 recall spot"),
    # Without a stream: the first camera.
    Cmd({"type": "preset", "action": "save", "name": "door.view"}, "preset save door.view"),
    Cmd({"type": "preset", "action": "delete", "name": "door.view"}, "preset delete door.view"),
    Probe("/api/cameras/cam0/presets"),
    Cmd({"type": "stereo", "stream": "stereo", "vergence": 0.1, "zoom": 2}, "stereo stereo 0.1 zoom=2"),
    Cmd({"type": "ptz", "stream": "stereo", "pan": 0.45}, "ptz 0.45 stream=stereo"),
    Cmd({"type": "zoom", "stream": "stereo", "value": 2.5}, "zoom stereo 2.5"),
    Probe("/api/stereo"),
    # Flip and pause, each read back (the issue: they must work over MQTT and the FIFO too).
    Cmd({"type": "flip", "stream": "cam1", "horizontal": True}, "flip cam1 h"),
    Probe("/api/cameras/cam1/ptz", {"flip": H, "paused": False}),
    Cmd({"type": "flip", "stream": "cam0", "horizontal": True, "vertical": True}, "flip cam0 hv"),
    Probe("/api/cameras/cam0/ptz", {"flip": HV}),
    Cmd({"type": "flip", "stream": "cam0", "vertical": True}, "flip cam0 v"),
    Probe("/api/cameras/cam0/ptz", {"flip": V}),
    Cmd({"type": "pause", "stream": "cam1", "paused": True}, "pause cam1 on"),
    Probe("/api/cameras/cam1/ptz", {"flip": H, "paused": True}),
    Cmd({"type": "pause", "stream": "cam1", "paused": False}, "pause cam1 off"),
    Probe("/api/cameras/cam1/ptz", {"flip": H, "paused": False}),
    Cmd({"type": "pause", "stream": "cam1"}, "pause stream=cam1"),  # `pause` alone holds the picture
    Probe("/api/cameras/cam1/ptz", {"flip": H, "paused": True}),
    Cmd({"type": "flip", "stream": "cam0"}, "flip cam0 none"),
    Probe("/api/cameras/cam0/ptz", {"flip": NONE, "paused": False}),
    Cmd(
        {"type": "overlay", "stream": "cam0", "grid": True, "crosshair": True, "timestamp": True},
        "overlay cam0 grid=on crosshair=on timestamp=on",
    ),
    Cmd({"type": "overlay", "stream": "cam0", "crosshair": False}, "overlay cam0 crosshair=off"),
    Cmd(
        {"type": "roi", "stream": "cam0", "action": "set", "name": "door", "x1": 10, "y1": 20, "x2": 50, "y2": 60},
        "roi cam0 set door x1=10 y1=20 x2=50 y2=60",
    ),
    Cmd(
        {
            "type": "roi",
            "stream": "cam0",
            "action": "set",
            "name": "gate",
            "x1": 60,
            "y1": 5,
            "x2": 90.5,
            "y2": 40,
            "colour": "#ff8800",
        },
        "roi cam0 set gate x1=60 y1=5 x2=90.5 y2=40 colour=#ff8800",
    ),
    Cmd({"type": "roi", "stream": "cam0", "action": "delete", "name": "gate"}, "roi cam0 delete gate"),
    Probe("/api/cameras/cam0/rois"),
    Cmd({"type": "stabilize", "stream": "cam0", "enabled": True}, "stabilize cam0 on"),
    Cmd(
        {"type": "plugin", "stream": "cam0", "action": "add", "name": "edges", "module": "vergence.plugins.edges"},
        "plugin cam0 add edges module=vergence.plugins.edges",
        _plugins,
    ),
    Cmd(
        {
            "type": "plugin",
            "stream": "cam0",
            "action": "add",
            "name": "motion",
            "module": "vergence.plugins.motion",
            "enabled": False,
        },
        "plugin cam0 add motion module=vergence.plugins.motion enabled=off",
        _plugins,
    ),
    Cmd(
        {"type": "plugin", "stream": "cam0", "action": "disable", "name": "edges"},
        "plugin cam0 disable edges",
        _plugins,
    ),
    Cmd(
        {"type": "plugin", "stream": "cam0", "action": "enable", "name": "motion"},
        "plugin cam0 enable motion",
        _plugins,
    ),
    Cmd(
        {"type": "plugin", "stream": "cam0", "action": "remove", "name": "motion"},
        "plugin cam0 remove motion",
        _plugins,
    ),
    Cmd({"type": "bitrate", "stream": "cam0", "kbps": 1200}, "bitrate cam0 1200"),
    Cmd({"type": "gps", "lat": 51.5, "lon": -0.125, "alt_m": 20}, "gps 51.5,-0.125,20"),
    Cmd(
        {"type": "attitude", "pitch_deg": 5.0, "roll_deg": -2.0, "model": "IMX477", "focal_length_mm": 50.0},
        "attitude pitch_deg=5 roll_deg=-2 model=IMX477 focal_length_mm=50",
    ),
    Cmd({"type": "photo", "stream": "cam0", "name": f"shot-via-{TAG}"}, f"photo cam0 shot-via-{TAG}", _photo),
    Cmd(
        {"type": "record", "stream": "cam0", "action": "start", "name": f"rec-via-{TAG}"},
        f"record cam0 rec-via-{TAG}",
        _recording_started,
    ),
    Until("the recording's first frame", _recording_has_frames),
    Cmd({"type": "record", "stream": "cam0", "action": "stop"}, "record cam0 stop", _recording_stopped),
    Cmd(
        {"type": "clip", "stream": "cam0", "post_s": 0, "name": f"clip-via-{TAG}"},
        f"clip cam0 0 name=clip-via-{TAG}",
        _recording_started,
    ),
    Until("the clip's end", _nothing_recording),
    Cmd(
        {"type": "destination", "output": "udp0", "host": "127.0.0.1", "port": PORT},
        f"destination udp0 127.0.0.1:{PORT}",
        _output,
    ),
    Cmd({"type": "protocol", "output": "udp0", "protocol": "mpegts"}, "protocol udp0 mpegts", _output),
    Cmd({"type": "output", "output": "udp0", "action": "stop"}, "output udp0 stop", _output),
    Probe("/api/outputs/udp0", {"enabled": False, "protocol": "mpegts"}, _output),
    Cmd({"type": "output", "output": "udp0", "action": "start"}, "output udp0 start", _output),
    Cmd({"type": "preset", "stream": "cam1", "action": "recall", "name": "home"}, "preset cam1 recall home"),
    Cmd({"type": "status"}, "status", _status),
)


@dataclass(frozen=True)
class Bad:
    """A command every transport must refuse with `code`; `json` None: a text that is no command at all."""

    code: str
    command: str | None
    json: dict[str, Any] | None
    text: str
    unknown_target: bool = False  # names a stream or output that does not exist


def _not_found(fields: dict[str, Any], text: str) -> Bad:
    return Bad("not_found", str(fields["type"]), fields, text, unknown_target=True)


def _invalid(fields: dict[str, Any], text: str) -> Bad:
    return Bad("invalid", str(fields["type"]), fields, text)


BAD: tuple[Bad, ...] = (
    # a bad value of every type
    _invalid({"type": "ptz", "stream": "cam0", "pan": 0.5, "tilt": 0.5, "zoom": 0.5}, "ptz cam0 0.5 0.5 0.5"),
    _invalid({"type": "pan", "stream": "cam0", "value": 2}, "pan cam0 2"),
    _invalid({"type": "tilt", "stream": "cam0", "value": -1}, "tilt cam0 -1"),
    _invalid({"type": "zoom", "stream": "cam0", "value": 99}, "zoom cam0 99"),
    _invalid({"type": "zoom", "stream": "cam0", "value": "sideways"}, "zoom cam0 sideways"),
    _invalid({"type": "move", "stream": "cam0", "pan_per_s": 11}, "move cam0 11 0 0 1"),
    _invalid({"type": "preset", "stream": "cam0", "action": "save", "name": "a/b"}, "preset cam0 save a/b"),
    _invalid({"type": "stereo", "stream": "stereo", "vergence": 0.9}, "stereo stereo 0.9"),
    _invalid({"type": "track", "stream": "cam0", "x": 150, "y": 50}, "track cam0 150,50"),
    _invalid({"type": "flip", "stream": "cam0", "horizontal": "sideways"}, "flip cam0 sideways"),
    _invalid({"type": "pause", "stream": "cam0", "paused": "maybe"}, "pause cam0 maybe"),
    _invalid({"type": "overlay", "stream": "cam0", "grid": "maybe"}, "overlay cam0 grid=maybe"),
    _invalid({"type": "roi", "stream": "cam0", "action": "set", "name": "door"}, "roi cam0 set door"),
    _invalid({"type": "stabilize", "stream": "cam0", "enabled": "maybe"}, "stabilize cam0 maybe"),
    _invalid({"type": "plugin", "stream": "cam0", "action": "add", "name": "edges"}, "plugin cam0 add edges"),
    _invalid({"type": "bitrate", "stream": "cam0", "kbps": 10}, "bitrate cam0 10"),
    _invalid({"type": "record", "stream": "cam0", "name": "../escape"}, "record cam0 ../escape"),
    _invalid({"type": "clip", "stream": "cam0", "post_s": -1}, "clip cam0 -1"),
    _invalid({"type": "photo", "stream": "cam0", "name": "../escape"}, "photo cam0 ../escape"),
    _invalid({"type": "gps", "lat": 91, "lon": 0}, "gps 91,0"),
    _invalid({"type": "attitude", "pitch_deg": 200}, "attitude pitch_deg=200"),
    _invalid({"type": "destination", "output": "udp0", "host": "127.0.0.1", "port": 0}, "destination udp0 127.0.0.1:0"),
    _invalid({"type": "protocol", "output": "udp0", "protocol": "srt"}, "protocol udp0 srt"),
    _invalid({"type": "output", "output": "udp0", "action": "pause"}, "output udp0 pause"),
    _invalid({"type": "status", "now": True}, "status now"),
    # refused by what runs them, not by validation
    _invalid({"type": "zoom", "stream": "stereo", "action": "in"}, "zoom stereo in"),
    _invalid({"type": "move", "stream": "stereo", "pan_per_s": 0.1}, "move stereo 0.1 0 0 1"),
    # an unknown stream or output, for every type that names one
    _not_found({"type": "ptz", "stream": "cam7", "zoom": 2}, "ptz cam7 0.5 0.5 2"),
    _not_found({"type": "pan", "stream": "cam7", "value": 0.5}, "pan cam7 0.5"),
    _not_found({"type": "tilt", "stream": "cam7", "value": 0.5}, "tilt cam7 0.5"),
    _not_found({"type": "zoom", "stream": "cam7", "value": 2}, "zoom cam7 2"),
    _not_found({"type": "move", "stream": "cam7", "pan_per_s": 0.1}, "move cam7 0.1 0 0 1"),
    _not_found({"type": "preset", "stream": "cam7", "action": "recall", "name": "home"}, "preset cam7 recall home"),
    _not_found({"type": "stereo", "stream": "cam7", "vergence": 0.1}, "stereo cam7 0.1"),
    _not_found({"type": "track", "stream": "cam7", "action": "stop"}, "track cam7 stop"),
    _not_found({"type": "flip", "stream": "cam7", "horizontal": True}, "flip cam7 h"),
    _not_found({"type": "pause", "stream": "cam7", "paused": True}, "pause cam7 on"),
    _not_found({"type": "overlay", "stream": "cam7", "grid": True}, "overlay cam7 grid=on"),
    _not_found({"type": "roi", "stream": "cam7", "action": "delete", "name": "door"}, "roi cam7 delete door"),
    _not_found({"type": "stabilize", "stream": "cam7", "enabled": True}, "stabilize cam7 on"),
    _not_found({"type": "plugin", "stream": "cam7", "action": "remove", "name": "edges"}, "plugin cam7 remove edges"),
    _not_found({"type": "bitrate", "stream": "cam7", "kbps": 1000}, "bitrate cam7 1000"),
    _not_found({"type": "record", "stream": "cam7", "action": "stop"}, "record cam7 stop"),
    _not_found({"type": "clip", "stream": "cam7", "post_s": 0}, "clip cam7 0"),
    _not_found({"type": "photo", "stream": "cam7", "name": "x"}, "photo cam7 x"),
    _not_found({"type": "destination", "output": "nope", "port": 5000}, "destination nope 127.0.0.1:5000"),
    _not_found({"type": "protocol", "output": "nope", "protocol": "rtp"}, "protocol nope rtp"),
    _not_found({"type": "output", "output": "nope", "action": "start"}, "output nope start"),
    # other things that do not exist
    Bad("not_found", "preset", {"type": "preset", "stream": "cam0", "name": "nowhere"}, "preset cam0 recall nowhere"),
    Bad("not_found", "roi", {"type": "roi", "stream": "cam0", "action": "delete", "name": "x"}, "roi cam0 delete x"),
    Bad(
        "not_found",
        "plugin",
        {"type": "plugin", "stream": "cam0", "action": "enable", "name": "x"},
        "plugin cam0 enable x",
    ),
    # the other codes
    Bad("conflict", "record", {"type": "record", "stream": "cam0", "action": "stop"}, "record cam0 stop"),
    Bad(
        "forbidden",
        "plugin",
        {"type": "plugin", "stream": "cam0", "action": "add", "name": "evil", "module": "os"},
        "plugin cam0 add evil module=os",
    ),
    Bad("unknown_command", None, {"type": "warp", "value": 9}, "warp 9"),
    Bad("bad_request", None, None, "{not json"),
)

# What the reset (over REST) leaves: the starting state of every run. Refusals of what is not there are fine.
RESET: tuple[dict[str, Any], ...] = (
    {"type": "move", "stream": "cam0"},  # all zero: stops a velocity move
    {"type": "zoom", "stream": "cam0", "max": 8},  # the camera's configured greatest zoom (and back to zoom 1)
    {"type": "record", "stream": "cam0", "action": "stop"},
    {"type": "plugin", "stream": "cam0", "action": "remove", "name": "edges"},
    {"type": "plugin", "stream": "cam0", "action": "remove", "name": "motion"},
    {"type": "roi", "stream": "cam0", "action": "delete", "name": "door"},
    {"type": "roi", "stream": "cam0", "action": "delete", "name": "gate"},
    {"type": "overlay", "stream": "cam0", "grid": False, "crosshair": False, "timestamp": False},
    {"type": "stabilize", "stream": "cam0", "enabled": False},
    {"type": "preset", "stream": "cam0", "action": "delete", "name": "spot"},
    {"type": "preset", "stream": "cam0", "action": "delete", "name": "door.view"},
    {"type": "stereo", "vergence": 0},
    *(
        fields
        for camera in ("cam0", "cam1")
        for fields in (
            {"type": "flip", "stream": camera},
            {"type": "pause", "stream": camera, "paused": False},
            {"type": "preset", "stream": camera, "action": "recall", "name": "home"},
        )
    ),
    {"type": "bitrate", "stream": "cam0", "kbps": 2500},
    {"type": "protocol", "output": "udp0", "protocol": "rtp"},
    {"type": "output", "output": "udp0", "action": "start"},
)


def _fill(value: Any, run: str, port: int) -> Any:
    """A command of the sequence for one run: its names tagged with the run, the second UDP port filled in."""
    if isinstance(value, dict):
        return {key: _fill(item, run, port) for key, item in value.items()}
    if value == PORT:
        return port
    if isinstance(value, str):
        return value.replace(TAG, run).replace(PORT, str(port))
    return value


def _untagged(value: Any) -> Any:
    """A reply with the run's own names (photo, recordings) and file stamps made the same for every run."""
    if isinstance(value, dict):
        return {key: _untagged(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_untagged(item) for item in value]
    if isinstance(value, str):
        return STAMP.sub("<stamp>", RUN_TAG.sub("via-T", value))
    return value


# ---- the server


@dataclass
class Setup:
    server: ServerProcess
    broker: Broker
    rep: str
    db: Path
    fifo: Path
    replies: Path
    ports: tuple[int, int]  # the UDP output's destination at the start, and the one the sequence moves it to
    baseline: dict[str, Any] = field(default_factory=dict)

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.server.url}{path}", timeout=TIMEOUT_S)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    def rest(self, fields: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.server.url}/api/commands", json=fields, timeout=TIMEOUT_S)
        return response.json()  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        reply = self.rest({"type": "status"})
        assert reply["ok"], reply
        return reply["result"]  # type: ignore[no-any-return]

    def says(self, check: Callable[[dict[str, Any]], bool]) -> bool:
        return check(self.status())

    def reset(self) -> None:
        for fields in (*RESET, {"type": "destination", "output": "udp0", "host": "127.0.0.1", "port": self.ports[0]}):
            reply = self.rest(fields)
            assert reply["ok"] or reply["code"] in ("not_found", "conflict"), (fields, reply)
        poll(partial(self.says, _nothing_recording), "no recording or clip running", TIMEOUT_S)

    def snapshot(self) -> dict[str, Any]:
        """The state, read back with the REST resource routes."""
        cameras = ("cam0", "cam1")
        return {
            "ptz": {camera: self.get(f"/api/cameras/{camera}/ptz") for camera in cameras},
            "presets": {camera: self.get(f"/api/cameras/{camera}/presets") for camera in cameras},
            "stereo": self.get("/api/stereo"),
            "overlay": self.get("/api/cameras/cam0/overlay"),
            "rois": self.get("/api/cameras/cam0/rois"),
            "stabilize": self.get("/api/cameras/cam0/stabilize"),
            "plugins": [_plugin(plugin) for plugin in self.get("/api/cameras/cam0/plugins")],
            "outputs": [_output(output) for output in self.get("/api/outputs")],
            "streams": [_stream(stream) for stream in self.get("/api/streams")],
        }


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with running_mosquitto(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, broker: Broker) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("transports")
    # The UDP output sends to sockets that exist (and never read): nothing answers with "port unreachable".
    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for sink in sinks:
        sink.bind(("127.0.0.1", 0))
    ports = (sinks[0].getsockname()[1], sinks[1].getsockname()[1])
    rep = f"tcp://127.0.0.1:{free_port()}"
    db, fifo, replies = directory / "inbox.db", directory / "commands.fifo", directory / "replies.jsonl"
    config = directory / "vergence.toml"
    cameras = "".join(f'[[cameras]]\nid = "{camera}"\nsize = "320x240"\nfps = 30\n\n' for camera in ("cam0", "cam1"))
    config.write_text(
        f"{cameras}[stereo]\nenabled = true\n\n"
        f'[[udp]]\nid = "udp0"\nstream = "cam0"\nhost = "127.0.0.1"\nport = {ports[0]}\n\n'
        f'[media]\ndir = "{directory / "media"}"\n\n'
        f'[mqtt]\nenabled = true\nport = {broker.port}\ntopic = "{TOPIC}"\nclient_id = "vergence-commands"\nfps = 0\n\n'
        f'[zmq]\nenabled = true\npub = ""\nrep = "{rep}"\n\n'
        f'[inbox]\nenabled = true\npath = "{db}"\npoll_s = 0.05\n\n'
        f'[fifo]\nenabled = true\npath = "{fifo}"\nreply_path = "{replies}"\n'
    )
    server = start_server(("--config", str(config)), directory / "server.log")
    try:
        with Subscriber(broker, f"{TOPIC}/status") as subscriber:  # MQTT commands need the bridge connected
            while not json.loads(subscriber.next(f"{TOPIC}/status", TIMEOUT_S).payload)["online"]:
                pass
        setup = Setup(server, broker, rep, db, fifo, replies, ports)
        setup.reset()
        setup.baseline = setup.snapshot()
        yield setup
    finally:
        server.stop()
        for sink in sinks:
            sink.close()


# ---- the transports: each sends a JSON command (dict) or a text line (str) and returns the reply, without its id


class Rest:
    def __init__(self, setup: Setup) -> None:
        self.url = f"{setup.server.url}/api/commands"
        self.http = httpx.Client(timeout=TIMEOUT_S)
        self.ids = itertools.count(1)

    def send(self, message: dict[str, Any] | str) -> dict[str, Any]:
        if isinstance(message, dict):
            command_id = f"rest-{next(self.ids)}"
            response = self.http.post(self.url, json={**message, "id": command_id})
        else:
            response = self.http.post(self.url, content=message, headers={"Content-Type": "text/plain"})
        reply = response.json()
        assert (response.status_code == 200) == reply["ok"], (response.status_code, reply)
        assert reply.pop("detail", reply.get("error")) == reply.get("error")  # HTTP's copy, for FastAPI clients
        if isinstance(message, dict):
            assert reply.pop("id") == command_id, reply
        return reply  # type: ignore[no-any-return]

    def close(self) -> None:
        self.http.close()


class ControlWebSocket:
    def __init__(self, setup: Setup) -> None:
        self.ws = connect(f"{setup.server.ws_url}/ws/control", open_timeout=TIMEOUT_S, legacy=True)
        assert json.loads(self.ws.recv(timeout=TIMEOUT_S))["type"] == "state"
        self.ids = itertools.count(1)

    def send(self, message: dict[str, Any] | str) -> dict[str, Any]:
        command_id = f"ws-{next(self.ids)}"
        body = {"command": message} if isinstance(message, dict) else {"text": message}
        self.ws.send(json.dumps({"type": "command", "id": command_id, **body}))
        while True:  # state events of this and other commands come and go on the same socket
            reply = json.loads(self.ws.recv(timeout=TIMEOUT_S))
            if reply["type"] == "reply" and reply.get("id") == command_id:
                del reply["type"], reply["id"]
                return reply  # type: ignore[no-any-return]

    def close(self) -> None:
        self.ws.close()


class DataChannel:
    """The WebRTC data channel of an aiortc peer watching cam0, driven from this thread through an event loop of its own."""

    def __init__(self, setup: Setup) -> None:
        from vergence.client.webrtc import WebRtcClient

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="webrtc-client", daemon=True)
        self.thread.start()
        self.ids = itertools.count(1)

        async def open_peer() -> WebRtcClient:
            client = WebRtcClient(setup.server.url, "cam0", data_channel=True, timeout_s=TIMEOUT_S)
            try:
                await client.connect()
            except BaseException:
                await client.close()
                raise
            return client

        try:
            self.client = self._run(open_peer())
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(TIMEOUT_S * 2)

    def send(self, message: dict[str, Any] | str) -> dict[str, Any]:
        command_id = f"dc-{next(self.ids)}"
        body = {"command": message} if isinstance(message, dict) else {"text": message}

        async def request() -> dict[str, Any]:
            await self.client.send({"type": "command", "id": command_id, **body})
            async with asyncio.timeout(TIMEOUT_S):
                while True:
                    reply = await self.client.messages.get()
                    if reply.get("type") == "reply" and reply.get("id") == command_id:
                        return reply

        reply: dict[str, Any] = self._run(request())
        del reply["type"], reply["id"]
        return reply

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT_S)
        self.loop.close()

    def close(self) -> None:
        try:
            self._run(self.client.close())
        finally:
            self._stop_loop()


class Mqtt:
    def __init__(self, setup: Setup) -> None:
        self.subscriber = Subscriber(setup.broker, f"{TOPIC}/reply")
        # Each command is a small write right after the acknowledgement of the last reply: without this, Nagle's
        # algorithm holds it until the broker's delayed ACK, 40 ms a command.
        connection = self.subscriber.client.socket()
        assert isinstance(connection, socket.socket), connection
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ids = itertools.count(1)

    def send(self, message: dict[str, Any] | str) -> dict[str, Any]:
        command_id = f"mqtt-{next(self.ids)}"
        payload = json.dumps({**message, "id": command_id}) if isinstance(message, dict) else message
        self.subscriber.publish(f"{TOPIC}/cmd", payload)
        reply = json.loads(self.subscriber.next(f"{TOPIC}/reply", TIMEOUT_S).payload)
        if isinstance(message, dict):
            assert reply.pop("id") == command_id, reply
        return reply  # type: ignore[no-any-return]

    def close(self) -> None:
        self.subscriber.close()


class ZeroMq:
    def __init__(self, setup: Setup) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.REQ)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(setup.rep)
        self.ids = itertools.count(1)

    def send(self, message: dict[str, Any] | str) -> dict[str, Any]:
        command_id = f"zmq-{next(self.ids)}"
        payload = json.dumps({**message, "id": command_id}) if isinstance(message, dict) else message
        self.socket.send(payload.encode())
        assert self.socket.poll(int(TIMEOUT_S * 1000)), f"no reply to {payload!r} on the REQ socket"
        reply = json.loads(self.socket.recv())
        if isinstance(message, dict):
            assert reply.pop("id") == command_id, reply
        return reply  # type: ignore[no-any-return]

    def close(self) -> None:
        self.socket.close()
        self.context.term()


class Ctl:
    """`vergence ctl WORDS…`, a process per command."""

    def __init__(self, setup: Setup) -> None:
        self.url = setup.server.url

    def send(self, message: dict[str, Any] | str) -> dict[str, Any]:
        assert isinstance(message, str)
        command = [sys.executable, "-m", "vergence", "ctl", "--url", self.url, *message.split()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S * 2)
        if done.returncode == 2:  # no reply: ctl could not send, or took the refusal for one of authentication
            return {"ok": False, "exit": 2, "stderr": done.stderr.strip()}
        reply = json.loads(done.stdout)
        assert done.returncode == (0 if reply["ok"] else 1), (message, done.returncode, done.stderr)
        assert reply.pop("detail", reply.get("error")) == reply.get("error")
        return reply  # type: ignore[no-any-return]

    def close(self) -> None:
        pass


class Inbox:
    """A row in PiStreamer's table: `command_type` the first word, `command_value` the rest. The table keeps no reply:
    `meta_data` holds the result as JSON or the error's text, so the reply here has no `code`."""

    def __init__(self, setup: Setup) -> None:
        self.db = setup.db

    def send(self, message: dict[str, Any] | str) -> dict[str, Any]:
        assert isinstance(message, str)
        kind, _, value = message.partition(" ")
        row_id, now = uuid.uuid4().hex, datetime.now().isoformat(sep=" ")
        with sqlite3.connect(self.db) as connection:
            connection.execute(
                "INSERT INTO commandmodel (id, created_at, updated_at, command_type, command_value, command_status) "
                "VALUES (?, ?, ?, ?, ?, 'pending')",
                (row_id, now, now, kind, value or None),
            )
        finished = poll(lambda: self._finished(row_id), f"the inbox to run {message!r}", TIMEOUT_S)
        assert finished is not None
        status, meta = finished
        command = kind if kind in COMMAND_TYPES else None  # the table keeps no reply: named as the others name it
        if status == "completed":
            try:
                result = json.loads(meta)
            except ValueError:
                result = f"not JSON: {meta[:80]!r}… ({len(meta)} characters)"
            return {"ok": True, "command": command, "result": result}
        assert status == "failed", status
        return {"ok": False, "command": command, "error": meta}

    def _finished(self, row_id: str) -> tuple[str, str] | None:
        with sqlite3.connect(self.db) as connection:
            status, meta = connection.execute(
                "SELECT command_status, meta_data FROM commandmodel WHERE id = ?", (row_id,)
            ).fetchone()
        return None if status == "pending" else (status, meta)

    def close(self) -> None:
        pass


class Fifo:
    """A line written into the pipe; its reply is the next line of the reply file (`line` is the command's text)."""

    def __init__(self, setup: Setup) -> None:
        self.fifo, self.replies = setup.fifo, setup.replies
        self.seen = len(self._lines())

    def _lines(self) -> list[str]:
        return self.replies.read_text().splitlines() if self.replies.exists() else []

    def send(self, message: dict[str, Any] | str) -> dict[str, Any]:
        assert isinstance(message, str)
        fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)  # never blocks: the server holds the pipe open
        try:
            os.write(fd, f"{message}\n".encode())
        finally:
            os.close(fd)
        lines = poll(lambda: (lines := self._lines())[self.seen :] and lines, f"the FIFO's reply to {message!r}")
        reply = json.loads(lines[self.seen])
        self.seen += 1
        assert reply.pop("line") == message, reply
        return reply  # type: ignore[no-any-return]

    def close(self) -> None:
        pass


TRANSPORTS: dict[str, tuple[type[Any], str]] = {
    "rest": (Rest, "json"),
    "ws": (ControlWebSocket, "json"),
    "webrtc": (DataChannel, "json"),
    "mqtt": (Mqtt, "json"),
    "zmq": (ZeroMq, "json"),
    "ctl": (Ctl, "text"),
    "inbox": (Inbox, "text"),
    "fifo": (Fifo, "text"),
    "ws-text": (ControlWebSocket, "text"),
    "webrtc-text": (DataChannel, "text"),
    "mqtt-text": (Mqtt, "text"),
    "zmq-text": (ZeroMq, "text"),
}
NO_CODE = {"inbox"}  # transports whose stored reply has no error code (compared by the error's text instead)
# Refusals a transport is known to get wrong, outside what this test's run may fix: (transport, code) → why.
# ---- a run: the sequence, then the refusals


def run_sequence(setup: Setup, channel: Any, form: str, run: str) -> list[tuple[str, Any]]:
    """Send the sequence; return what each step gave (a reply's state, or the state read back)."""
    records: list[tuple[str, Any]] = []
    for step in SEQUENCE:
        if isinstance(step, Until):
            poll(partial(setup.says, step.check), step.what, TIMEOUT_S)
        elif isinstance(step, Probe):
            records.append((f"GET {step.path}", step.view(setup.get(step.path))))
        else:
            message = _fill(step.json if form == "json" else step.text, run, setup.ports[1])
            reply = channel.send(message)
            label = step.text
            assert reply["ok"], (label, reply)
            records.append((label, {**reply, "result": _untagged(step.view(reply["result"]))}))
    return records


def run_refusals(channel: Any, form: str) -> list[dict[str, Any]]:
    return [channel.send(bad.json if form == "json" and bad.json is not None else bad.text) for bad in BAD]


@dataclass
class Reference:
    records: list[tuple[str, Any]]
    final: dict[str, Any]
    refusals: dict[str, list[dict[str, Any]]]  # by form


@pytest.fixture(scope="module")
def reference(setup: Setup) -> Reference:
    """The sequence and the refusals over REST, JSON and text, from the starting state."""
    setup.reset()
    assert setup.snapshot() == setup.baseline
    rest = Rest(setup)
    try:
        records = run_sequence(setup, rest, "json", "ref")
        final = setup.snapshot()
        refusals = {form: run_refusals(rest, form) for form in ("json", "text")}
    finally:
        rest.close()
        setup.reset()
    for form, replies in refusals.items():
        for bad, reply in zip(BAD, replies, strict=True):
            assert (reply["ok"], reply["command"], reply["code"]) == (False, bad.command, bad.code), (form, bad, reply)
    return Reference(records, final, refusals)


def test_the_sequence_covers_every_command_in_both_spellings() -> None:
    """Every command type is sent, refused for a bad value, and (if it names one) for an unknown stream or output; a
    command's JSON and its text line are the same command."""
    commands = [step for step in SEQUENCE if isinstance(step, Cmd)]
    assert sorted({command.type for command in commands}) == COMMAND_TYPES
    assert sorted({str(bad.command) for bad in BAD if bad.code == "invalid"}) == COMMAND_TYPES
    targeted = sorted(kind for kind in COMMAND_TYPES if BY_TYPE[kind].target is not None)
    assert sorted({str(bad.command) for bad in BAD if bad.unknown_target}) == targeted
    for command in commands:
        as_json = parse_command(_fill(command.json, "x", 5000))
        as_text = parse_command(_fill(command.text, "x", 5000))
        assert as_json.model_dump() == as_text.model_dump(), command.text


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_every_command_gets_the_same_reply_and_state_over(
    transport: str, setup: Setup, reference: Reference, request: pytest.FixtureRequest
) -> None:
    if transport.startswith("webrtc"):
        request.getfixturevalue("ice_address")  # fails, never skips, without a private network for ICE
    kind, form = TRANSPORTS[transport]
    run = transport.replace("-", "")
    setup.reset()
    assert setup.snapshot() == setup.baseline, "the reset did not bring back the starting state"
    channel = kind(setup)
    try:
        records = run_sequence(setup, channel, form, run)
        final = setup.snapshot()
        refusals = run_refusals(channel, form)
        after_refusals = setup.snapshot()
    finally:
        channel.close()
        setup.reset()

    # (a) the same replies, the same state read back between the commands and at the end
    assert [label for label, _ in records] == [label for label, _ in reference.records]
    differences = [
        (label, got, want) for (label, got), (_, want) in zip(records, reference.records, strict=True) if got != want
    ]
    assert not differences, "\n\n".join(f"{label}:\n  got  {got}\n  want {want}" for label, got, want in differences)
    assert final == reference.final

    # (c) flip and pause took effect, on every transport, MQTT and the FIFO among them (read back over REST after each)
    probes = [(step, got) for step, (_, got) in zip(_steps(), records, strict=True) if isinstance(step, Probe)]
    for probe, got in probes:
        assert {key: got[key] for key in probe.expect} == probe.expect, (probe.path, got)
    assert final["ptz"]["cam1"]["flip"] == H and final["ptz"]["cam1"]["paused"] is True

    # (b) the same refusal: the same code (and reply) as REST for every bad command; nothing refused changed anything
    wanted = reference.refusals[form]
    for bad, got, want in zip(BAD, refusals, wanted, strict=True):
        message = bad.json if form == "json" and bad.json is not None else bad.text
        expected = _without_code(want) if transport in NO_CODE else want
        assert got == expected, (message, got, want)
        assert got["command"] == bad.command and got.get("code", bad.code) == bad.code, (message, got)
    assert after_refusals == final


def _steps() -> list[Cmd | Probe]:
    """The steps that leave a record (every one but the waits)."""
    return [step for step in SEQUENCE if not isinstance(step, Until)]


def _without_code(reply: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in reply.items() if key != "code"}
