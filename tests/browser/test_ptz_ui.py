"""The page's pan / tilt / zoom panel and gestures against a real server: the page moves the camera, and the page
shows every change, whoever made it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.browser

PANEL_READY = "window.vergence && window.vergence.ptz && window.vergence.ptz.enabled"
ZOOM_OF_PAGE = "2 ** Number(document.querySelector('#ptz-zoom').value)"


def ptz_url(server: Any, camera: str = "cam0") -> str:
    return f"{server.url}/api/cameras/{camera}/ptz"


def wait_for_ptz(server: Any, check: Callable[[dict[str, Any]], bool], timeout_s: float = 10) -> dict[str, Any]:
    """Poll GET …/ptz until `check` holds; fail with the last state seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = httpx.get(ptz_url(server), timeout=5).json()
        if check(state):
            return state
        assert time.monotonic() < deadline, f"server PTZ never matched; last: {state}"
        time.sleep(0.05)  # poll interval of a deadline loop


def open_with_panel(player_page: Any, server: Any) -> None:
    player_page.open(server, "webcodecs")
    player_page.wait_for(PANEL_READY, 10000)


def set_slider(page: Any, selector: str, value: float) -> None:
    page.evaluate(
        """([selector, value]) => {
             const el = document.querySelector(selector);
             el.value = String(value);
             el.dispatchEvent(new Event('input', {bubbles: true}));
             el.dispatchEvent(new Event('change', {bubbles: true}));
           }""",
        [selector, value],
    )


def test_zoom_slider_moves_the_camera(player_page, server_720p):
    open_with_panel(player_page, server_720p)
    assert httpx.get(ptz_url(server_720p), timeout=5).json()["zoom"] == pytest.approx(1.0)
    set_slider(player_page.page, "#ptz-zoom", 1.25)  # the slider is log2(zoom): 2^1.25 ≈ 2.38×
    state = wait_for_ptz(server_720p, lambda s: s["zoom"] > 2)
    assert state["zoom"] == pytest.approx(2**1.25, rel=1e-3)
    assert state["crop"][2] < state["sensor"][0]
    player_page.wait_for("document.querySelector('#ptz-zoom-label').textContent === '2.4×'", 5000)


def test_rest_change_shows_in_the_page(player_page, server_720p):
    open_with_panel(player_page, server_720p)
    response = httpx.put(ptz_url(server_720p), json={"zoom": 4, "pan": 0.3, "tilt": 0.6}, timeout=5)
    assert response.status_code == 200, response.text
    applied = response.json()
    player_page.wait_for(
        f"Math.abs({ZOOM_OF_PAGE} - 4) < 0.01"
        f" && Math.abs(Number(document.querySelector('#ptz-pan').value) - {applied['pan']}) < 0.002"
        f" && Math.abs(Number(document.querySelector('#ptz-tilt').value) - {applied['tilt']}) < 0.002"
        " && document.querySelector('#ptz-zoom-label').textContent === '4.0×'",
        5000,
    )

    # Home comes back to the whole field of view.
    player_page.page.click("#ptz-home")
    wait_for_ptz(server_720p, lambda s: s["zoom"] == pytest.approx(1.0) and s["pan"] == pytest.approx(0.5))
    player_page.wait_for("document.querySelector('#ptz-zoom-label').textContent === '1.0×'", 5000)


def test_change_in_one_page_shows_in_another(player_page, server_720p, browser):
    open_with_panel(player_page, server_720p)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        other = context.new_page()
        other.goto(player_page.url(server_720p, "?player=mjpeg"))
        other.wait_for_function(f"() => {PANEL_READY}", polling=50, timeout=20000)
        set_slider(player_page.page, "#ptz-zoom", math.log2(3))
        other.wait_for_function(
            "() => document.querySelector('#ptz-zoom-label').textContent === '3.0×'", polling=50, timeout=5000
        )
        set_slider(other, "#ptz-pan", 0.6)  # and back: the first page sees the second's pan
        player_page.wait_for("Math.abs(Number(document.querySelector('#ptz-pan').value) - 0.6) < 0.002", 5000)
    finally:
        context.close()


def test_fresh_page_shows_the_current_zoom(player_page, server_720p):
    response = httpx.put(ptz_url(server_720p), json={"zoom": 2.5}, timeout=5)
    assert response.status_code == 200, response.text
    open_with_panel(player_page, server_720p)
    assert player_page.page.locator("#ptz-zoom-label").text_content() == "2.5×"
    assert player_page.page.evaluate(f"() => {ZOOM_OF_PAGE}") == pytest.approx(2.5, rel=1e-3)


def test_wheel_over_the_video_zooms_in(player_page, server_720p):
    open_with_panel(player_page, server_720p)
    page = player_page.page
    box = page.locator("#canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 3, box["y"] + box["height"] / 3)
    page.mouse.wheel(0, -300)
    state = wait_for_ptz(server_720p, lambda s: s["zoom"] > 1.2)
    # Zoom is about the centre: the wheel does not pan.
    assert state["pan"] == pytest.approx(0.5, abs=0.01)
    assert state["tilt"] == pytest.approx(0.5, abs=0.01)


def test_drag_on_the_video_pans_against_the_pointer(player_page, server_720p):
    response = httpx.put(ptz_url(server_720p), json={"zoom": 4}, timeout=5)
    assert response.status_code == 200, response.text
    open_with_panel(player_page, server_720p)
    page = player_page.page
    box = page.locator("#canvas").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 3
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 200, y, steps=8)  # drag right: the view moves left
    page.mouse.up()
    # The picture follows the pointer: 200 px of a 1280 px wide picture is 200/1280 of the crop, a quarter of the sensor.
    expected = 0.5 - 200 / 1280 * 0.25
    state = wait_for_ptz(server_720p, lambda s: s["pan"] == pytest.approx(expected, abs=0.004))
    assert state["zoom"] == pytest.approx(4.0)
    assert state["tilt"] == pytest.approx(0.5, abs=0.01)


def test_panel_says_when_the_control_socket_is_down(player_page, server_720p):
    page = player_page.page
    # A WebSocket that never connects: the panel must stay disabled and say why.
    page.add_init_script(
        """(() => {
             const Real = window.WebSocket;
             window.WebSocket = function (url, ...rest) {
               return new Real(String(url).includes('/ws/control') ? 'ws://127.0.0.1:9/nowhere' : url, ...rest);
             };
             Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
             window.WebSocket.prototype = Real.prototype;
           })()"""
    )
    player_page.open(server_720p, "webcodecs")
    player_page.wait_for(
        "document.querySelector('#ptz-status').textContent.includes('control connection is down')", 5000
    )
    assert page.locator("#ptz-zoom").is_disabled()
    assert page.locator("#ptz-home").is_disabled()
