"""One command model from every transport: REST, control WebSocket, `vergence ctl`, the SQLite inbox and the FIFO."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import av
import httpx
from websockets.sync.client import connect

from tests.polling import poll

DEADLINE_S = 15.0


def zoom_of(server) -> float:
    return httpx.get(f"{server.url}/api/cameras/cam0/ptz").json()["zoom"]


def test_rest_commands_run_and_refusals_say_why(vergence_server, tmp_path):
    media = tmp_path / "media"
    server = vergence_server("--size", "320x240", env={"VERGENCE_MEDIA__DIR": str(media)})
    url = f"{server.url}/api/commands"

    ok = httpx.post(url, json={"type": "zoom", "value": 2, "id": "z1"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["ok"] and ok.json()["id"] == "z1" and ok.json()["result"]["zoom"] == 2
    assert zoom_of(server) == 2

    text = httpx.post(url, content="pan 0.25", headers={"Content-Type": "text/plain"})
    assert text.status_code == 200 and text.json()["result"]["pan"] == 0.25

    bitrate = httpx.post(url, content="bitrate 1200", headers={"Content-Type": "text/plain"})
    assert bitrate.json()["result"] == {"stream": "cam0", "bitrate_bps": 1_200_000}
    assert httpx.get(f"{server.url}/api/streams").json()[0]["bitrate_bps"] == 1_200_000

    for body, status, code, fragment in (
        ({"type": "warp"}, 400, "unknown_command", "unknown command 'warp'"),
        ({"type": "zoom", "value": 99}, 422, "invalid", "less than or equal to 64"),
        ({"type": "zoom", "value": 2, "camera": "cam7"}, 404, "not_found", "unknown camera 'cam7'"),
        ({"type": "zoom", "value": 2, "stream": "cam7"}, 404, "not_found", "unknown camera 'cam7'"),
        ({"type": "destination", "port": 5000}, 404, "not_found", "no UDP output is configured"),
        ({"type": "record", "action": "stop"}, 409, "conflict", "not recording"),
    ):
        refused = httpx.post(url, json=body)
        assert refused.status_code == status, (body, refused.text)
        reply = refused.json()
        assert reply["ok"] is False and reply["code"] == code and fragment in reply["error"], reply
        named = body["type"] if code != "unknown_command" else None  # an unknown type is no command to name
        assert reply["command"] == named and reply["detail"] == reply["error"], reply
    for line, status, code in (
        ("warp 9", 400, "unknown_command"),
        ("zoom 99", 422, "invalid"),
        ("flip sideways", 422, "invalid"),
        ("zoom cam7 2", 404, "not_found"),
        ("record stop", 409, "conflict"),
    ):
        refused = httpx.post(url, content=line, headers={"Content-Type": "text/plain"})
        assert refused.status_code == status, (line, refused.text)
        reply = refused.json()
        assert (reply["ok"], reply["code"]) == (False, code) and reply["detail"] == reply["error"], reply
    assert zoom_of(server) == 2  # nothing refused changed anything

    # Found by fuzzing: each was a 500 (a NaN or 1e999 id echoed in the reply, a RecursionError).
    deep = "[" * 5000 + "]" * 5000
    for body in ('{"type": "zoom", "id": NaN}', '{"type": "zoom", "value": 2, "id": 1e999}', f'{{"id": {deep}}}'):
        for content_type in ("application/json", "text/plain"):
            refused = httpx.post(url, content=body, headers={"Content-Type": content_type})
            assert refused.status_code == 400 and refused.json()["code"] == "bad_request", (body[:40], refused.text)
    assert zoom_of(server) == 2

    photo = httpx.post(url, json={"type": "photo", "name": "north"}).json()
    assert photo["ok"], photo
    picture = media / "north.jpg"
    assert Path(photo["result"]["path"]) == picture and picture.read_bytes()[:2] == b"\xff\xd8"
    again = httpx.post(url, json={"type": "photo", "name": "north"})
    assert again.status_code == 409, again.text
    assert not again.json()["ok"] and again.json()["code"] == "conflict" and "already exists" in again.json()["error"]


def test_record_start_stop_writes_a_playable_mp4(vergence_server, tmp_path):
    media = tmp_path / "media"
    server = vergence_server("--size", "320x240", "--fps", "30", env={"VERGENCE_MEDIA__DIR": str(media)})
    url = f"{server.url}/api/commands"
    started = httpx.post(url, content="record flight-1", headers={"Content-Type": "text/plain"}).json()
    assert started["ok"] and started["result"]["recording"], started
    poll(
        lambda: httpx.get(f"{server.url}/api/stats").json()["streams"]["cam0"]["channels"]["h264"]["packets"] > 45,
        "45 H.264 packets",
    )
    assert not httpx.post(url, json={"type": "record"}).json()["ok"]  # one recording per stream at a time
    stopped = httpx.post(url, content="stop_recording", headers={"Content-Type": "text/plain"}).json()
    assert stopped["ok"] and not stopped["result"]["recording"] and stopped["result"]["frames"] >= 30, stopped
    [segment] = stopped["result"]["segments"]
    assert Path(segment["path"]).parent == media and Path(segment["path"]).name.startswith("flight-1-cam0-")
    with av.open(segment["path"]) as container:
        frames = sum(1 for _ in container.decode(video=0))
        size = (container.streams.video[0].width, container.streams.video[0].height)
    assert size == (320, 240)
    assert frames == stopped["result"]["frames"]


def test_control_websocket_commands_get_replies(vergence_server):
    server = vergence_server("--size", "320x240")
    with connect(f"{server.ws_url}/ws/control", legacy=True) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "state"
        ws.send(json.dumps({"type": "command", "text": "zoom 3", "id": 7}))
        ws.send(json.dumps({"type": "command", "command": {"type": "tilt", "value": 2}, "id": 8}))
        replies = {}
        deadline = time.monotonic() + DEADLINE_S
        while len(replies) < 2 and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=5))
            if message["type"] == "reply":
                replies[message["id"]] = message
    assert replies[7]["ok"] and replies[7]["command"] == "zoom" and replies[7]["result"]["zoom"] == 3
    assert not replies[8]["ok"] and replies[8]["code"] == "invalid" and "value" in replies[8]["error"]


def test_vergence_ctl_prints_the_reply_and_exits_by_outcome(vergence_server):
    server = vergence_server("--size", "320x240")
    base = [sys.executable, "-m", "vergence", "ctl", "--url", server.url]
    done = subprocess.run([*base, "zoom", "2.5"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["zoom"] == 2.5 and zoom_of(server) == 2.5
    as_json = subprocess.run([*base, "--json", '{"type": "status"}'], capture_output=True, text=True, timeout=30)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["result"]["cameras"]["cam0"]["zoom"] == 2.5
    refused = subprocess.run([*base, "zoom", "sideways"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "not a number" in json.loads(refused.stdout)["error"]
    unreachable = subprocess.run(
        [sys.executable, "-m", "vergence", "ctl", "--url", "http://127.0.0.1:9", "status"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr


def _insert(db: Path, created_at: datetime, kind: str, value: str | None, status: str = "pending") -> str:
    row_id = uuid.uuid4().hex
    with sqlite3.connect(db) as connection:
        connection.execute(
            "INSERT INTO commandmodel (id, created_at, updated_at, command_type, command_value, command_status) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (row_id, created_at.isoformat(sep=" "), created_at.isoformat(sep=" "), kind, value, status),
        )
    return row_id


def _rows(db: Path) -> dict[str, tuple[str, str | None, str]]:
    with sqlite3.connect(db) as connection:
        return {
            row[0]: (row[1], row[2], row[3])
            for row in connection.execute("SELECT id, command_status, meta_data, updated_at FROM commandmodel")
        }


def test_sqlite_inbox_runs_rows_oldest_first_and_sets_their_status(vergence_server, tmp_path):
    db = tmp_path / "library.db"
    # A PiStreamer-style database made before vergence starts, with an old finished row to purge.
    with sqlite3.connect(db) as connection:
        connection.execute(
            "CREATE TABLE commandmodel (id VARCHAR(255) NOT NULL PRIMARY KEY, created_at DATETIME NOT NULL, "
            "updated_at DATETIME NOT NULL, command_type VARCHAR(255) NOT NULL, command_value VARCHAR(255), "
            "command_status VARCHAR(255) NOT NULL, meta_data TEXT)"
        )
    now = datetime.now()
    stale = _insert(db, now - timedelta(days=3), "zoom", "1.5", status="completed")
    # Inserted newest first: the inbox must run them by created_at, so the last word is zoom 3.
    late = _insert(db, now + timedelta(milliseconds=3), "zoom", "3")
    bad = _insert(db, now + timedelta(milliseconds=2), "warp", "9")
    early = _insert(db, now + timedelta(milliseconds=1), "zoom", "2")
    pan = _insert(db, now + timedelta(milliseconds=4), "pan", "0.25")
    media = tmp_path / "media"
    env = {"VERGENCE_INBOX__ENABLED": "true", "VERGENCE_INBOX__PATH": str(db), "VERGENCE_MEDIA__DIR": str(media)}
    server = vergence_server("--size", "320x240", env=env)
    rows = poll(
        lambda: (r := _rows(db)) and all(r[i][0] != "pending" for i in (late, bad, early, pan)) and r,
        "every pending row to be processed",
    )
    assert rows[early][0] == rows[late][0] == rows[pan][0] == "completed"
    assert rows[bad][0] == "failed" and "unknown command 'warp'" in rows[bad][1]
    assert json.loads(rows[late][1])["zoom"] == 3
    assert rows[early][2] <= rows[bad][2] <= rows[late][2] <= rows[pan][2]  # finished in created_at order
    ptz = httpx.get(f"{server.url}/api/cameras/cam0/ptz").json()
    assert ptz["zoom"] == 3 and abs(ptz["pan"] - 0.25) < 0.01  # the crop snaps to even pixels
    assert stale not in rows  # finished more than keep_s ago: purged

    # Rows written while it runs are picked up too.
    later = _insert(db, datetime.now(), "take_photo", "inbox-shot")
    poll(lambda: _rows(db)[later][0] != "pending", "the new row")
    status, meta, _ = _rows(db)[later]
    assert status == "completed" and json.loads(meta)["path"] == str(media / "inbox-shot.jpg"), meta
    assert (media / "inbox-shot.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_fifo_lines_run_in_order_and_an_idle_pipe_costs_nothing(vergence_server, tmp_path):
    fifo = tmp_path / "vergence.fifo"
    replies = tmp_path / "replies.jsonl"
    server = vergence_server(
        "--size",
        "320x240",
        env={
            "VERGENCE_FIFO__ENABLED": "true",
            "VERGENCE_FIFO__PATH": str(fifo),
            "VERGENCE_FIFO__REPLY_PATH": str(replies),
        },
    )
    assert fifo.is_fifo()
    # No writer yet: the server serves and streams as usual.
    with httpx.stream("GET", f"{server.url}/stream/cam0.mjpeg", timeout=10) as response:
        received = 0
        for chunk in response.iter_bytes():
            received += chunk.count(b"--vergenceframe")
            if received >= 10:
                break
    # A writer that never blocks (the server holds the pipe open), writing several lines, one invalid, then leaving.
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"zoom 2\nwarp 9\npan 0.25\nzoom 3 camera=cam0\n")
    os.close(fd)
    poll(lambda: replies.exists() and len(replies.read_text().splitlines()) >= 4, "four replies")
    lines = [json.loads(line) for line in replies.read_text().splitlines()]
    assert [line["line"] for line in lines] == ["zoom 2", "warp 9", "pan 0.25", "zoom 3 camera=cam0"]
    assert [line["ok"] for line in lines] == [True, False, True, True]
    assert "unknown command 'warp'" in lines[1]["error"]
    ptz = httpx.get(f"{server.url}/api/cameras/cam0/ptz").json()
    assert ptz["zoom"] == 3 and abs(ptz["pan"] - 0.25) < 0.01  # the crop snaps to even pixels
    # Writers coming and going (end of file each time) neither stall nor spin the server; commands keep working.
    for _ in range(20):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    cpu_before = _cpu_s(server.process.pid)
    wall_before = time.monotonic()
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"zoom 1.5\n")
    os.close(fd)
    poll(lambda: zoom_of(server) == 1.5, "zoom 1.5 through the pipe")
    # A line longer than the limit is refused without losing the next one.
    writer = threading.Thread(target=_write_long_then_short, args=(fifo,))
    writer.start()
    writer.join(timeout=10)
    poll(lambda: zoom_of(server) == 2.25, "the command after an overlong line")
    assert any("longer than" in json.loads(line).get("error", "") for line in replies.read_text().splitlines())
    idle_share = (_cpu_s(server.process.pid) - cpu_before) / (time.monotonic() - wall_before)
    assert idle_share < 0.9, f"the server used {idle_share:.0%} of a core around pipe writers: a busy loop?"


def _write_long_then_short(fifo: Path) -> None:
    fd = os.open(fifo, os.O_WRONLY)
    try:
        os.write(fd, b"zoom " + b"9" * 5000 + b"\nzoom 2.25\n")
    finally:
        os.close(fd)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_reply_pipe_nobody_reads_never_blocks_the_server(vergence_server, tmp_path):
    fifo, reply_pipe = tmp_path / "in.fifo", tmp_path / "replies.fifo"
    os.mkfifo(reply_pipe)  # replies go to a pipe with no reader: opening it for writing would block or fail
    env = {
        "VERGENCE_FIFO__ENABLED": "true",
        "VERGENCE_FIFO__PATH": str(fifo),
        "VERGENCE_FIFO__REPLY_PATH": str(reply_pipe),
    }
    server = vergence_server("--size", "320x240", env=env)
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"zoom 2\nzoom 2.5\n")
    os.close(fd)
    poll(lambda: zoom_of(server) == 2.5, "both commands through the pipe")
    # Now a reader appears: the next reply reaches it.
    reader = os.open(reply_pipe, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b"zoom 3\n")
        os.close(fd)
        reply = poll(lambda: _read_some(reader), "a reply in the pipe")
        assert json.loads(reply.splitlines()[0]) | {"result": None} == {
            "line": "zoom 3",
            "ok": True,
            "command": "zoom",
            "result": None,
        }
    finally:
        os.close(reader)


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""
