"""Page behaviour around the players: fallback, switching, reports back to the server."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

pytestmark = pytest.mark.browser


def test_forced_player_that_is_missing_falls_back(player_page, server_720p):
    # Without WebRTC as well, the fallback is the next in line after it: MSE.
    player_page.page.add_init_script("delete window.VideoDecoder; delete window.RTCPeerConnection")
    player_page.page.goto(player_page.url(server_720p, "?player=webcodecs"))
    player_page.wait_for("window.vergence && window.vergence.player !== null", 20000)
    assert player_page.page.evaluate("() => window.vergence.player") == "mse"
    notice = player_page.page.locator("#notice")
    assert notice.is_visible()
    assert "WebCodecs is not available" in notice.text_content()
    player_page.wait_for("window.vergence.stats.decoded >= 5", 20000)


def test_forced_player_that_is_missing_falls_back_to_webrtc_first(player_page, server_720p, ice_address):
    player_page.page.add_init_script("delete window.VideoDecoder")
    player_page.page.goto(player_page.url(server_720p, "?player=webcodecs"))
    player_page.wait_for("window.vergence && window.vergence.player !== null", 20000)
    assert player_page.page.evaluate("() => window.vergence.player") == "webrtc"
    assert "WebCodecs is not available" in player_page.page.locator("#notice").text_content()
    player_page.wait_for("window.vergence.stats.decoded >= 5", 20000)


def test_switching_player_reconnects(player_page, server_720p):
    player_page.open(server_720p, "webcodecs")
    player_page.page.select_option("#player-select", "mjpeg")
    player_page.wait_for("window.vergence.player === 'mjpeg' && window.vergence.stats.decoded >= 5", 20000)
    assert "player=mjpeg" in player_page.page.url
    assert player_page.page.locator("#canvas").is_visible()
    # The HUD refreshes a few times a second, so wait for it rather than read it at once.
    player_page.wait_for("document.querySelector('#hud-player').textContent === 'MJPEG'", 5000)


def test_latency_report_reaches_server_stats(player_page, server_720p):
    player_page.open(server_720p, "webcodecs")
    player_page.wait_for("window.vergence.clock.synced && window.vergence.stats.latencies.length > 30", 15000)
    # Reports go out every 2 s: poll /api/stats until one is there.
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(f"{server_720p.url}/api/stats", timeout=5) as response:
            clients = json.load(response).get("clients", [])
        report = next((c for c in clients if c.get("player") == "webcodecs" and c.get("latency_ms")), None)
        if report:
            break
        assert time.monotonic() < deadline, f"no webcodecs report in /api/stats: {clients}"
        time.sleep(0.2)
    assert report["stream"] == player_page.page.evaluate("() => window.vergence.stream")
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p95"] <= report["latency_ms"]["max"]


def test_stream_list_switches_stream(player_page, vergence_server, tmp_path):
    config = tmp_path / "two.toml"
    config.write_text(
        '[[cameras]]\nid = "cam0"\nsize = "640x360"\nfps = 15\n\n[[cameras]]\nid = "cam1"\nsize = "320x240"\nfps = 15\n'
    )
    server = vergence_server("--config", str(config))
    player_page.open(server, "webcodecs")
    page = player_page.page
    assert page.evaluate("() => window.vergence.stream") == "cam0"
    assert page.locator("#stream-select option").count() == 2
    player_page.wait_for("document.querySelector('#hud-resolution').textContent === '640×360'", 5000)

    page.select_option("#stream-select", "cam1")
    player_page.wait_for("window.vergence.stream === 'cam1' && window.vergence.stats.decoded >= 5", 20000)
    player_page.wait_for("document.querySelector('#hud-resolution').textContent === '320×240'", 5000)
    assert "stream=cam1" in page.url
    size = page.evaluate("() => { const c = document.getElementById('canvas'); return [c.width, c.height]; }")
    assert size == [320, 240]


def test_mjpeg_without_image_bitmaps_falls_back_to_img(player_page, vergence_server):
    server = vergence_server("--size", "640x360", "--fps", "10")
    page = player_page.page
    page.add_init_script("delete window.createImageBitmap")
    page.goto(player_page.url(server, "?player=mjpeg"))
    player_page.wait_for("document.querySelector('#mjpeg-img').naturalWidth === 640", 20000)
    assert page.locator("#mjpeg-img").is_visible()
    assert not page.locator("#canvas").is_visible()
    player_page.wait_for("document.querySelector('#hud-latency').textContent === 'n/a (<img>)'", 5000)


def test_hud_shows_a_failing_source(player_page, vergence_server, tmp_path):
    server = vergence_server("--source", str(tmp_path / "missing.mp4"))
    player_page.page.goto(player_page.url(server, "?player=webcodecs"))
    player_page.wait_for("document.querySelector('#hud-status').textContent.startsWith('restarting')", 20000)
    assert "missing.mp4" in player_page.page.locator("#hud-status").text_content()
    assert player_page.page.locator("#hud-latency").text_content() == "–"
