"""Finding 14 (low): a session cookie made by one server was taken by any other with the same tokens and users (another
port of this machine, another robot sharing the config): the cookie's name held the port, but its signature did not.
Now the signature covers the cookie's name (the port) and a random id kept in the server's state directory, so only
the server that made a cookie takes it, also after a restart."""

from __future__ import annotations

import json
import stat

import httpx

TOKEN = "pilot-secret-0123456789abcdef"
AUTH_ENV = {"VERGENCE_AUTH__TOKENS": json.dumps([{"name": "pilot", "token": TOKEN, "role": "operator"}])}


def sign_in(server) -> str:
    """The value of the session cookie `server` sets when a browser opens its page with the token."""
    page = httpx.get(f"{server.url}/?token={TOKEN}", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200
    name, _, value = page.headers["set-cookie"].split(";", 1)[0].partition("=")
    assert name == f"vergence_session_{server.port}"
    return value


def session_status(server, value: str) -> int:
    """The status of /api/session at `server` with `value` under the cookie name that server reads."""
    cookie = {"Cookie": f"vergence_session_{server.port}={value}"}
    return httpx.get(f"{server.url}/api/session", headers=cookie, timeout=10).status_code


def test_a_cookie_from_one_server_is_refused_by_another_with_the_same_secrets(vergence_server):
    front = vergence_server("--size", "320x240", env=AUTH_ENV)
    back = vergence_server("--size", "320x240", env=AUTH_ENV)  # same tokens, another port, same state directory
    value = sign_in(front)
    assert session_status(front, value) == 200
    assert session_status(back, value) == 401  # renamed to the other port's cookie: still front's


def test_a_restart_keeps_sessions_but_another_state_directory_does_not(vergence_server, tmp_path, monkeypatch):
    import tests.conftest

    state = {"VERGENCE_STATE__PATH": str(tmp_path / "robot-a" / "state.json")}
    server = vergence_server("--size", "320x240", env={**AUTH_ENV, **state})
    value, port = sign_in(server), server.port
    server.stop()
    monkeypatch.setattr(tests.conftest, "free_port", lambda: port)  # the next servers listen where this one did

    restarted = vergence_server("--size", "320x240", env={**AUTH_ENV, **state})
    assert session_status(restarted, value) == 200  # same server, same port: still signed in
    restarted.stop()
    other = {"VERGENCE_STATE__PATH": str(tmp_path / "robot-b" / "state.json")}
    elsewhere = vergence_server("--size", "320x240", env={**AUTH_ENV, **other})
    assert session_status(elsewhere, value) == 401  # another robot with the same config on the same port
    server_id = tmp_path / "robot-a" / "server-id"
    assert stat.S_IMODE(server_id.stat().st_mode) == 0o600
