"""`[rtsp]`: rtsp://HOST:PORT/<stream> served by GStreamer's gst-rtsp-server, played by real clients over UDP and TCP.

Frames are counted from the test camera's time codes, read off the pictures each client decoded: 300 pictures in a row
cover at most 310 capture instants when no more than 10 were lost. GStreamer's pipeline is the issue's own
(`rtspsrc ! rtph264depay ! avdec_h264`), ending in raw grey pictures on stdout instead of a fakesink, so that they can be
read; its capture→decoded latency is measured from the same time codes.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, free_port, start_server
from tests.polling import poll
from tests.support import rtsp_client

WIDTH, HEIGHT, FPS = 320, 240, 30
TOKEN = "rtsp-viewer-token-0123456789"
CLIENT_TIMEOUT_S = 60


def serve(directory: Path, extra: str = "", rtsp: str = "") -> tuple[ServerProcess, str]:
    port = free_port()
    config = directory / "vergence.toml"
    config.write_text(
        f'[[cameras]]\nid = "cam0"\nsize = "{WIDTH}x{HEIGHT}"\nfps = {FPS}\n[h264]\ngop_frames = 30\n'
        f'[rtsp]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n{rtsp}{extra}'
    )
    return start_server(("--config", str(config)), directory / "server.log"), f"rtsp://127.0.0.1:{port}/cam0"


@pytest.fixture(scope="module")
def rtsp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    server, url = serve(tmp_path_factory.mktemp("rtsp"))
    yield server, url
    server.stop()


def service(server: ServerProcess) -> dict[str, Any]:
    return httpx.get(f"{server.url}/api/stats", timeout=5).json()["services"]["rtsp"]


def read_pictures(command: list[str], count: int) -> list[tuple[int, int]]:
    return rtsp_client.read_pictures(command, WIDTH, HEIGHT, count, CLIENT_TIMEOUT_S)


def assert_few_lost(pictures: list[tuple[int, int]]) -> None:
    """The pictures are in order, none twice, and cover at most count + 10 capture instants."""
    codes = [code for code, _ in pictures]
    assert codes == sorted(codes) and len(set(codes)) == len(codes), "pictures out of order or repeated"
    instants = rtsp_client.captured_between(pictures, FPS)
    assert instants <= len(codes) + 10, f"{len(codes)} pictures decoded of {instants} captured meanwhile"


gstreamer, ffmpeg = rtsp_client.gstreamer, rtsp_client.ffmpeg


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_gstreamer_decodes_the_stream_live_with_few_frames_lost(rtsp, transport):
    server, url = rtsp
    pictures = read_pictures(gstreamer(url, transport), 300)
    assert_few_lost(pictures)
    # Live: capture→decoded in GStreamer (rtspsrc latency=0) within a few frames.
    latencies_ms = sorted((arrived - code) / 1e6 for code, arrived in pictures[30:])
    p50 = statistics.median(latencies_ms)
    print(
        f"GStreamer over {transport}: capture→decoded p50 {p50:.1f} ms, p95 {latencies_ms[int(0.95 * len(latencies_ms))]:.1f} ms"
    )
    assert p50 < 200, f"capture→decoded p50 {p50:.0f} ms"


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_ffmpeg_decodes_the_stream_with_few_frames_lost(rtsp, transport):
    server, url = rtsp
    assert_few_lost(read_pictures(ffmpeg(url, transport), 300))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_ffprobe_counts_at_least_290_of_300_frames_in_ten_seconds(rtsp, transport):
    server, url = rtsp
    probe = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-rtsp_transport", transport, "-count_frames", "-select_streams", "v"),
            *("-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "default=nw=1"),
            *("-read_intervals", "%+10", url),
        ],
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
    )
    found = dict(line.split("=", 1) for line in probe.stdout.split())
    assert found.get("codec_name") == "h264", probe.stderr
    assert (int(found["width"]), int(found["height"])) == (WIDTH, HEIGHT)
    # Ten seconds of the stream's timestamps: 300 frames at 30 fps, one more where the interval's ends both count.
    assert 290 <= int(found["nb_read_frames"]) <= 302, found


def test_the_stream_is_encoded_only_while_someone_watches(rtsp):
    server, url = rtsp
    # No client since the previous test: the feed was dropped when its last client went.
    poll(lambda: not service(server)["streams"]["cam0"]["watched"] and service(server)["clients"] == 0, "no client")
    client = subprocess.Popen(gstreamer(url, "tcp"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        watched = poll(lambda: (s := service(server))["streams"]["cam0"]["watched"] and s, "the stream watched")
        assert watched["clients"] == 1 and watched["state"] == "running", watched
        poll(lambda: service(server)["streams"]["cam0"]["frames"] > 0, "frames sent to the RTSP server")
    finally:
        client.send_signal(signal.SIGINT)  # gst-launch tears its session down on SIGINT (with -e it would drain)
        try:
            client.wait(timeout=10)
        except subprocess.TimeoutExpired:
            client.kill()
    poll(lambda: not service(server)["streams"]["cam0"]["watched"], "the feed stopped once the client left")


def test_a_viewer_token_is_needed_once_auth_is_set(tmp_path):
    server, url = serve(
        tmp_path,
        f'[[auth.tokens]]\nname = "nvr"\ntoken = "{TOKEN}"\nrole = "viewer"\n'
        '[[auth.tokens]]\nname = "ops"\ntoken = "operator-token-0123456789"\nrole = "operator"\n',
    )
    try:

        def probe(target: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries", "stream=codec_name", target],
                capture_output=True,
                text=True,
                timeout=CLIENT_TIMEOUT_S,
            )

        host = url.removeprefix("rtsp://")
        refused = probe(url)
        assert refused.returncode != 0 and "401" in refused.stderr, refused
        wrong = probe(f"rtsp://nvr:not-the-token@{host}")
        assert wrong.returncode != 0 and "401" in wrong.stderr, wrong
        assert "codec_name=h264" in probe(f"rtsp://nvr:{TOKEN}@{host}").stdout
        # Any name before the token (an NVR's form may insist on one); an operator may watch too.
        assert "codec_name=h264" in probe(f"rtsp://anyone:{TOKEN}@{host}").stdout
        assert "codec_name=h264" in probe(f"rtsp://x:operator-token-0123456789@{host}").stdout
        # GStreamer's own way to give credentials.
        assert_few_lost(read_pictures(gstreamer(url, "tcp", ("nvr", TOKEN)), 60))
        assert "failed login from 127.0.0.1: unknown token" in server.log()  # the throttle counts RTSP too
    finally:
        server.stop()


def test_a_system_python_without_gstreamer_is_a_clear_error(tmp_path):
    """As on a machine without the packages: the venv's own python has no PyGObject. The start stops, naming them
    (as every service that cannot start does: a missing package is a configuration error)."""
    config = tmp_path / "vergence.toml"
    config.write_text(f'[rtsp]\nenabled = true\nport = {free_port()}\npython = "{os.path.realpath(sys.executable)}"\n')
    done = subprocess.run(
        [sys.executable, "-m", "vergence", "serve", "--config", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
    )
    assert done.returncode != 0
    assert "sudo apt install python3-gi gir1.2-gst-rtsp-server-1.0" in done.stderr + done.stdout, done.stderr


def test_a_dead_rtsp_process_is_started_again(tmp_path):
    server, url = serve(tmp_path)
    try:
        child = poll(lambda: rtsp_child(server.process.pid), "the RTSP process")
        os.kill(child, signal.SIGKILL)
        failed = poll(lambda: (s := service(server))["failures"] == 1 and s, "the failure counted")
        assert "exited with -9" in failed["last_error"], failed
        poll(lambda: service(server)["state"] == "running", "the RTSP server running again", deadline_s=20)
        assert_few_lost(read_pictures(ffmpeg(url, "tcp"), 60))
    finally:
        server.stop()


def rtsp_child(parent: int) -> int | None:
    """The pid of the server's rtsp_child.py process, if it runs."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"rtsp_child.py" in command:
                return int(entry.name)
    return None
