"""Picking a target on the page: Alt-click on the picture tracks what is there, the view follows it, the panel says
so, and Esc stops tracking."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

PANEL_READY = "window.vergence && window.vergence.ptz && window.vergence.ptz.enabled"


def target_pct(server: Any, stream: str = "cam0") -> tuple[float, float] | None:
    """Where the magenta target is in a snapshot, in % of the picture (None: not in it); on the stereo stream, in the
    left eye's half only."""
    jpeg = httpx.get(f"{server.url}/snapshot/{stream}.jpg", timeout=10).content
    ycbcr = np.asarray(Image.open(io.BytesIO(jpeg)).convert("YCbCr"))
    if stream == "stereo":
        ycbcr = ycbcr[:, : ycbcr.shape[1] // 2]
    ys, xs = np.nonzero((ycbcr[..., 1] > 200) & (ycbcr[..., 2] > 220))  # magenta: high Cb and Cr
    if len(xs) < 200:
        return None
    width = ycbcr.shape[1] * (2 if stream == "stereo" else 1)
    return 100 * float(xs.mean()) / width, 100 * float(ys.mean()) / ycbcr.shape[0]


def page_point(page: Any, aspect: float, x_pct: float, y_pct: float) -> tuple[float, float]:
    """Where (x_pct, y_pct) of the picture is on the page: the canvas shows it whole, centred (object-fit: contain)."""
    box = page.locator("#canvas").bounding_box()
    width = min(box["width"], box["height"] * aspect)
    height = width / aspect
    left, top = box["x"] + (box["width"] - width) / 2, box["y"] + (box["height"] - height) / 2
    return left + width * x_pct / 100, top + height * y_pct / 100


def tracking(server: Any, stream: str = "cam0") -> dict[str, Any]:
    answer = httpx.post(f"{server.url}/api/commands", content="status", timeout=10).json()
    return answer["result"]["tracking"][stream]


def test_alt_click_tracks_what_is_there_and_escape_stops(player_page, vergence_server, tmp_path):
    config = tmp_path / "vergence.toml"
    # A slow target: it moves little between the snapshot the test reads and the click.
    config.write_text(
        '[[cameras]]\nid = "cam0"\nsize = "1280x720"\nfps = 30\noptions = { target = "orbit", target_speed = "40" }\n'
    )
    server = vergence_server("--config", str(config))
    assert httpx.put(f"{server.url}/api/cameras/cam0/ptz", json={"zoom": 2}, timeout=5).status_code == 200
    player_page.open(server, "webcodecs")
    player_page.wait_for(PANEL_READY, 10000)
    page = player_page.page
    where = target_pct(server)
    assert where is not None, "the target is not in the view"
    x, y = page_point(page, 1280 / 720, *where)
    page.keyboard.down("Alt")
    page.mouse.click(x, y)
    page.keyboard.up("Alt")
    player_page.wait_for("document.querySelector('#ptz-track').textContent === 'tracking'", 5000)
    assert tracking(server)["state"] in ("tracking", "searching")  # a frame or two not found is searching
    # The view follows the target: within a few seconds it is in the middle of the picture.
    deadline = time.monotonic() + 5
    while True:
        where = target_pct(server)
        if where is not None and abs(where[0] - 50) < 5 and abs(where[1] - 50) < 5:
            break
        assert time.monotonic() < deadline, f"the target is not in the middle: {where}, {tracking(server)}"
        time.sleep(0.1)  # poll interval of a deadline loop
    page.keyboard.press("Escape")
    player_page.wait_for("document.querySelector('#ptz-track').hidden", 5000)
    state = tracking(server)
    assert state["state"] == "idle" and state["reason"] == "stopped", state


def test_alt_click_on_the_right_eye_of_the_stereo_stream_makes_both_eyes_fixate(player_page, vergence_server, tmp_path):
    config = tmp_path / "vergence.toml"
    camera = 'size = "640x360"\nfps = 30\n'
    config.write_text(
        f'[[cameras]]\nid = "cam0"\n{camera}options = {{ target = "orbit", target_speed = "40" }}\n'
        f'[[cameras]]\nid = "cam1"\n{camera}options = {{ target = "orbit", target_speed = "40", target_disparity = "30" }}\n'
        "[stereo]\nenabled = true\n"
    )
    server = vergence_server("--config", str(config))
    assert httpx.put(f"{server.url}/api/stereo", json={"zoom": 2}, timeout=5).status_code == 200
    page = player_page.page
    page.goto(player_page.url(server, "?player=webcodecs&stream=stereo"))
    player_page.wait_for(f"window.vergence && window.vergence.stream === 'stereo' && {PANEL_READY}", 20000)
    where = target_pct(server, "stereo")  # in % of the side-by-side picture: the left eye's half
    assert where is not None and where[0] < 50, where
    # The same place in the right eye's half (30 px of disparity on a 640 px eye is within the picked box).
    x, y = page_point(page, 1280 / 360, where[0] + 50, where[1])
    page.keyboard.down("Alt")
    page.mouse.click(x, y)
    page.keyboard.up("Alt")
    player_page.wait_for("document.querySelector('#ptz-track').textContent === 'tracking'", 5000)
    deadline = time.monotonic() + 5
    while True:  # the eyes turn in: 30 sensor px on 640 px wide crops
        rig = httpx.get(f"{server.url}/api/stereo", timeout=5).json()
        if abs(rig["vergence"] - 30 / 640) < 0.005:
            break
        assert time.monotonic() < deadline, f"the eyes did not fixate: {rig['vergence']}, {tracking(server, 'stereo')}"
        time.sleep(0.1)  # poll interval of a deadline loop
    page.keyboard.press("Escape")
    player_page.wait_for("document.querySelector('#ptz-track').hidden", 5000)
    assert tracking(server, "stereo")["state"] == "idle"
