"""Browser fixtures: one headless Debian Chromium for the session (never a Playwright-downloaded browser) and a
small driver for the vergence page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

STATS_JS = """() => {
  const s = window.vergence.stats;
  return {t: performance.now(), frames: s.frames, decoded: s.decoded, dropped: s.dropped,
          firstSeq: s.firstSeq, lastSeq: s.lastSeq, lastDecodedSeq: s.lastDecodedSeq,
          latencies: s.latencies.length, seqs: s.seqs.length, status: s.status};
}"""


class PlayerPage:
    """Drive the vergence page in one browser tab: open it with a player, wait on conditions, read stats."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.console: list[str] = []
        page.on("pageerror", lambda err: self.errors.append(str(err)))
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))

    def url(self, server: Any, query: str = "") -> str:
        """Address the page through `localhost`: Chromium treats it as a secure context, which WebCodecs needs."""
        return f"http://localhost:{server.port}/{query}"

    def open(self, server: Any, player: str, *, timeout_ms: int = 20000) -> None:
        """Load the page forcing `player`; wait until that player runs and has shown a few frames."""
        self.page.goto(self.url(server, f"?player={player}"))
        self.wait_for("window.vergence && window.vergence.player !== null", timeout_ms)
        chosen = self.page.evaluate("() => window.vergence.player")
        notice = self.page.locator("#notice").text_content()
        assert chosen == player, f"page chose {chosen!r} instead of {player!r}; notice: {notice!r}"
        self.wait_for("window.vergence.stats.decoded >= 5", timeout_ms)

    def wait_for(self, condition: str, timeout_ms: int) -> None:
        """Poll a JS expression until it is true; on timeout fail with the page's stats, HUD and console."""
        try:
            self.page.wait_for_function(f"() => {condition}", polling=50, timeout=timeout_ms)
        except Exception as err:  # playwright's TimeoutError: say what the page knew
            raise AssertionError(f"timed out waiting for {condition}\n{self.describe()}") from err

    def wait_ms(self, since_ms: float, duration_ms: float) -> None:
        """Wait until the page's clock passes since_ms + duration_ms: a measurement window, not a sleep."""
        self.wait_for(f"performance.now() >= {since_ms + duration_ms}", int(duration_ms) + 10000)

    def stats(self) -> dict[str, Any]:
        """Snapshot the counters of window.vergence.stats."""
        return self.page.evaluate(STATS_JS)

    def describe(self) -> str:
        stats = self.page.evaluate(f"() => window.vergence ? ({STATS_JS})() : null")
        hud = self.page.locator("#hud").inner_text() if self.page.locator("#hud").count() else None
        return f"stats: {stats}\nHUD: {hud!r}\nconsole (last 20): {self.console[-20:]}"


@pytest.fixture
def player_page(vergence_server: Any, browser: Any) -> Iterator[PlayerPage]:
    """A fresh tab; uncaught errors in it fail the test. It closes before the test's servers stop (it depends on
    their factory), so no server waits at shutdown for this page's connections."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    driver = PlayerPage(context.new_page())
    yield driver
    context.close()
    assert not driver.errors, f"uncaught errors in the page: {driver.errors}"


@pytest.fixture
def server_720p(vergence_server: Any) -> Any:
    """A server with the 1280x720@30 test pattern (the stream of the acceptance criteria)."""
    return vergence_server("--size", "1280x720", "--fps", "30")
