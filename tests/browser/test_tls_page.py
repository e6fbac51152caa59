"""Why TLS exists: from another machine (a non-loopback address) the page over plain http is no secure context and has
no WebCodecs; over https with the certificate of `--tls auto` it is one, and WebCodecs decodes the stream over wss."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.browser.conftest import PlayerPage
from tests.integration.test_tls import HttpsServer, start_https_server
from tests.support import chromium
from vergence import tls

pytestmark = pytest.mark.browser

SECURE_JS = "() => ({secure: window.isSecureContext, decoder: typeof VideoDecoder})"


@pytest.fixture
def tls_server(tmp_path: Path, ice_address: str) -> Iterator[HttpsServer]:
    server = start_https_server(ice_address, tmp_path / "tls", tmp_path / "server.log", "--size", "640x360")
    yield server
    server.process.stop()


@pytest.fixture
def trusting_browser(browser: Any, tls_server: HttpsServer) -> Iterator[Any]:
    """A second Chromium of the session's Playwright that accepts exactly this server's key, by its SPKI hash: no
    certificate error is ignored for any other key."""
    certificate = x509.load_pem_x509_certificate(tls_server.cert_path.read_bytes())
    pin = base64.b64encode(tls.spki_sha256(certificate)).decode()
    trusting = chromium.launch(browser.browser_type, f"--ignore-certificate-errors-spki-list={pin}")
    yield trusting
    trusting.close()


@pytest.fixture
def tls_page(trusting_browser: Any) -> Iterator[PlayerPage]:
    context = trusting_browser.new_context(viewport={"width": 1280, "height": 800})
    driver = PlayerPage(context.new_page())
    yield driver
    context.close()
    assert not driver.errors, f"uncaught errors in the page: {driver.errors}"


def test_https_page_at_the_lan_address_decodes_with_webcodecs_over_wss(tls_page, tls_server):
    sockets: list[str] = []
    tls_page.page.on("websocket", lambda ws: sockets.append(ws.url))
    tls_page.page.goto(f"{tls_server.url}/?player=webcodecs")
    tls_page.wait_for("window.vergence && window.vergence.player !== null", 20000)

    assert tls_page.page.evaluate(SECURE_JS) == {"secure": True, "decoder": "function"}
    assert tls_page.page.evaluate("() => window.vergence.player") == "webcodecs", tls_page.describe()
    tls_page.wait_for("window.vergence.stats.decoded >= 30", 20000)
    assert tls_page.page.locator("#notice").is_hidden()
    video_sockets = [url for url in sockets if "/ws/video/" in url]
    assert video_sockets and all(url.startswith(f"{tls_server.ws_url}/ws/video/") for url in video_sockets), sockets


def test_the_certificate_is_not_trusted_without_its_pin(player_page, tls_server):
    # The session's browser has no pin: the same page fails on the certificate, so the pin is what trusts it.
    with pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"):
        player_page.page.goto(f"{tls_server.url}/")


def test_plain_http_page_at_the_lan_address_has_no_webcodecs(player_page, vergence_server, ice_address):
    # The last --host wins over the fixture's 127.0.0.1: all interfaces, as on a LAN.
    server = vergence_server("--host", "0.0.0.0", "--size", "640x360")
    player_page.page.goto(f"http://{ice_address}:{server.port}/?player=webcodecs")
    player_page.wait_for("window.vergence && window.vergence.player !== null", 20000)

    assert player_page.page.evaluate(SECURE_JS) == {"secure": False, "decoder": "undefined"}
    assert player_page.page.evaluate("() => window.vergence.player") != "webcodecs"
    assert "WebCodecs is not available" in player_page.page.locator("#notice").text_content()
