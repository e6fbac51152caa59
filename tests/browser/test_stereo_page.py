"""The stereo stream plays in the page like any camera: both eyes side by side."""

from __future__ import annotations

import pytest

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
    box = player_page.page.locator("#canvas").bounding_box()
    assert box["width"] == 1280  # the whole viewport width; the picture keeps its aspect inside it
