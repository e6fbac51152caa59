"""`[[whip]]` against a real SFU: vergence publishes over WHIP to Janus (behind simple-whip-server, both started here),
and Chromium, subscribed to Janus, decodes the stream. Janus stopped and started again: vergence is publishing again
within 5 s. A wrong token is reported as the endpoint's refusal; `output whip0 stop` hangs up (DELETE)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, start_server
from tests.polling import poll
from tests.support.janus import Janus, WhipServer, start_sfu, subscribe

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 640, 360
TOKEN = "whip-test-token"


@pytest.fixture
def sfu(tmp_path: Path, ice_address: str) -> Iterator[tuple[Janus, WhipServer]]:
    janus, whip = start_sfu(tmp_path / "sfu")
    yield janus, whip
    whip.stop()
    janus.stop()


def serve(directory: Path, url: str, token: str = TOKEN) -> ServerProcess:
    config = directory / "vergence.toml"
    config.write_text(
        f'[[cameras]]\nid = "cam0"\nsize = "{WIDTH}x{HEIGHT}"\nfps = 30\n'
        f'[[whip]]\nid = "whip0"\nstream = "cam0"\nurl = "{url}"\ntoken = "{token}"\n'
    )
    return start_server(("--config", str(config)), directory / "server.log")


def output(server: ServerProcess) -> dict[str, Any]:
    return httpx.get(f"{server.url}/api/outputs/whip0", timeout=5).json()


def decoded_frames(browser: Any, janus: Janus, at_least: int) -> dict[str, Any]:
    """Subscribe in a new tab and wait until it has decoded `at_least` frames; return what it decoded."""
    context = browser.new_context()
    try:
        page = context.new_page()
        subscribe(page, janus)
        return poll(
            lambda: (d := page.evaluate("() => window.decoded()"))["decoded"] >= at_least and d["width"] > 0 and d,
            f"{at_least} frames decoded from Janus",
            deadline_s=20,
        )
    finally:
        context.close()


def test_chromium_plays_what_vergence_published_to_janus_and_it_resumes_after_janus_restarts(browser, sfu, tmp_path):
    janus, whip = sfu
    server = serve(tmp_path, whip.endpoint("cam0", TOKEN))
    try:
        live = poll(lambda: (o := output(server))["state"] == "live" and o, "the WHIP session live", deadline_s=20)
        assert live["connects"] == 1 and live["failures"] == 0, live

        seen = decoded_frames(browser, janus, 60)
        assert (seen["width"], seen["height"]) == (WIDTH, HEIGHT), seen
        sent = output(server)
        assert sent["frames"] >= 60 and sent["bytes"] > 0, sent
        assert httpx.get(f"{server.url}/api/stats", timeout=5).json()["outputs"]["whip0"]["state"] == "live"
        metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
        assert 'vergence_output_up{output="whip0",kind="whip",stream="cam0"} 1' in metrics

        janus.stop()
        down = poll(lambda: (o := output(server))["state"] != "live" and o, "the session's end noticed", deadline_s=10)
        janus.start()
        back_at = time.monotonic()  # Janus is up (it answers its API): from here vergence has 5 s
        again = poll(lambda: (o := output(server))["connects"] == 2 and o["state"] == "live" and o, "live again", 20)
        resumed_s = time.monotonic() - back_at
        print(f"WHIP publishing resumed {resumed_s:.2f} s after Janus came back; failures {again['failures']}")
        assert resumed_s <= 5.0, f"publishing resumed {resumed_s:.1f} s after Janus came back: {again}"
        assert again["failures"] >= 1 and down["last_error"], down
        assert decoded_frames(browser, janus, 30)["width"] == WIDTH

        # Stopped by command: the session is hung up (simple-whip-server forgets it: the room has no publisher).
        stopped = httpx.put(f"{server.url}/api/outputs/whip0", json={"enabled": False}, timeout=10).json()
        assert stopped["state"] == "stopped" and not stopped["enabled"], stopped
        poll(lambda: '"enabled":false' in httpx.get(f"{whip.base}/endpoints").text.replace(" ", ""), "hung up")
    finally:
        server.stop()


def test_a_refused_token_is_reported_and_tried_again(sfu, tmp_path):
    janus, whip = sfu
    server = serve(tmp_path, whip.endpoint("cam0", TOKEN), token="not-the-token")
    try:
        failed = poll(lambda: (o := output(server))["failures"] >= 2 and o, "two refused offers")
        assert failed["last_error"].startswith("the endpoint answered 403"), failed
        assert failed["connects"] == 0 and failed["state"] in ("waiting", "connecting"), failed
        assert "not-the-token" not in server.log()
    finally:
        server.stop()
