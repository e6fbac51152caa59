"""The page's processing panel and HUD stage line against a real server: overlays, stabilization, regions of interest
and plugins change on the server when the page asks, and the page shows every change, whoever made it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.browser

PANEL_READY = "window.vergence && window.vergence.processing && window.vergence.processing.enabled"
SIZE = (320, 240)


def api(server: Any, path: str) -> str:
    return f"{server.url}/api/cameras/cam0/{path}"


def wait_for_rest(server: Any, path: str, check: Callable[[Any], bool], timeout_s: float = 10) -> Any:
    """Poll GET /api/cameras/cam0/<path> until `check` holds; fail with the last answer seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = httpx.get(api(server, path), timeout=5).json()
        if check(body):
            return body
        assert time.monotonic() < deadline, f"GET {path} never matched; last: {body}"
        time.sleep(0.05)  # poll interval of a deadline loop


def open_panel(player_page: Any, server: Any) -> Any:
    player_page.open(server, "webcodecs")
    player_page.wait_for(PANEL_READY, 10000)
    page = player_page.page
    assert page.locator("#processing").is_hidden()
    page.click("#processing-toggle")
    assert page.locator("#processing").is_visible()
    return page


def checked(selector: str) -> str:
    return f"document.querySelector('{selector}').checked"


def text_of(selector: str) -> str:
    return f"(document.querySelector('{selector}')?.textContent ?? '')"


@pytest.fixture
def server(vergence_server: Any, tmp_path: Path) -> Any:
    # Plugins added at run time come from the test's own directory ([processing] plugin_dir).
    return vergence_server("--size", f"{SIZE[0]}x{SIZE[1]}", env={"VERGENCE_PROCESSING__PLUGIN_DIR": str(tmp_path)})


def test_overlays_and_stabilization_follow_the_server(player_page, server):
    page = open_panel(player_page, server)

    page.click("#proc-ov-timestamp")
    wait_for_rest(server, "overlay", lambda o: o["timestamp"] is True)

    # Another controller's change shows in the panel.
    response = httpx.put(api(server, "overlay"), json={"crosshair": True}, timeout=5)
    assert response.status_code == 200, response.text
    player_page.wait_for(checked("#proc-ov-crosshair"), 5000)
    assert page.is_checked("#proc-ov-timestamp")
    assert not page.is_checked("#proc-ov-grid")

    # Stabilization on: the server runs the stage, and the HUD's stage line names it.
    assert "stab" not in page.locator("#hud-stages").text_content()
    page.click("#proc-stabilize")
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/api/stats", timeout=5).json()["streams"]["cam0"]["stages_ms"]["stabilize"] <= 0:
        assert time.monotonic() < deadline, "the server never stabilized"
        time.sleep(0.05)  # poll interval of a deadline loop
    player_page.wait_for(f"/\\bstab \\d+\\.\\d\\b/.test({text_of('#hud-stages')})", 5000)
    assert page.locator("#hud-stages").text_content().startswith("cap ")

    response = httpx.put(api(server, "stabilize"), json={"enabled": False}, timeout=5)
    assert response.status_code == 200, response.text
    player_page.wait_for(f"!{checked('#proc-stabilize')}", 5000)


def test_rois_from_the_form_and_from_a_drag(player_page, server):
    page = open_panel(player_page, server)

    page.fill("#proc-roi-name", "door")
    for field, value in {"x1": 10, "y1": 20, "x2": 40, "y2": 60}.items():
        page.fill(f"#proc-roi-{field}", str(value))
    page.fill("#proc-roi-colour", "red")
    page.click("#proc-roi-add")
    rois = wait_for_rest(server, "rois", lambda rois: [r["name"] for r in rois] == ["door"])
    assert rois[0] == {"name": "door", "x1": 10, "y1": 20, "x2": 40, "y2": 60, "colour": "red"}
    player_page.wait_for("document.querySelector('#proc-rois li[data-name=\"door\"] .swatch') !== null", 5000)

    # A bad one: the server's own words show in the panel, and nothing changes.
    page.fill("#proc-roi-name", "bad")
    page.fill("#proc-roi-x1", "60")
    page.fill("#proc-roi-x2", "20")
    page.click("#proc-roi-add")
    player_page.wait_for(f"{text_of('#proc-error')}.includes('x2 must be > x1')", 5000)
    assert page.locator("#proc-error").is_visible()
    assert [r["name"] for r in httpx.get(api(server, "rois"), timeout=5).json()] == ["door"]

    # Shift+drag on the picture draws one, in % of the picture as shown (object-fit: contain, at the top), and does
    # not pan the camera.
    response = httpx.put(api(server, "ptz"), json={"zoom": 2}, timeout=5)
    assert response.status_code == 200, response.text
    pan_before = response.json()["pan"]
    box = page.locator("#canvas").bounding_box()
    aspect = SIZE[0] / SIZE[1]
    width = min(box["width"], box["height"] * aspect)
    left, top, height = box["x"] + (box["width"] - width) / 2, box["y"], width / aspect

    def at(x_pct: float, y_pct: float) -> tuple[float, float]:
        return left + width * x_pct / 100, top + height * y_pct / 100

    page.fill("#proc-roi-name", "")
    page.keyboard.down("Shift")
    page.mouse.move(*at(25, 25))
    page.mouse.down()
    page.mouse.move(*at(50, 40), steps=4)
    page.mouse.move(*at(70, 55), steps=4)
    page.mouse.up()
    page.keyboard.up("Shift")
    rois = wait_for_rest(server, "rois", lambda rois: len(rois) == 2)
    drawn = next(r for r in rois if r["name"] != "door")
    assert drawn["name"] == "roi1"
    for field, expected in {"x1": 25, "y1": 25, "x2": 70, "y2": 55}.items():
        assert drawn[field] == pytest.approx(expected, abs=0.5), drawn
    assert httpx.get(api(server, "ptz"), timeout=5).json()["pan"] == pytest.approx(pan_before)
    player_page.wait_for("document.querySelector('#proc-rois li[data-name=\"roi1\"]') !== null", 5000)
    player_page.wait_for(f"{text_of('#proc-error')} === ''", 5000)  # a good change clears the old complaint

    # Delete with the row's button; another controller's delete shows too.
    page.click('#proc-rois button[data-roi="door"]')
    wait_for_rest(server, "rois", lambda rois: [r["name"] for r in rois] == ["roi1"])
    assert httpx.delete(api(server, "rois/roi1"), timeout=5).status_code == 200
    player_page.wait_for("document.querySelector('#proc-rois li[data-name]') === null", 5000)


PLUGIN = """
def process(frame, ctx):
    if ctx.options.get("fail"):
        raise RuntimeError("boom on purpose")
    ctx.publish({"mean": round(float(frame.gray().mean()), 1), "seq": frame.seq})
"""


def test_plugins_list_results_and_toggle(player_page, server, tmp_path: Path):
    path = tmp_path / "meter.py"
    path.write_text(PLUGIN)
    page = open_panel(player_page, server)
    player_page.wait_for(f"{text_of('#proc-plugins')} === 'none'", 5000)

    response = httpx.post(api(server, "plugins"), json={"name": "meter", "path": str(path)}, timeout=5)
    assert response.status_code == 201, response.text
    item = '#proc-plugins li[data-name="meter"]'
    player_page.wait_for(f"/^(branch|inline)$/.test({text_of(item + ' .badge')})", 5000)
    player_page.wait_for(f'/"mean":/.test({text_of("#proc-results")})', 5000)
    assert "meter #" in page.locator("#proc-results").text_content()

    page.click(f"{item} button")
    wait_for_rest(server, "plugins", lambda plugins: plugins[0]["state"] == "disabled")
    player_page.wait_for(f"{text_of(item + ' .badge')} === 'disabled'", 5000)
    page.click(f"{item} button")  # on again
    wait_for_rest(server, "plugins", lambda plugins: plugins[0]["state"] in ("branch", "inline"))

    # A plugin that raises is disabled by the server; the panel says so, with its error.
    response = httpx.post(
        api(server, "plugins"), json={"name": "broken", "path": str(path), "options": {"fail": True}}, timeout=5
    )
    assert response.status_code == 201, response.text
    broken = '#proc-plugins li[data-name="broken"]'
    player_page.wait_for(f"{text_of(broken + ' .badge')} === 'error'", 10000)
    assert "boom on purpose" in page.locator(f"{broken} .plugin-error").text_content()
    assert page.locator(f"{broken} button").text_content() == "enable"
