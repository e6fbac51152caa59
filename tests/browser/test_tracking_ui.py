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


def target_pct(server: Any) -> tuple[float, float] | None:
    """Where the magenta target is in a snapshot, in % of the picture (None: not in it)."""
    jpeg = httpx.get(f"{server.url}/snapshot/cam0.jpg", timeout=10).content
    ycbcr = np.asarray(Image.open(io.BytesIO(jpeg)).convert("YCbCr"))
    ys, xs = np.nonzero((ycbcr[..., 1] > 200) & (ycbcr[..., 2] > 220))  # magenta: high Cb and Cr
    if len(xs) < 500:
        return None
    return 100 * float(xs.mean()) / ycbcr.shape[1], 100 * float(ys.mean()) / ycbcr.shape[0]


def tracking(server: Any) -> dict[str, Any]:
    answer = httpx.post(f"{server.url}/api/commands", content="status", timeout=10).json()
    return answer["result"]["tracking"]["cam0"]


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
    box = page.locator("#canvas").bounding_box()
    x, y = box["x"] + box["width"] * where[0] / 100, box["y"] + box["height"] * where[1] / 100
    page.keyboard.down("Alt")
    page.mouse.click(x, y)
    page.keyboard.up("Alt")
    player_page.wait_for("document.querySelector('#ptz-track').textContent === 'tracking'", 5000)
    assert tracking(server)["state"] == "tracking"
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
