"""The stereo stream plays in the page like any camera (both eyes side by side), and its panel moves the eyes."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.browser.test_ptz_ui import set_slider
from tests.integration.test_stereo import STEREO_TOML

pytestmark = pytest.mark.browser


def test_stereo_stream_plays_with_webcodecs(player_page, vergence_server, tmp_path):
    config = tmp_path / "stereo.toml"
    config.write_text(STEREO_TOML)
    server = vergence_server("--config", str(config))
    player_page.page.goto(player_page.url(server, "?player=webcodecs&stream=stereo"))
    player_page.wait_for(
        "window.vergence && window.vergence.stream === 'stereo' && window.vergence.stats.decoded >= 60", 20000
    )
    size = player_page.page.evaluate(
        "() => { const c = document.querySelector('#canvas'); return [c.width, c.height]; }"
    )
    assert size == [640, 240]
    assert player_page.page.evaluate("() => window.vergence.stats.dropped") == 0


def test_the_stereo_page_shows_only_the_pair_edge_to_edge(player_page, vergence_server, tmp_path):
    config = tmp_path / "stereo.toml"
    config.write_text(STEREO_TOML)
    server = vergence_server("--config", str(config))
    player_page.page.goto(f"http://localhost:{server.port}/stereo")
    player_page.wait_for(
        "window.vergence && window.vergence.stream === 'stereo' && window.vergence.stats.decoded >= 30", 20000
    )
    assert "view=vr" in player_page.page.url
    assert player_page.page.evaluate("() => document.body.classList.contains('vr')")
    assert not player_page.page.locator("header").is_visible()
    assert not player_page.page.locator("#hud").is_visible()
    # The default player (WebRTC) shows the picture in the <video>; the others draw on the <canvas>.
    box = player_page.page.locator("#stage > video:not([hidden]), #stage > canvas:not([hidden])").bounding_box()
    assert box["width"] == 1280  # the whole viewport width; the picture keeps its aspect inside it


def _stereo(server) -> dict:
    return httpx.get(f"{server.url}/api/stereo", timeout=5).json()


def _wait_for_stereo(server, check, timeout_s: float = 10) -> dict:
    """Poll GET /api/stereo until `check` holds; fail with the last state seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = _stereo(server)
        if check(state):
            return state
        assert time.monotonic() < deadline, f"stereo rig never matched; last: {state}"
        time.sleep(0.05)  # poll interval of a deadline loop


def test_the_panel_moves_both_eyes_one_eye_and_the_vergence(player_page, vergence_server, tmp_path):
    config = tmp_path / "stereo.toml"
    config.write_text(STEREO_TOML)
    server = vergence_server("--config", str(config))
    page = player_page.page
    page.goto(player_page.url(server, "?player=webcodecs&stream=stereo"))
    player_page.wait_for("window.vergence && window.vergence.ptz && window.vergence.ptz.enabled", 20000)
    assert page.locator("#ptz-eyes").is_visible() and page.locator("#ptz-vergence").is_visible()

    # Both eyes (the default): one zoom slider zooms the pair.
    set_slider(page, "#ptz-zoom", 1.0)
    state = _wait_for_stereo(server, lambda s: s["left"]["zoom"] > 1.9 and s["right"]["zoom"] > 1.9)
    assert state["left"]["zoom"] == pytest.approx(2.0, rel=1e-3)
    assert state["right"]["zoom"] == pytest.approx(2.0, rel=1e-3)

    # The right eye alone: its pan moves, the left eye's stays.
    page.select_option("#ptz-eyes", "right")
    set_slider(page, "#ptz-pan", 0.4)
    state = _wait_for_stereo(server, lambda s: abs(s["right"]["pan"] - 0.4) < 1e-3)
    assert state["left"]["pan"] == pytest.approx(0.5, abs=1e-3)

    # Vergence from the slider turns the eyes in: their crops move toward each other.
    before = state
    set_slider(page, "#ptz-vergence", 0.1)
    state = _wait_for_stereo(server, lambda s: abs(s["vergence"] - 0.1) < 1e-6)
    assert state["left"]["crop"][0] > before["left"]["crop"][0]
    assert state["right"]["crop"][0] < before["right"]["crop"][0]

    # A change made elsewhere shows in the panel.
    response = httpx.put(f"{server.url}/api/stereo", json={"vergence": -0.2, "zoom": 3}, timeout=5)
    assert response.status_code == 200, response.text
    page.select_option("#ptz-eyes", "both")
    player_page.wait_for(
        "Math.abs(Number(document.querySelector('#ptz-vergence').value) + 0.2) < 1e-6"
        " && document.querySelector('#ptz-zoom-label').textContent === '3.0×'",
        5000,
    )
    assert player_page.errors == []


def test_the_panel_has_no_eye_controls_on_a_single_camera(player_page, vergence_server, tmp_path):
    config = tmp_path / "stereo.toml"
    config.write_text(STEREO_TOML)
    server = vergence_server("--config", str(config))
    page = player_page.page
    page.goto(player_page.url(server, "?player=webcodecs&stream=cam1"))
    player_page.wait_for("window.vergence && window.vergence.ptz && window.vergence.ptz.enabled", 20000)
    assert not page.locator("#ptz-eyes").is_visible()
    set_slider(page, "#ptz-zoom", 1.0)
    state = _wait_for_stereo(server, lambda s: s["right"]["zoom"] > 1.9)
    assert state["left"]["zoom"] == pytest.approx(1.0)
