"""`vergence serve --preview`: the stream in a window on the machine's display, here an Xvfb the test starts, read
back from a screenshot of that display (FFmpeg's x11grab): the time code the test camera paints decodes from the window,
and nothing is encoded for it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.polling import poll
from tests.support.xvfb import virtual_display
from vergence.media import timecode

SCREEN = (640, 480)


@pytest.fixture
def display() -> Iterator[str]:
    """A virtual X display of SCREEN's size."""
    with virtual_display(*SCREEN) as name:
        yield name


def screenshot(display: str) -> np.ndarray:
    """The whole screen as grey levels."""
    grab = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "x11grab", "-video_size", f"{SCREEN[0]}x{SCREEN[1]}", "-i", display]
        + ["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"],
        capture_output=True,
        check=True,
        timeout=20,
    )
    return np.frombuffer(grab.stdout, np.uint8).reshape(SCREEN[1], SCREEN[0])


def test_the_preview_window_shows_the_stream_live_without_an_encode(vergence_server, display):
    server = vergence_server(
        "--preview",
        "--size",
        f"{SCREEN[0]}x{SCREEN[1]}",
        "--fps",
        "30",
        env={"DISPLAY": display, "SDL_AUDIODRIVER": "dummy"},
    )
    stats = lambda: httpx.get(f"{server.url}/api/stats").json()  # noqa: E731
    poll(lambda: stats()["services"]["preview"]["frames"] > 30 or None, "30 pictures written to the window")

    # The window fills the screen (the picture's size): the time code sits in its top-left corner, as in the stream.
    first = poll(lambda: timecode.read(screenshot(display)), "a time code in the window", deadline_s=20)
    shown_at = time.time_ns()
    later = poll(lambda: (code := timecode.read(screenshot(display))) and code > first and code, "a later time code")
    assert 0 <= shown_at - first < 1_000_000_000, f"the window showed a picture {(shown_at - first) / 1e9:.2f} s old"
    assert later > first

    now = stats()
    assert now["services"]["preview"]["state"] == "running", now["services"]["preview"]
    # Nothing encoded for it: with no viewer, the stream's encoders never ran.
    channels = now["streams"]["cam0"]["channels"]
    assert all(not channels[name]["running"] and channels[name]["packets"] == 0 for name in ("h264", "jpeg", "raw"))


def test_a_preview_without_a_display_says_why_and_opens_once_the_display_is_there(vergence_server):
    """A service that starts before the desktop does: the window fails, the stream goes on, and the window opens when
    the display comes up (tried again after 2 s, then 4, …)."""
    number = next(n for n in range(150, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    env = {"DISPLAY": f":{number}", "WAYLAND_DISPLAY": "", "SDL_VIDEODRIVER": "x11", "SDL_AUDIODRIVER": "dummy"}
    server = vergence_server("--preview", "--size", "320x240", env=env)
    preview = lambda: httpx.get(f"{server.url}/api/stats").json()["services"]["preview"]  # noqa: E731
    failed = poll(lambda: (p := preview())["state"] == "failed" and p, "the preview's failure")
    assert "ffplay exited with" in failed["message"] and failed["failures"] >= 1, failed
    assert "preview of cam0: " in server.log() and "trying again in" in server.log()
    assert httpx.get(f"{server.url}/api/streams").json()[0]["state"] == "running"
    with virtual_display(320, 240, number):
        shown = poll(lambda: (p := preview())["state"] == "running" and p["frames"] > 10 and p, "the window", 30)
    assert shown["message"] is None, shown


def test_a_missing_player_is_a_clear_error_at_start(tmp_path):
    from tests.conftest import start_server

    config = tmp_path / "vergence.toml"
    config.write_text('[preview]\nenabled = true\nplayer = "no-such-ffplay"\n')
    with pytest.raises(RuntimeError) as failed:
        start_server(("--config", str(config)), tmp_path / "server.log")
    assert "'no-such-ffplay', which is not installed" in str(failed.value)
    assert "apt install ffmpeg" in str(failed.value)
