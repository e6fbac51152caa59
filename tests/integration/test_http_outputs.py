"""MJPEG, snapshots, fMP4 for MSE, the stats API and the control WebSocket against a real server."""

import io
import json
import time

import av
import httpx
import simplejpeg
from websockets.sync.client import connect

from tests.integration.wsclient import VideoClient
from vergence.control.commands import COMMAND_TYPES
from vergence.encoders.fmp4 import iter_boxes
from vergence.media import timecode


def read_mjpeg_parts(url: str, count: int) -> list[tuple[dict[str, str], bytes]]:
    """Parse `count` parts of a multipart/x-mixed-replace response, as an independent client would."""
    parts = []
    with httpx.stream("GET", url, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "multipart/x-mixed-replace; boundary=vergenceframe"
        buffer = b""
        chunks = response.iter_bytes()
        while len(parts) < count:
            while b"\r\n\r\n" not in buffer:
                buffer += next(chunks)
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            assert lines[0] == "--vergenceframe"
            headers = dict(line.split(": ", 1) for line in lines[1:])
            length = int(headers["Content-Length"])
            while len(buffer) < length + 2:
                buffer += next(chunks)
            parts.append((headers, buffer[:length]))
            assert buffer[length : length + 2] == b"\r\n"
            buffer = buffer[length + 2 :]
    return parts


def test_mjpeg_parts_are_changing_jpegs_carrying_their_capture_time(shared_server):
    parts = read_mjpeg_parts(f"{shared_server.url}/stream/cam0.mjpeg", 15)
    seqs = [int(headers["X-Seq"]) for headers, _ in parts]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    pictures = set()
    for headers, jpeg in parts:
        image = simplejpeg.decode_jpeg(jpeg, colorspace="GRAY")
        assert image.shape[:2] == (360, 640)
        assert abs(timecode.read(image[..., 0]) - int(headers["X-Capture-Ns"])) < 1_000_000
        pictures.add(hash(image.tobytes()))
    assert len(pictures) == len(parts)  # the scene moves


def test_snapshot_is_the_newest_frame(shared_server):
    before = time.time_ns()
    response = httpx.get(f"{shared_server.url}/snapshot/cam0.jpg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = simplejpeg.decode_jpeg(response.content, colorspace="GRAY")
    captured = timecode.read(image[..., 0])
    assert captured == int(response.headers["X-Capture-Ns"]) // 1000 * 1000
    assert before - 200_000_000 < captured < time.time_ns()  # at most a few frames old


def test_fmp4_is_an_init_segment_then_one_fragment_per_frame(shared_server):
    with VideoClient.open(shared_server.ws_url, "/ws/fmp4/cam0") as client:
        init = client.next()
        assert client.init["mime"] == f'video/mp4; codecs="{client.init["codec"]}"'
        assert init.header.init and [box for box, _, _ in iter_boxes(init.payload)] == ["ftyp", "moov"]
        fragments = [client.next() for _ in range(30)]
    assert fragments[0].header.keyframe
    for fragment in fragments:
        kinds = [box for box, _, _ in iter_boxes(fragment.payload)]
        assert kinds == ["moof", "mdat"], kinds
    seqs = [fragment.header.seq for fragment in fragments]
    assert seqs == list(range(seqs[0], seqs[0] + 30))
    movie = init.payload + b"".join(fragment.payload for fragment in fragments)
    with av.open(io.BytesIO(movie), format="mp4") as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 30 and (frames[0].width, frames[0].height) == (640, 360)
    codes = [timecode.read(frame.to_ndarray(format="gray")) for frame in frames]
    assert all(abs(code - f.header.capture_ns) < 1_000_000 for code, f in zip(codes, fragments, strict=True))


def test_stats_report_rate_viewers_and_stage_timings(shared_server):
    def settled(stream: dict) -> bool:
        h264 = stream["channels"]["h264"]
        return (
            27 <= stream["fps"] <= 33
            and h264["running"]
            and h264["viewers"] >= 1
            and h264["bitrate_bps"] > 100_000
            and stream["stages_ms"]["capture"] > 0
            and stream["stages_ms"]["encode_h264"] > 0
            and 0 < h264["capture_to_send_ms"] < 100
        )

    with VideoClient.open(shared_server.ws_url, "/ws/video/cam0") as client:
        for _ in range(40):
            client.next()
        # fps, bitrate and the stage times are means over the last second or two, recomputed at each request: one
        # request can land on a window a busy machine thinned out. Poll for them, reading on between requests so the
        # viewer stays a healthy one.
        deadline = time.monotonic() + 15
        while not settled(stream := httpx.get(f"{shared_server.url}/api/stats").json()["streams"]["cam0"]):
            assert time.monotonic() < deadline, stream
            client.next()  # one frame interval between requests: the poll interval of this deadline loop


def test_control_ws_clock_sync_and_player_reports(shared_server):
    with connect(f"{shared_server.ws_url}/ws/control", legacy=True) as control:
        assert json.loads(control.recv(timeout=5))["type"] == "state"  # the current state comes first
        control.send(json.dumps({"type": "ping", "t": 12.5}))
        pong = json.loads(control.recv(timeout=5))
        assert pong["type"] == "pong" and pong["t"] == 12.5 and abs(pong["server_ns"] - time.time_ns()) < 1e9
        report = {
            "type": "report",
            "stream": "cam0",
            "player": "webcodecs",
            "fps": 30,
            "latency_ms": {"p50": 6.0, "p95": 9.0, "max": 12.0},
            "frames": 10,
            "dropped": 0,
        }
        control.send(json.dumps(report))
        control.send(json.dumps({"type": "bogus"}))
        error = json.loads(control.recv(timeout=5))
        assert error["type"] == "error" and error["code"] == "unknown_message" and "'bogus'" in error["error"], error
        control.send("not json")
        error = json.loads(control.recv(timeout=5))
        assert error["type"] == "error" and error["code"] == "bad_json" and "JSON" in error["error"], error
        clients = httpx.get(f"{shared_server.url}/api/stats").json()["clients"]
        assert {
            "stream": "cam0",
            "player": "webcodecs",
            "fps": 30,
            "latency_ms": report["latency_ms"],
            "frames": 10,
            "dropped": 0,
        } in clients


def test_control_ws_refuses_what_is_not_a_message_and_stays_open(shared_server):
    """Found by fuzzing: each of these closed the connection (1011), sent a reply that was not JSON, or made
    /api/stats answer 500 until the player left."""
    deep = "[" * 300 + "]" * 300
    refusals = [
        (b"\x00\x01", "bad_json", "not binary"),  # a binary frame: a KeyError closed the connection
        ('{"type": []}', "unknown_message", "got type []"),  # an unhashable type: a TypeError closed it
        ("[1, 2]", "unknown_message", "got a JSON list"),
        # The message kinds of the old protocol: commands go in the command envelope now.
        ('{"type": "ptz", "camera": "cam0", "zoom": 2}', "unknown_message", '{"type": "command", "command": {…}}'),
        ('{"type": "ping", "t": NaN}', "bad_json", "NaN"),  # the pong echoed NaN: not JSON
        ('{"type": "ping", "t": "\\udcff"}', "bad_json", "lone surrogate"),  # the pong could not be encoded
        ('{"type": "ping", "t": ' + "[" * 5000 + "]" * 5000 + "}", "bad_json", "nested deeper"),  # RecursionError
        ('{"type": "report", "latency_ms": {"p50": ' + deep + "}}", "bad_json", "nested deeper"),  # stats: 500
        ('{"type": "report", "fps": "fast", "frames": []}', "invalid", "fps"),
    ]
    with connect(f"{shared_server.ws_url}/ws/control", legacy=True) as control:
        assert json.loads(control.recv(timeout=5))["type"] == "state"
        for frame, code, fragment in refusals:
            control.send(frame)
            error = json.loads(control.recv(timeout=5))
            assert error["type"] == "error" and error["code"] == code and fragment in error["error"], (frame, error)
        control.send(json.dumps({"type": "ping", "t": 1}))
        assert json.loads(control.recv(timeout=5))["t"] == 1
        assert httpx.get(f"{shared_server.url}/api/stats").status_code == 200


def test_api_is_documented(shared_server):
    assert httpx.get(f"{shared_server.url}/docs").status_code == 200
    document = httpx.get(f"{shared_server.url}/openapi.json")
    paths = document.json()["paths"]
    assert {"/api/streams", "/api/stats", "/stream/{stream_id}.mjpeg", "/snapshot/{stream_id}.jpg"} <= set(paths)
    # Every reference resolves in the document: a body schema's own `#/$defs/…` would not (schemathesis then generated
    # a tenth of the cases for POST /api/commands and the overlay route).
    assert "#/$defs/" not in document.text
    command_body = paths["/api/commands"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert len(command_body["oneOf"]) == len(COMMAND_TYPES)


def test_index_page_is_served(shared_server):
    page = httpx.get(f"{shared_server.url}/")
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_fmp4_joiners_start_at_a_fresh_keyframe_not_a_backlog(shared_server):
    with VideoClient.open(shared_server.ws_url, "/ws/fmp4/cam0") as first:
        for _ in range(40):  # let the GOP age
            first.next()
        with VideoClient.open(shared_server.ws_url, "/ws/fmp4/cam0") as late:
            init = late.next()
            fragment = late.next()
            arrived = time.time_ns()
    assert init.header.init and fragment.header.keyframe
    assert arrived - fragment.header.capture_ns < 500_000_000  # fresh, not the start of a two-second GOP


def test_the_server_stops_promptly_with_an_mjpeg_viewer_connected(vergence_server):
    import signal

    server = vergence_server("--size", "320x240")
    with httpx.stream("GET", f"{server.url}/stream/cam0.mjpeg", timeout=10) as response:
        next(response.iter_bytes())
        server.process.send_signal(signal.SIGINT)
        started = time.monotonic()
        server.process.wait(timeout=8)
    assert time.monotonic() - started < 5
