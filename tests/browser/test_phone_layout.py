"""The page on a phone held upright (390×844, touch): the picture at the top at its own shape, the HUD one line in its
corner, the PTZ panel below the picture instead of over it. Checked on screenshots' geometry (each saved beside the
test's other files), and the desktop layout is left as it was."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.browser

BOXES_JS = """() => {
  const box = (selector) => { const r = document.querySelector(selector).getBoundingClientRect();
                              return {x: r.x, y: r.y, width: r.width, height: r.height}; };
  return {picture: box('#canvas:not([hidden]), #video:not([hidden]), #stage img'), hud: box('#hud'), ptz: box('#ptz')};
}"""


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    yield page
    context.close()
    assert not errors, errors


def showing(page: Any, url: str) -> dict[str, Any]:
    page.goto(url)
    page.wait_for_function("() => window.vergence && window.vergence.stats.decoded >= 10", timeout=20000)
    page.wait_for_function("() => !document.querySelector('#ptz').classList.contains('disabled')", timeout=10000)
    return page.evaluate(BOXES_JS)


def test_on_a_phone_the_hud_is_one_line_and_the_ptz_panel_sits_below_the_picture(vergence_server, phone, tmp_path):
    server = vergence_server("--size", "1280x720", "--fps", "30")
    boxes = showing(phone, f"http://localhost:{server.port}/?player=mjpeg")
    phone.screenshot(path=str(tmp_path / "phone-portrait.png"))
    picture, hud, ptz = boxes["picture"], boxes["hud"], boxes["ptz"]
    assert picture["width"] == 390 and 200 <= picture["height"] <= 230, picture  # 16:9 across the width
    assert hud["height"] <= 30, hud  # one line (two would be about 38 px)
    assert hud["width"] * hud["height"] < 0.15 * picture["width"] * picture["height"], (hud, picture)
    assert ptz["y"] >= picture["y"] + picture["height"] - 1, (ptz, picture)  # below the picture, not over it
    assert ptz["y"] + ptz["height"] <= 844 and ptz["width"] > 300, ptz  # on screen, the width of the page
    assert phone.locator("#hud-player").is_visible() and phone.locator("#hud-latency").is_visible()
    assert not phone.locator("#hud-stages").is_visible()  # the details stay on larger screens


def test_the_desktop_layout_keeps_the_full_hud_and_the_floating_panel(vergence_server, browser, tmp_path):
    server = vergence_server("--size", "1280x720", "--fps", "30")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    boxes = showing(page, f"http://localhost:{server.port}/?player=mjpeg")
    page.screenshot(path=str(tmp_path / "desktop.png"))
    context.close()
    picture, hud, ptz = boxes["picture"], boxes["hud"], boxes["ptz"]
    assert hud["height"] > 100, hud  # every row
    assert ptz["y"] < picture["y"] + picture["height"], (ptz, picture)  # floats over the picture's corner
