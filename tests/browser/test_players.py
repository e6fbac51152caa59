"""The page plays the test pattern with each player in headless Chromium (acceptance criteria of the web page)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

PLAYER_LABELS = {"webcodecs": "WebCodecs", "mse": "MSE", "mjpeg": "MJPEG"}

# FNV-1a over the canvas pixels (as 32-bit words): equal pictures give equal hashes.
CANVAS_HASH_JS = """() => {
  const canvas = document.querySelector('#canvas');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const words = new Uint32Array(data.buffer, 0, data.byteLength >> 2);
  let h = 0x811c9dc5;
  for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 0x01000193);
  return {hash: h >>> 0, decoded: window.vergence.stats.decoded};
}"""


def test_webcodecs_decodes_99_percent_of_frames(player_page, server_720p):
    player_page.open(server_720p, "webcodecs")
    before = player_page.stats()
    player_page.wait_ms(before["t"], 5000)
    after = player_page.stats()

    decoded = after["decoded"] - before["decoded"]
    sent = after["lastDecodedSeq"] - before["lastDecodedSeq"]  # frames the source made in the window
    assert sent >= 145, f"the source made only {sent} frames in 5 s\n{player_page.describe()}"
    assert decoded >= 0.99 * sent, f"decoded {decoded} of {sent} frames\n{player_page.describe()}"
    assert decoded >= 145
    assert after["dropped"] == before["dropped"]
    assert after["lastSeq"] - after["lastDecodedSeq"] <= 3, "the decoder fell behind what was received"
    assert after["seqs"] == after["decoded"]  # read in the same snapshot: frames keep coming between two reads


def test_mse_plays_live_without_dropping(player_page, server_720p):
    player_page.open(server_720p, "mse")
    video = "document.querySelector('#video')"
    player_page.wait_for(f"{video}.currentTime > 0 && !{video}.paused", 20000)
    before = player_page.page.evaluate(f"() => ({{t: performance.now(), ct: {video}.currentTime}})")
    player_page.wait_ms(before["t"], 5000)
    after = player_page.page.evaluate(
        f"""() => {{
          const q = {video}.getVideoPlaybackQuality();
          const b = {video}.buffered;
          return {{ct: {video}.currentTime, total: q.totalVideoFrames, dropped: q.droppedVideoFrames,
                   lag: b.length ? b.end(b.length - 1) - {video}.currentTime : null}};
        }}"""
    )
    played = after["ct"] - before["ct"]
    assert played > 4.0, f"currentTime advanced {played:.2f} s in 5 s\n{player_page.describe()}"
    assert after["total"] >= 145, after
    assert after["dropped"] < 0.02 * after["total"], after
    assert after["lag"] is not None and after["lag"] < 1.0, f"{after['lag']} s behind the live edge"


def test_mjpeg_shows_changing_frames(player_page, server_720p):
    player_page.open(server_720p, "mjpeg")
    hashes = set()
    for _ in range(12):
        sample = player_page.page.evaluate(CANVAS_HASH_JS)
        hashes.add(sample["hash"])
        # The next sample once at least one more frame has been drawn.
        player_page.wait_for(f"window.vergence.stats.decoded > {sample['decoded']}", 5000)
    assert len(hashes) >= 8, f"only {len(hashes)} distinct pictures in 12 samples"


@pytest.mark.parametrize("player", ["webcodecs", "mse", "mjpeg"])
def test_hud_shows_latency(player_page, server_720p, player):
    player_page.open(server_720p, player)
    player_page.wait_for(r"/\d+(\.\d+)? ms/.test(document.querySelector('#hud-latency').textContent)", 15000)
    text = player_page.page.locator("#hud-latency").text_content()
    latency_ms = float(re.search(r"(-?\d+(?:\.\d+)?) ms", text).group(1))
    assert 0 < latency_ms < 1000, text
    player_page.wait_for("parseFloat(document.querySelector('#hud-fps').textContent) > 15", 10000)
    hud = {name: player_page.page.locator(f"#hud-{name}").text_content() for name in ("player", "resolution")}
    assert hud == {"player": PLAYER_LABELS[player], "resolution": "1280×720"}
    assert re.fullmatch(r"\d+\.\d\d Mbit/s", player_page.page.locator("#hud-bitrate").text_content())
