"""GET /metrics on a real server: frame rate, a WebSocket viewer, growing stage histograms, source restarts, and auth."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.wsclient import VideoClient
from tests.media import write_feed
from tests.unit.test_metrics import Family, check_histograms, parse, value
from vergence.metrics import CONTENT_TYPE

# cam0: the 30 fps test camera a viewer watches. cam1: a 15-frame live feed (raw H.264, no duration) that ends after
# every run, so the supervisor restarts it, as it would a camera that keeps failing. (A file with `loop = false` ends
# for good instead: tests/security/test_file_source_end.py.)
CONFIG = """
[[cameras]]
id = "cam0"
source = "testpattern"
size = "320x240"
fps = 30

[[cameras]]
id = "cam1"
source = "{clip}"
size = "160x120"
fps = 30
"""

VIEWER_TOKEN = "metrics-scraper-token-0123456789"


def scrape(url: str, **headers: str) -> dict[str, Family]:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    families = parse(response.text)
    check_histograms(families)
    return families


def poll(url: str, done: Callable[[dict[str, Family]], bool], timeout_s: float = 20.0) -> dict[str, Family]:
    """Scrape until `done(families)` holds; fail with the last scrape's relevant values after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        families = scrape(url)
        if done(families):
            return families
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)  # poll interval of a deadline loop, not a wait for an event


def series(families: dict[str, Family], name: str, **labels: str) -> float | None:
    """A sample's value, or None while the series does not exist."""
    try:
        return value(families, name, **labels)
    except (AssertionError, KeyError):
        return None


def stage_count(families: dict[str, Family], stage: str) -> float:
    return value(families, "vergence_stage_latency_seconds_count", stream="cam0", stage=stage)


def drain(client: VideoClient, stop: threading.Event) -> None:
    """Read the viewer's messages so it stays a healthy viewer (never a slow one) while the test scrapes."""
    while not stop.is_set():
        try:
            client.next(timeout=1)
        except TimeoutError:
            continue
        except Exception:  # closed at the end of the test
            return


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "feed.h264"
    write_feed(path)
    return path


def test_metrics_follow_a_viewer_the_frame_rate_and_source_restarts(vergence_server, tmp_path, clip):
    config = tmp_path / "metrics.toml"
    config.write_text(CONFIG.format(clip=clip))
    server = vergence_server("--config", str(config))
    ws = {"stream": "cam0", "format": "h264", "kind": "ws"}

    with VideoClient.open(server.ws_url, "/ws/video/cam0") as client:
        stop = threading.Event()
        reader = threading.Thread(target=drain, args=(client, stop), daemon=True)
        reader.start()
        try:
            first = poll(
                server.url,
                lambda f: (
                    series(f, "vergence_viewers", **ws) == 1
                    and 28 <= value(f, "vergence_frames_per_second", stream="cam0") <= 32
                    and stage_count(f, "encode_h264") > 0
                    # The bitrate is a windowed rate: it reads 0 until the window holds packets, whatever the
                    # encode count says (CI once scraped in between).
                    and value(f, "vergence_published_bytes_per_second", stream="cam0", format="h264") > 0
                ),
            )
            assert value(first, "vergence_stream_up", stream="cam0") == 1
            assert value(first, "vergence_channel_producing", stream="cam0", format="h264") == 1
            assert first["vergence_frames_total"].type == "counter"
            stages = {labels["stage"] for _, labels, _ in first["vergence_stage_latency_seconds"].samples}
            assert {"capture", "ptz", "stabilize", "plugins", "overlay", "encode_h264", "encode_jpeg"} <= stages

            # A later scrape has seen more frames through every stage the viewer's packets pass.
            later = poll(
                server.url,
                lambda f: (
                    stage_count(f, "capture") > stage_count(first, "capture")
                    and stage_count(f, "encode_h264") > stage_count(first, "encode_h264")
                    and value(f, "vergence_send_to_wire_seconds_count", stream="cam0", format="h264")
                    > value(first, "vergence_send_to_wire_seconds_count", stream="cam0", format="h264")
                ),
            )
            for name in ("vergence_frames_total", "vergence_packets_total"):
                for _, labels, earlier in first[name].samples:
                    assert value(later, name, **labels) >= earlier
            h264 = {"stream": "cam0", "format": "h264"}
            assert value(later, "vergence_capture_to_send_seconds_count", **h264) > value(
                first, "vergence_capture_to_send_seconds_count", **h264
            )
        finally:
            stop.set()
    # The viewer left: its series goes, the H.264 counters stay where they were.
    gone = poll(server.url, lambda f: series(f, "vergence_viewers", **ws) is None)
    assert value(gone, "vergence_packets_total", **h264) >= value(later, "vergence_packets_total", **h264)

    # cam1's source ends after every 15 frames: each end is a restart, and the counter keeps rising.
    failing = poll(server.url, lambda f: value(f, "vergence_source_restarts_total", stream="cam1") >= 1)
    restarts = value(failing, "vergence_source_restarts_total", stream="cam1")
    poll(server.url, lambda f: value(f, "vergence_source_restarts_total", stream="cam1") > restarts)
    assert value(failing, "vergence_source_restarts_total", stream="cam0") == 0

    process = scrape(server.url)
    assert value(process, "vergence_process_open_fds") > 0
    assert value(process, "vergence_process_threads") >= 2
    assert value(process, "vergence_asyncio_tasks") >= 1
    assert value(process, "vergence_process_resident_memory_bytes") > 10e6
    assert value(process, "vergence_process_cpu_seconds_total") > 0
    assert [labels for _, labels, _ in process["vergence_build_info"].samples][0]["version"]


def test_a_scraper_needs_a_viewer_token_once_tokens_are_set(vergence_server, tmp_path):
    config = tmp_path / "auth.toml"
    config.write_text(
        f'[[cameras]]\nsize = "160x120"\n\n[[auth.tokens]]\nname = "prometheus"\ntoken = "{VIEWER_TOKEN}"\n'
    )
    server = vergence_server("--config", str(config))
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    families = scrape(server.url, authorization=f"Bearer {VIEWER_TOKEN}")
    assert value(families, "vergence_build_info", version=families["vergence_build_info"].samples[0][1]["version"]) == 1


def test_promtool_finds_nothing_to_say_about_the_metrics(vergence_server, tmp_path, clip):
    """Prometheus's own linter (Debian's prometheus package) on a scrape with every family present: a viewer's
    histograms, a restarting source, a UDP output."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: apt-get install prometheus (scripts/install.sh --test does)")
    config = tmp_path / "metrics.toml"
    config.write_text(CONFIG.format(clip=clip) + '[[udp]]\nid = "gcs"\nstream = "cam0"\nhost = "127.0.0.1"\nport = 9\n')
    server = vergence_server("--config", str(config))
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as client:
        client.next(timeout=10)
        families = poll(
            server.url, lambda f: value(f, "vergence_send_to_wire_seconds_count", stream="cam0", format="h264") > 0
        )
        assert "vergence_output_sent_bytes_per_second" in families
        text = httpx.get(f"{server.url}/metrics").text
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, ""), checked.stdout + checked.stderr
