"""PiStreamer's command names, read as commands of the one vocabulary.

PiStreamer takes `<command_type> [command_value]` from its FIFO (`/tmp/pistreamer`) and from an SQLite table (peewee's
`CommandModel`: `command_type`, `command_value`); its names are the values of its `CommandType` enum. vergence reads
the same names on every transport that takes text, so a ground station or a MAVLink bridge written for PiStreamer
commands vergence unchanged. Each name becomes one command (the table in docs/migrating.md):

    ip_address / gcs_ip / ip HOST      destination HOST          gcs_host HOST:PORT    destination HOST:PORT
    port / gcs_port PORT               destination :PORT         start_gcs_stream      output start
    stop_gcs_stream                    output stop               streaming_protocol P  protocol rtp|mpegts
    bitrate KBPS                       bitrate KBPS              record [FILE]         record start (name FILE)
    stop_recording                     record stop               zoom F|in|out|stop    zoom …
    max_zoom F                         zoom max=F (and back to 1) take_photo [FILE]    photo (FILE: a name or a path)
    stabilize [start|stop]             stabilize on|off          gps_data JSON         gps (1e-7 degrees, mm)
    misc_data JSON                     attitude (pitch, roll, model, focal length for photos)
    init_tracking_poi X,Y              track point_px=X,Y (pixels of the picture)
    stop_tracking                      track stop

`kill` (PiStreamer's FIFO line that ends the daemon) is not a command: the local inboxes (FIFO, SQLite) take it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from vergence.errors import InvalidCommand

Fields = dict[str, Any]
KILL = "kill"  # PiStreamer's line that ends the daemon; vergence's local inboxes answer it with a clean shutdown


def _destination_host(value: str) -> Fields:
    return {"type": "destination", "host": _one(value, "an IP address or host name")}


def _destination_port(value: str) -> Fields:
    return {"type": "destination", "port": _one(value, "a port")}


def _destination(value: str) -> Fields:
    host, sep, port = value.strip().split(" ")[0].rpartition(":")
    if not sep or not host:
        raise InvalidCommand(f"gcs_host: expected HOST:PORT, got {value!r}")
    return {"type": "destination", "host": host.strip("[]"), "port": port}


def _record(value: str) -> Fields:
    name = value.strip()
    return {"type": "record", "action": "start", **({"name": _stem(name, ".mp4")} if name else {})}


def _photo(value: str) -> Fields:
    target = value.strip()
    if not target:
        return {"type": "photo"}
    if "/" in target:  # PiStreamer writes where it is told: vergence only into [media] photo_dirs
        return {"type": "photo", "path": target}
    return {"type": "photo", "name": _stem(target, ".jpg", ".jpeg")}


def _stabilize(value: str) -> Fields:
    word = value.strip().lower()
    if word in ("", "start", "on", "true", "1"):
        return {"type": "stabilize", "enabled": True}
    if word in ("stop", "off", "false", "0"):
        return {"type": "stabilize", "enabled": False}
    raise InvalidCommand(f"stabilize: expected start or stop, got {value!r}")


def _gps(value: str) -> Fields:
    """MAVLink GPS_RAW_INT as PiStreamer takes it: lat and lon in 1e-7 degrees, alt in millimetres."""
    data = _json_object(value, "gps_data")
    try:
        fields: Fields = {"type": "gps", "lat": int(data["lat"]) / 1e7, "lon": int(data["lon"]) / 1e7}
        if "alt" in data:
            fields["alt_m"] = int(data["alt"]) / 1000
    except KeyError as err:
        raise InvalidCommand(f"gps_data: missing {err.args[0]!r}") from None
    except (TypeError, ValueError) as err:
        raise InvalidCommand(f"gps_data: {err}") from None
    return fields


def _attitude(value: str) -> Fields:
    """MAVLink ATTITUDE and the camera's lens as PiStreamer takes them: pitch and roll in radians, the focal length as
    a fraction [numerator, denominator] in millimetres."""
    data = _json_object(value, "misc_data")
    fields: Fields = {"type": "attitude"}
    try:
        for key in ("pitch", "roll"):
            if key in data:
                fields[f"{key}_deg"] = math.degrees(float(data[key]))
        if "camera_model" in data:
            fields["model"] = str(data["camera_model"])
        if "focal_length" in data:
            numerator, denominator = data["focal_length"]
            if float(denominator) != 0:
                fields["focal_length_mm"] = float(numerator) / float(denominator)
    except (TypeError, ValueError) as err:
        raise InvalidCommand(f"misc_data: {err}") from None
    return fields


def _track_point(value: str) -> Fields:
    """PiStreamer's `init_tracking_poi X,Y`: the target's centre in pixels of the picture."""
    words = value.replace(" ", "").split(",")
    if len(words) != 2:
        raise InvalidCommand(f"init_tracking_poi: expected X,Y in pixels, got {value!r}")
    return {"type": "track", "point_px": words}


NAMES: dict[str, tuple[str, Callable[[str], Fields]]] = {
    # name: (the command type it becomes, how its value reads)
    "ip_address": ("destination", _destination_host),
    "gcs_ip": ("destination", _destination_host),
    "ip": ("destination", _destination_host),
    "port": ("destination", _destination_port),
    "gcs_port": ("destination", _destination_port),
    "gcs_host": ("destination", _destination),
    "host": ("destination", _destination),
    "start_gcs_stream": ("output", lambda value: {"type": "output", "action": "start"}),
    "stop_gcs_stream": ("output", lambda value: {"type": "output", "action": "stop"}),
    "streaming_protocol": ("protocol", lambda value: {"type": "protocol", "protocol": _one(value, "rtp or mpegts")}),
    "record": ("record", _record),
    "stop_recording": ("record", lambda value: {"type": "record", "action": "stop"}),
    "max_zoom": ("zoom", lambda value: {"type": "zoom", "max": _one(value, "a zoom factor")}),
    "take_photo": ("photo", _photo),
    "stabilize": ("stabilize", _stabilize),
    "gps_data": ("gps", _gps),
    "misc_data": ("attitude", _attitude),
    "init_tracking_poi": ("track", _track_point),
    "stop_tracking": ("track", lambda value: {"type": "track", "action": "stop"}),
}
JSON_VALUED = {"gps_data", "misc_data"}  # their value is the rest of the line, spaces and all
# Names PiStreamer shares with vergence (`zoom`, read alike, is not here): a line in vergence's own spelling (a target,
# `record stop`, `stabilize off`) is read as vergence reads it; only PiStreamer's spellings are taken over here.
_SHARED = {"record", "stabilize"}


def translate(name: str, value: str) -> Fields | None:
    """The command fields a PiStreamer line `name value` stands for (not yet validated); None when `name` is not one of
    PiStreamer's, or is one vergence shares and `value` is not PiStreamer's spelling of it."""
    entry = NAMES.get(name)
    if entry is None:
        return None
    if name in _SHARED and not _pistreamer_spelling(name, value):
        return None
    return entry[1](value)


def command_type(name: str) -> str | None:
    """The command type a PiStreamer name stands for (for a refusal's `command`)."""
    entry = NAMES.get(name)
    return entry[0] if entry is not None else None


def _pistreamer_spelling(name: str, value: str) -> bool:
    words = value.split()
    if name == "stabilize":
        return len(words) == 1 and words[0].lower() in ("start", "stop")
    return len(words) == 1 and words[0].lower().endswith(".mp4")  # `record flight1.mp4`: a file name


def _one(value: str, what: str) -> str:
    words = value.split()
    if len(words) != 1:
        raise InvalidCommand(f"expected {what}, got {value!r}")
    return words[0]


def _stem(name: str, *extensions: str) -> str:
    path = PurePosixPath(name)
    return path.stem if path.suffix.lower() in extensions else name


def _json_object(value: str, name: str) -> dict[str, Any]:
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":  # PiStreamer's tester quotes the JSON
        text = text[1:-1]
    try:
        data = json.loads(text)
    except ValueError as err:
        raise InvalidCommand(f"{name}: invalid JSON: {err}") from None
    if not isinstance(data, dict):
        raise InvalidCommand(f"{name}: expected a JSON object")
    return data
