"""The PyAV source: a file plays at its own rate and loops; a missing file is retried, not fatal."""

import time
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest

from tests.integration.wsclient import VideoClient
from tests.media import H264Decoder, write_clip


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


def write_striped_clip(path: Path, frames: int = 10) -> None:
    """A 1280x720 clip of 2-px black and white stripes: detail a 320x240 picture can only show when zoomed in."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.codec_context.options = {"crf": "10"}
        image = np.zeros((720, 1280, 3), np.uint8)
        image[:, (np.arange(1280) // 2) % 2 == 0] = 255
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_zoom_on_a_file_shows_its_native_detail(vergence_server, tmp_path):
    clip = tmp_path / "stripes.mp4"
    write_striped_clip(clip)
    server = vergence_server("--source", str(clip), "--size", "320x180", "--fps", "30")

    def centre_contrast() -> float:
        """Standard deviation of the luma in the centre of the newest picture (a JPEG snapshot: no rate control)."""
        jpeg = httpx.get(f"{server.url}/snapshot/cam0.jpg", timeout=5).content
        luma = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        return float(luma[60:120, 100:220].std())

    def wait_for_contrast(check) -> float:
        deadline = time.monotonic() + 5
        while not check(contrast := centre_contrast()):
            assert time.monotonic() < deadline, f"centre contrast stayed {contrast:.1f}"
            time.sleep(0.05)  # poll interval of a deadline loop
        return contrast

    # Scaled to a quarter of its width, the stripes average out to grey.
    ptz = httpx.get(f"{server.url}/api/cameras/cam0/ptz").json()
    assert ptz["sensor"] == [1280, 720]  # the decoded picture is this source's sensor
    wait_for_contrast(lambda c: c < 20)
    # At 4x the crop is 320x180 of the original pixels: the stripes are back at full contrast.
    applied = httpx.put(f"{server.url}/api/cameras/cam0/ptz", json={"zoom": 4}).json()
    assert applied["crop"] == [480, 270, 320, 180]
    wait_for_contrast(lambda c: c > 80)
