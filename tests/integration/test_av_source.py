"""The PyAV source: a file plays at its own rate and loops; a missing file is retried, not fatal."""

from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from tests.integration.wsclient import VideoClient
from tests.media import H264Decoder


def write_clip(path: Path, frames: int = 15, fps: int = 30) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(frames):
            image = np.zeros((240, 320, 3), np.uint8)
            image[:, (i * 20) % 320 :] = (0, 200, 50)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.mp4"
    write_clip(path)
    return path


def test_a_file_plays_at_its_rate_scaled_to_the_configured_size_and_loops(vergence_server, clip):
    server = vergence_server("--source", str(clip), "--size", "640x480", "--fps", "30")
    listed = httpx.get(f"{server.url}/api/streams").json()[0]
    assert listed["source"] == "av" and (listed["width"], listed["height"]) == (640, 480)
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as client:
        decoder = H264Decoder()
        messages = [client.next() for _ in range(45)]  # three times the clip's 15 frames
        sizes = {(f.width, f.height) for m in messages for f in decoder.decode(m.payload)}
    assert sizes == {(640, 480)}
    span_s = (messages[-1].header.capture_ns - messages[0].header.capture_ns) / 1e9
    assert 44 / 30 * 0.8 < span_s < 44 / 30 * 1.25  # paced like a camera, not as fast as it decodes
    stats = httpx.get(f"{server.url}/api/stats").json()["streams"]["cam0"]
    assert stats["state"] == "running" and stats["restarts"] == 0


def test_a_missing_file_is_reported_and_retried(vergence_server, tmp_path):
    server = vergence_server("--source", str(tmp_path / "nowhere.mp4"))
    import time

    deadline = time.monotonic() + 10
    stats = {}
    while time.monotonic() < deadline:
        stats = httpx.get(f"{server.url}/api/stats").json()["streams"]["cam0"]
        if stats["restarts"] >= 2:
            break
        time.sleep(0.05)
    assert stats["restarts"] >= 2 and "nowhere.mp4" in stats["last_error"]
    assert httpx.get(f"{server.url}/api/streams").status_code == 200  # the server itself is fine


def test_a_file_over_http_is_paced_like_a_local_one(vergence_server, clip):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(clip.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        server = vergence_server("--source", f"http://127.0.0.1:{httpd.server_address[1]}/{clip.name}", "--fps", "30")
        with VideoClient.open(server.ws_url, "/ws/video/cam0") as client:
            messages = [client.next() for _ in range(31)]
        span_s = (messages[-1].header.capture_ns - messages[0].header.capture_ns) / 1e9
        assert 30 / 30 * 0.8 < span_s < 30 / 30 * 1.25
    finally:
        httpd.shutdown()
