"""Real RTSP clients that hand back what they decoded: raw grey pictures on their stdout, each read for the time code
the test camera painted into it (capture time), with the time it arrived here. Shared by tests/integration/test_rtsp.py
and `vergence bench rtsp`."""

from __future__ import annotations

import subprocess
import threading
import time

import numpy as np

from vergence.media import timecode


def gstreamer(url: str, transport: str, credentials: tuple[str, str] | None = None) -> list[str]:
    """GStreamer's `rtspsrc ! rtph264depay ! avdec_h264`, rtspsrc's jitter buffer at 0 ms, pictures to stdout."""
    auth = [f"user-id={credentials[0]}", f"user-pw={credentials[1]}"] if credentials else []
    return [
        *("gst-launch-1.0", "-q", "rtspsrc", f"location={url}", f"protocols={transport}", "latency=0", *auth),
        *("!", "rtph264depay", "!", "avdec_h264", "!", "videoconvert", "!", "video/x-raw,format=GRAY8"),
        *("!", "fdsink", "fd=1", "sync=false"),
    ]


def ffmpeg(url: str, transport: str) -> list[str]:
    """FFmpeg's RTSP client and H.264 decoder, pictures to stdout."""
    return [
        *("ffmpeg", "-loglevel", "error", "-rtsp_transport", transport, "-i", url),
        *("-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"),
    ]


def read_pictures(
    command: list[str], width: int, height: int, count: int, timeout_s: float = 60.0
) -> list[tuple[int, int]]:
    """Run a client; return (time code, arrival ns) of its first `count` pictures. AssertionError if it gave fewer
    within `timeout_s` (with what it said), or a picture without a readable time code."""
    size = width * height
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    timer = threading.Timer(timeout_s, process.kill)  # a client that hangs ends; the count below says so
    timer.start()
    pictures: list[tuple[int, int]] = []
    try:
        while len(pictures) < count:
            data = process.stdout.read(size)
            if len(data) < size:
                break
            arrived = time.time_ns()
            code = timecode.read(np.frombuffer(data, np.uint8).reshape(height, width))
            assert code is not None, f"picture {len(pictures)} has no readable time code"
            pictures.append((code, arrived))
    finally:
        timer.cancel()
        process.kill()
        _, stderr = process.communicate()
    assert len(pictures) == count, f"{command[0]} decoded {len(pictures)} pictures: {stderr.decode()[-2000:]}"
    return pictures


def captured_between(pictures: list[tuple[int, int]], fps: float) -> int:
    """How many pictures the camera captured from the first of `pictures` to the last (its frame interval apart)."""
    return round((pictures[-1][0] - pictures[0][0]) * fps / 1e9) + 1
