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
