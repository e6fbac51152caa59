"""The iPhone path: a browser with ManagedMediaSource and no MediaSource, no WebCodecs (plain http is no secure context
on a phone) and no usable WebRTC. Emulated in Chromium: MediaSource removed and a ManagedMediaSource shim built on it,
which asks for data only between its `startstreaming` and `endstreaming` events, as Safari's does; the auto player
must play through it, say so in the HUD, and append only while asked."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

IPHONE_JS = """
(() => {
  const Native = window.MediaSource;
  window.__managed = { appendsWhileIdle: 0, appends: 0, created: 0 };
  class ManagedMediaSource extends Native {
    constructor() {
      super();
      window.__managed.created++;
      this.streaming = false;
      // Safari asks for data once attached; then, having enough, stops asking for a while, then asks again.
      this.addEventListener('sourceopen', () => setTimeout(() => this.#ask(true), 50));
      setTimeout(() => this.#ask(false), 800);
      setTimeout(() => this.#ask(true), 1200);
    }
    #ask(streaming) {
      this.streaming = streaming;
      this.dispatchEvent(new Event(streaming ? 'startstreaming' : 'endstreaming'));
    }
    addSourceBuffer(mime) {
      const buffer = super.addSourceBuffer(mime);
      const append = buffer.appendBuffer.bind(buffer);
      buffer.appendBuffer = (data) => {
        window.__managed.appends++;
        if (!this.streaming) window.__managed.appendsWhileIdle++;
        return append(data);
      };
      return buffer;
    }
  }
  delete window.MediaSource;
  window.ManagedMediaSource = ManagedMediaSource;
  delete window.VideoDecoder;
  delete window.RTCPeerConnection;
})();
"""


def test_the_auto_player_plays_through_a_managed_media_source(player_page, vergence_server):
    server = vergence_server("--size", "640x360", "--fps", "30")
    page = player_page.page
    page.add_init_script(IPHONE_JS)
    page.goto(player_page.url(server))
    player_page.wait_for("window.vergence && window.vergence.player === 'mse'", 10000)
    player_page.wait_for("window.vergence.stats.decoded >= 60", 20000)  # past the pause in the middle
    player_page.wait_for("document.querySelector('#hud-player').textContent === 'MSE (managed)'", 5000)
    managed = page.evaluate("() => window.__managed")
    assert managed["created"] >= 1 and managed["appends"] >= 60, managed
    assert managed["appendsWhileIdle"] == 0, managed
    assert page.evaluate("() => document.querySelector('video').disableRemotePlayback") is True
