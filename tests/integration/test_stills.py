"""`photo` end to end: a full-resolution still with EXIF from a picamera2 server (the real picamera2, the fake libcamera on PYTHONPATH) while a viewer
watches, and a test-pattern server's photo; the files read back with Pillow, an independent reader."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
from PIL import Image

from tests.integration.wsclient import VideoClient
from vergence.media.frame import FLAG_CONFIG

FAKES = Path(__file__).resolve().parents[1] / "fakes"
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DEADLINE_S = 10.0

PICAMERA2_CONFIG = """
[[cameras]]
id = "cam0"
source = "picamera2"
size = "1280x720"
fps = 30
"""


def command(server, text: str) -> dict:
    reply = httpx.post(f"{server.url}/api/commands", content=text, headers={"Content-Type": "text/plain"}, timeout=30)
    body = reply.json()
    assert reply.status_code == 200 and body["ok"], body
    return body["result"]


def stream_stats(server) -> dict:
    return httpx.get(f"{server.url}/api/stats").json()["streams"]["cam0"]


def wait_for(check, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)  # poll interval of a deadline loop


def degrees(dms, ref: str) -> float:
    value = float(dms[0]) + float(dms[1]) / 60 + float(dms[2]) / 3600
    return -value if ref in ("S", "W") else value


def assert_exif(path: Path, model: str, lat: float, lon: float, alt_m: float) -> Image.Image:
    """Check the EXIF of a photo taken just now at the given position; return the opened image."""
    image = Image.open(path)
    exif = image.getexif()
    taken = datetime.strptime(exif.get_ifd(EXIF_IFD)[0x9003], "%Y:%m:%d %H:%M:%S")  # local time
    assert abs((datetime.now() - taken).total_seconds()) < 10
    assert exif[0x0110] == model
    gps = exif.get_ifd(GPS_IFD)
    assert abs(degrees(gps[2], gps[1]) - lat) < 1e-6 and abs(degrees(gps[4], gps[3]) - lon) < 1e-6
    assert gps[5] == b"\x00" and abs(float(gps[6]) - alt_m) < 1e-3
    return image


class Viewer:
    """A /ws/video viewer on a thread of its own, noting when each frame arrives."""

    def __init__(self, server) -> None:
        self.client = VideoClient.open(server.ws_url, "/ws/video/cam0")
        self.arrivals: list[tuple[float, int]] = []  # (perf_counter, capture_ns)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.client.next(timeout=DEADLINE_S)
            except Exception:
                return
            if not message.header.flags & FLAG_CONFIG:
                self.arrivals.append((time.perf_counter(), message.header.capture_ns))

    def wait_frames(self, count: int) -> None:
        target = len(self.arrivals) + count
        wait_for(lambda: len(self.arrivals) >= target)

    def gaps_ms(self, since: float) -> tuple[float, float]:
        """Longest gap since `since`: between arrivals, and between the frames' capture times."""
        window = [entry for entry in self.arrivals if entry[0] >= since - 1.0]
        arrival = max((b[0] - a[0]) * 1000 for a, b in zip(window, window[1:], strict=False))
        capture = max((b[1] - a[1]) / 1e6 for a, b in zip(window, window[1:], strict=False))
        return arrival, capture

    def close(self) -> None:
        self._stop.set()
        self.client.close()
        self._thread.join(timeout=DEADLINE_S)


def test_full_resolution_photo_with_exif_while_a_viewer_watches(vergence_server, tmp_path):
    media = tmp_path / "media"
    config = tmp_path / "pi.toml"
    config.write_text(PICAMERA2_CONFIG)
    env = {
        "PYTHONPATH": os.pathsep.join([str(FAKES), os.environ.get("PYTHONPATH", "")]),
        "VERGENCE_FAKE_LIBCAMERA_SENSORS": "imx708",
        "VERGENCE_MEDIA__DIR": str(media),
    }
    server = vergence_server("--config", str(config), env=env)
    wait_for(lambda: stream_stats(server)["frames"] > 10)
    assert stream_stats(server)["stills"] == {"count": 0, "last_stall_ms": None, "max_stall_ms": None}

    viewer = Viewer(server)
    try:
        viewer.wait_frames(30)
        assert command(server, "gps 47.3769,8.5417,408") == {"lat": 47.3769, "lon": 8.5417, "alt_m": 408.0}
        asked = time.perf_counter()
        photo = command(server, "photo north")
        viewer.wait_frames(30)  # the viewer keeps receiving frames after the still
        arrival_gap_ms, capture_gap_ms = viewer.gaps_ms(since=asked)
    finally:
        viewer.close()

    assert Path(photo["path"]) == media / "north.jpg"
    assert (photo["width"], photo["height"]) == (4608, 2592)
    assert photo["full_resolution"] is True and photo["reconfigured"] is True
    assert photo["exif"]["model"] == "imx708" and photo["exif"]["make"] == "Raspberry Pi"
    assert photo["exif"]["gps"] == {"lat": 47.3769, "lon": 8.5417, "alt_m": 408.0}
    image = assert_exif(media / "north.jpg", "imx708", 47.3769, 8.5417, 408)
    assert image.size == (4608, 2592) and image.getexif()[0x010F] == "Raspberry Pi"
    assert photo["bytes"] == (media / "north.jpg").stat().st_size

    stall_ms = photo["stall_ms"]
    print(
        f"\nphoto 4608x2592 from imx708 1280x720@30: stall reported {stall_ms} ms; the viewer saw a gap of "
        f"{arrival_gap_ms:.0f} ms between arrivals and {capture_gap_ms:.0f} ms between capture times"
    )
    stills = stream_stats(server)["stills"]
    assert stills["count"] == 1 and stills["last_stall_ms"] == stills["max_stall_ms"] == stall_ms
    # No frame is captured during the switch, so the viewer's capture times jump by about the reported stall.
    assert abs(capture_gap_ms - stall_ms) < 80
    assert 100 < stall_ms < 1000 and arrival_gap_ms < 1500

    again = httpx.post(f"{server.url}/api/commands", json={"type": "photo", "name": "north"}).json()
    assert not again["ok"] and "already exists" in again["error"]


def test_testpattern_photo_has_exif_time_and_gps_at_stream_size(vergence_server, tmp_path):
    media = tmp_path / "media"
    server = vergence_server("--size", "320x240", "--fps", "30", env={"VERGENCE_MEDIA__DIR": str(media)})
    wait_for(lambda: stream_stats(server)["frames"] > 5)
    command(server, "gps -33.8568,151.2153,-2.5")
    photo = command(server, "photo")
    assert (photo["width"], photo["height"]) == (320, 240)
    assert photo["full_resolution"] is False and photo["stall_ms"] is None
    image = Image.open(photo["path"])
    assert image.size == (320, 240)
    exif = image.getexif()
    assert exif[0x0110] == "vergence testpattern"
    taken = datetime.strptime(exif.get_ifd(EXIF_IFD)[0x9003], "%Y:%m:%d %H:%M:%S")
    assert abs((datetime.now() - taken).total_seconds()) < 10
    gps = exif.get_ifd(GPS_IFD)
    assert gps[1] == "S" and gps[3] == "E" and gps[5] == b"\x01"
    assert abs(degrees(gps[2], gps[1]) + 33.8568) < 1e-6 and abs(degrees(gps[4], gps[3]) - 151.2153) < 1e-6
    assert abs(float(gps[6]) - 2.5) < 1e-3
    assert Path(photo["path"]).name.startswith("cam0-") and stream_stats(server)["stills"]["count"] == 0
