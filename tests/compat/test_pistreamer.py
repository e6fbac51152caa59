"""PiStreamer's clients against vergence, unchanged: a ground-station bridge that inserts rows into PiStreamer's SQLite
table, and one that writes lines into its FIFO `/tmp/pistreamer` (here a path in the test's directory), each using every
PiStreamer command name (its `CommandType` values). Written from PiStreamer's description (a `commandmodel` table:
id, created_at, updated_at, command_type, command_value, command_status 'pending' → done, meta_data), not with
vergence's code. `kill` through the FIFO stops the server cleanly: exit status 0, the recording closed and playable."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from PIL import Image

from tests.conftest import ServerProcess, free_port
from tests.polling import poll

GPS = '\'{"lat": 359686990, "lon": -839290440, "alt": 276000, "eph": 1, "epv": 1, "vel": 0, "cog": 0, "fix_type": 2}\''
MISC = '\'{"pitch": 0.1, "roll": 0.02, "camera_model": "IMX477", "focal_length": [50, 1]}\''


def config(tmp_path: Path, gcs_port: int) -> Path:
    (tmp_path / "DCIM").mkdir()
    path = tmp_path / "vergence.toml"
    path.write_text(
        '[[cameras]]\nid = "cam0"\nsize = "320x240"\nfps = 30\n'
        f'[[udp]]\nid = "gcs"\nstream = "cam0"\nhost = "127.0.0.1"\nport = {gcs_port}\nenabled = false\n'
        f'[inbox]\nenabled = true\npath = "{tmp_path / "library.db"}"\npoll_s = 0.05\n'
        f'[compat.pistreamer]\nfifo = "{tmp_path / "pistreamer"}"\n'
        f'[media]\ndir = "{tmp_path / "media"}"\nphoto_dirs = ["{tmp_path / "DCIM"}"]\n'
    )
    return path


class SqliteBridge:
    """What PiStreamer's MAVLink bridge does: insert a pending row, then read its status back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with sqlite3.connect(path) as db:  # the bridge creates the table when it boots (peewee create_tables)
            db.execute(
                "CREATE TABLE IF NOT EXISTS commandmodel (id VARCHAR(40) PRIMARY KEY, created_at DATETIME NOT NULL, "
                "updated_at DATETIME NOT NULL, command_type VARCHAR(255) NOT NULL, command_value VARCHAR(255), "
                "command_status VARCHAR(255) NOT NULL, meta_data TEXT)"
            )

    def send(self, command_type: str, command_value: str | None) -> tuple[bool, str]:
        row = str(uuid.uuid4())
        now = datetime.now().isoformat(sep=" ")
        with sqlite3.connect(self.path) as db:
            db.execute(
                "INSERT INTO commandmodel VALUES (?, ?, ?, ?, ?, 'pending', NULL)",
                (row, now, now, command_type, command_value),
            )

        def finished() -> tuple[str, str] | None:
            with sqlite3.connect(self.path) as db:
                status, meta = db.execute(
                    "SELECT command_status, meta_data FROM commandmodel WHERE id = ?", (row,)
                ).fetchone()
            return (status, meta or "") if status != "pending" else None

        status, meta = poll(finished, f"the row {command_type} {command_value or ''} to be done")
        return status == "completed", meta


class FifoBridge:
    """What a script written for PiStreamer does: `echo "<command_type> <value>" > /tmp/pistreamer`. It hears no reply;
    here vergence's status (the pipe's recent lines) tells the test what became of each line."""

    def __init__(self, path: Path, server: ServerProcess) -> None:
        self.path, self.server = path, server

    def send(self, command_type: str, command_value: str | None) -> tuple[bool, str]:
        before = self._seen()
        line = f"{command_type} {command_value}" if command_value else command_type
        fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, line.encode() + b"\n")
        finally:
            os.close(fd)
        done = poll(lambda: self._seen() > before and self._recent()[-1], f"the line {line!r} to be done")
        assert done["line"] == line, done
        return done["ok"], done.get("error", "")

    def _fifo(self) -> dict[str, Any]:
        status = httpx.post(f"{self.server.url}/api/commands", content="status", timeout=10).json()["result"]
        return status["services"]["pistreamer fifo"]

    def _seen(self) -> int:
        return int(self._fifo()["processed"])

    def _recent(self) -> list[dict[str, Any]]:
        return list(self._fifo()["recent"])


def state(server: ServerProcess) -> dict[str, Any]:
    return httpx.post(f"{server.url}/api/commands", content="status", timeout=10).json()["result"]


def exif_of(path: Path) -> dict[int, Any]:
    image = Image.open(io.BytesIO(path.read_bytes()))
    exif = image.getexif()
    return {**dict(exif), **dict(exif.get_ifd(0x8769)), **{("gps", k): v for k, v in exif.get_ifd(0x8825).items()}}


def run_every_command(server: ServerProcess, send: Callable[[str, str | None], tuple[bool, str]], tmp: Path) -> None:
    """Every PiStreamer command name, each checked by what it did."""
    gcs = lambda: next(o for o in state(server)["outputs"] if o["id"] == "gcs")  # noqa: E731
    cam0 = lambda: httpx.get(f"{server.url}/api/cameras/cam0/ptz", timeout=10).json()  # noqa: E731

    def ok(command_type: str, value: str | None = None) -> None:
        done, detail = send(command_type, value)
        assert done, f"{command_type} {value}: {detail}"

    port = free_port()
    ok("ip_address", "127.0.0.1")
    ok("port", str(port))
    assert (gcs()["host"], gcs()["port"]) == ("127.0.0.1", port)
    ok("gcs_ip", "127.0.0.1")
    ok("gcs_port", str(port + 2))
    ok("gcs_host", f"127.0.0.1:{port + 4}")
    assert gcs()["port"] == port + 4
    ok("streaming_protocol", "mpegts")
    assert gcs()["protocol"] == "mpegts"
    ok("start_gcs_stream")
    assert gcs()["running"], gcs()
    ok("stop_gcs_stream")
    assert not gcs()["running"], gcs()
    ok("bitrate", "1500")
    assert state(server)["streams"][0]["bitrate_bps"] == 1_500_000
    ok("zoom", "2.0")
    assert cam0()["zoom"] == 2.0
    ok("zoom", "in")
    poll(lambda: cam0()["zoom"] > 2.0, "zooming in")
    ok("zoom", "stop")
    ok("max_zoom", "8.0")
    assert cam0()["max_zoom"] == 8.0 and cam0()["zoom"] == 1.0
    ok("stabilize", "start")
    assert state(server)["processing"]["cam0"]["stabilize"] is True
    ok("stabilize", "stop")
    assert state(server)["processing"]["cam0"]["stabilize"] is False
    ok("gps_data", GPS)
    ok("misc_data", MISC)
    ok("take_photo")
    ok("take_photo", "named.jpg")
    assert (tmp / "media" / "named.jpg").is_file()
    ok("take_photo", str(tmp / "DCIM" / "IMG_0001.jpg"))
    tags = exif_of(tmp / "DCIM" / "IMG_0001.jpg")
    assert abs(float(tags[("gps", 2)][0]) - 35) < 1e-9 and tags[("gps", 1)] == "N", tags  # 35.9686990° N
    assert abs(float(tags[("gps", 6)]) - 276.0) < 1e-6, tags  # alt in mm → 276 m
    assert float(tags[0x920A]) == 50.0 and tags[0x0110] == "IMX477", tags  # FocalLength, Model
    assert b'Camera:Pitch="5.729578"' in (tmp / "DCIM" / "IMG_0001.jpg").read_bytes()  # 0.1 rad in the XMP
    refused, why = send("take_photo", "/etc/IMG_0002.jpg")
    assert not refused and "photo_dirs" in why, why
    ok("init_tracking_poi", "100,200")  # pixels of the picture
    tracking = state(server)["tracking"]["cam0"]
    assert tracking["state"] in ("tracking", "searching", "lost"), tracking
    ok("stop_tracking")
    assert state(server)["tracking"]["cam0"]["state"] == "idle"
    refused, why = send("init_tracking_poi", "100000,200")
    assert not refused and "outside" in why, why
    ok("record", "flight1.mp4")
    assert state(server)["recordings"]["cam0"]["recording"], state(server)["recordings"]
    ok("stop_recording")
    assert not state(server)["recordings"]["cam0"]["recording"]
    assert list((tmp / "media").glob("flight1*.mp4")), list((tmp / "media").iterdir())


def test_a_pistreamer_bridge_commands_vergence_through_its_sqlite_table(vergence_server, tmp_path):
    server = vergence_server("--config", str(config(tmp_path, free_port())))
    run_every_command(server, SqliteBridge(tmp_path / "library.db").send, tmp_path)


@pytest.mark.timeout(120)
def test_a_pistreamer_script_commands_vergence_through_its_fifo_and_kill_stops_it_cleanly(vergence_server, tmp_path):
    server = vergence_server("--config", str(config(tmp_path, free_port())))
    fifo = FifoBridge(tmp_path / "pistreamer", server)
    run_every_command(server, fifo.send, tmp_path)
    assert fifo.send("record", "last.mp4")[0]
    poll(lambda: state(server)["recordings"]["cam0"]["recording"], "the recording to run")
    fd = os.open(tmp_path / "pistreamer", os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"kill\n")
    os.close(fd)
    try:
        assert server.process.wait(timeout=20) == 0, server.log()[-3000:]
    except subprocess.TimeoutExpired:
        pytest.fail("kill did not stop the server")
    (recording,) = (tmp_path / "media").glob("last*.mp4")
    with av.open(str(recording)) as container:  # closed cleanly: its index is written, every frame decodes
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 0
