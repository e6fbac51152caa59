"""Signing in from the browser: the sign-in page, a ?token= link, the browser's basic-auth prompt; a viewer's page
plays without the controls it may not use, an operator's has them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.browser.conftest import PlayerPage

pytestmark = pytest.mark.browser

VIEWER_TOKEN = "viewer-page-token-0123456789"
OPERATOR_TOKEN = "operator-page-token-0123456789"
PASSWORD = "a password for alice"
AUTH_ENV = {
    "VERGENCE_AUTH__TOKENS": json.dumps(
        [
            {"name": "watcher", "token": VIEWER_TOKEN, "role": "viewer"},
            {"name": "pilot", "token": OPERATOR_TOKEN, "role": "operator"},
        ]
    ),
    "VERGENCE_AUTH__USERS": json.dumps([{"name": "alice", "password": PASSWORD, "role": "operator"}]),
}


@pytest.fixture
def guarded(vergence_server: Any) -> Any:
    return vergence_server("--size", "640x360", "--fps", "30", env=AUTH_ENV)


def test_the_sign_in_page_takes_a_viewer_token_and_the_page_plays_without_controls(
    player_page: PlayerPage, vergence_server: Any
) -> None:
    # Tokens only: with users the server also asks for basic auth, and the browser's own prompt comes first.
    tokens_only = {"VERGENCE_AUTH__TOKENS": AUTH_ENV["VERGENCE_AUTH__TOKENS"]}
    server = vergence_server("--size", "640x360", "--fps", "30", env=tokens_only)
    page = player_page.page
    response = page.goto(player_page.url(server, "?player=webcodecs"))
    assert response is not None and response.status == 401
    page.fill("input[name=token]", VIEWER_TOKEN)
    page.click("form button")
    player_page.wait_for("window.vergence && window.vergence.session && window.vergence.stats.decoded >= 5", 20000)
    assert VIEWER_TOKEN not in page.url  # dropped from the address once the cookie is set
    assert page.locator("#who").text_content() == "watcher · view only"
    assert not page.locator("#ptz").is_visible() and not page.locator("#rec-button").is_visible()
    assert page.locator("#player-select").is_visible()
    # The page's own WebSocket carries the cookie; a command sent over it is refused by role, not by connection.
    reply = page.evaluate(
        """() => new Promise((resolve) => {
          const ws = new WebSocket(`ws://${location.host}/ws/control`);
          ws.onmessage = (event) => {
            const message = JSON.parse(event.data);
            if (message.type === 'state') ws.send(JSON.stringify({type: 'command', text: 'zoom 2'}));
            if (message.type === 'reply') { resolve(message); ws.close(); }
          };
        })"""
    )
    assert (reply["ok"], reply["code"]) == (False, "forbidden")


def test_an_operator_link_shows_the_controls(player_page: PlayerPage, guarded: Any) -> None:
    player_page.page.goto(player_page.url(guarded, f"?token={OPERATOR_TOKEN}&player=webcodecs"))
    player_page.wait_for("window.vergence && window.vergence.session && window.vergence.stats.decoded >= 5", 20000)
    page = player_page.page
    assert "token=" not in page.url and "player=webcodecs" in page.url
    assert page.locator("#who").text_content() == "pilot · operator"
    player_page.wait_for("!document.querySelector('#ptz-zoom').disabled", 10000)  # the control socket is open
    assert page.locator("#ptz").is_visible() and page.locator("#rec-button").is_visible()


def test_the_browser_basic_auth_prompt_signs_in(browser: Any, guarded: Any) -> None:
    context = browser.new_context(http_credentials={"username": "alice", "password": PASSWORD})
    try:
        driver = PlayerPage(context.new_page())
        driver.open(guarded, "webcodecs")
        assert driver.page.evaluate("() => window.vergence.session") == {
            "name": "alice",
            "role": "operator",
            "commands": True,
        }
        assert not driver.errors
    finally:
        context.close()
