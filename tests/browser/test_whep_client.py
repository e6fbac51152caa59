"""A third-party WHEP client, medooze's `whip-whep` from npm, on a page of another origin listed in `[auth]
allowed_origins`: its preflights pass, it plays the stream, its trickle PATCH learns 405, and its stop (which closes
the peer before it sends DELETE) ends cleanly. A page of an origin not listed gets nothing it can use."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.polling import poll

pytestmark = pytest.mark.browser

WHEP_JS = Path(__file__).parents[2] / "build/node/node_modules/whip-whep/whep.js"
PAGE = """<!doctype html>
<html><body><video autoplay muted playsinline></video>
<script type="module">
  import { WHEPClient } from './whep.js';
  window.responses = [];
  const nativeFetch = window.fetch;
  window.fetch = async (url, options) => {
    const answer = await nativeFetch(url, options);
    window.responses.push([(options && options.method) || 'GET', answer.status]);
    return answer;
  };
  window.play = async (url) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    const video = document.querySelector('video');
    pc.ontrack = (event) => { video.srcObject = event.streams[0] || new MediaStream([event.track]); };
    window.client = new WHEPClient();
    await window.client.view(pc, url);
  };
  window.stop = () => window.client.stop();
  window.ready = true;
</script></body></html>
"""


@pytest.fixture
def other_site(tmp_path: Path) -> Iterator[str]:
    """Another origin: a plain web server on its own port with the page and the WHEP client."""
    if not WHEP_JS.is_file():
        pytest.fail(f"{WHEP_JS} is missing: scripts/install.sh --test fetches whip-whep from npm")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(PAGE)
    shutil.copy(WHEP_JS, site / "whep.js")
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tab(browser: Any) -> Iterator[tuple[Any, list[str]]]:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    # Uncaught errors, and what the browser says when it blocks an answer (a 405 or a missing favicon it logs too).
    page.on("console", lambda message: errors.append(message.text) if "CORS" in message.text else None)
    yield page, errors
    context.close()


def start(vergence_server: Any, tmp_path: Path, origin: str) -> Any:
    config = tmp_path / "vergence.toml"
    config.write_text(f'[auth]\nallowed_origins = ["{origin}"]\n[[cameras]]\nid = "cam0"\nsize = "320x240"\nfps = 30\n')
    return vergence_server("--config", str(config))


def test_a_whep_client_on_an_allowed_site_plays_and_stops_cleanly(
    vergence_server, tmp_path, other_site, tab, ice_address
):
    page, errors = tab
    server = start(vergence_server, tmp_path, other_site)
    page.goto(f"{other_site}/index.html")
    page.wait_for_function("() => window.ready === true")
    page.evaluate("(url) => window.play(url)", f"{server.url}/api/webrtc/cam0")
    page.wait_for_function(
        "() => { const v = document.querySelector('video'); return v.videoWidth === 320 && v.currentTime > 0.5; }",
        polling=50,
        timeout=20000,
    )
    assert httpx.get(f"{server.url}/api/webrtc").json()["peers"] == 1
    page.wait_for_function("() => window.responses.some(([method]) => method === 'PATCH')", timeout=10000)
    page.evaluate("() => window.stop()")  # closes its peer, then DELETEs the session
    page.wait_for_function("() => window.responses.some(([method]) => method === 'DELETE')", timeout=10000)
    responses = page.evaluate("() => window.responses")
    assert ["POST", 201] in responses and ["DELETE", 200] in responses, responses
    assert all(status == 405 for method, status in responses if method == "PATCH"), responses  # no trickle ICE
    poll(lambda: httpx.get(f"{server.url}/api/webrtc").json()["peers"] == 0, "the peer to be gone")
    assert not errors, errors


def test_a_site_not_allowed_cannot_start_a_session(vergence_server, tmp_path, other_site, tab):
    page, errors = tab
    server = start(vergence_server, tmp_path, "http://allowed.example")
    page.goto(f"{other_site}/index.html")
    page.wait_for_function("() => window.ready === true")
    failure = page.evaluate(
        "(url) => window.play(url).then(() => 'played', (err) => String(err))", f"{server.url}/api/webrtc/cam0"
    )
    assert failure != "played" and "Failed to fetch" in failure, failure
    assert httpx.get(f"{server.url}/api/webrtc").json()["peers"] == 0
