"""Credentials → principals, the role each route needs, the session cookie, Origins, and secrets kept out of text."""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any

import pytest
from starlette.datastructures import Headers

from tests.aio import run
from vergence.auth import Authenticator, Principal, Refused, Role, cookie_name, required_role
from vergence.config import AuthSettings, load_settings
from vergence.errors import ConfigError, RedactingFilter, redact

TOKEN = "t0ken-of-the-viewer-000"
SERVER_ID = b"this server's id, as load_server_id gives it"
SETTINGS = {
    "tokens": [{"name": "watcher", "token": TOKEN, "role": "viewer"}],
    "users": [
        {"name": "alice", "password": "alice's password", "role": "operator"},
        {"name": "bob", "password": "sha256:" + hashlib.sha256(b"bob's password").hexdigest(), "role": "viewer"},
    ],
}


def _auth(**overrides: Any) -> Authenticator:
    return Authenticator(AuthSettings.model_validate({**SETTINGS, **overrides}), server_id=lambda: SERVER_ID)


def _scope(
    method: str = "GET", path: str = "/api/streams", query: str = "", client: str = "10.0.0.9"
) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": query.encode(), "client": (client, 5000)}


def _identify(auth: Authenticator, headers: dict[str, str], **scope: Any) -> tuple[str, Role, str | None]:
    principal, proof = _principal(auth, _scope(**scope), headers)
    return principal.name, principal.role, proof


def _principal(auth: Authenticator, scope: dict[str, Any], headers: dict[str, str]) -> tuple[Principal, str | None]:
    return run(auth.identify(scope, Headers(headers)))


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("kind", "method", "path", "role"),
    [
        ("http", "GET", "/api/streams", Role.VIEWER),
        ("http", "HEAD", "/snapshot/cam0.jpg", Role.VIEWER),
        ("http", "POST", "/api/commands", Role.OPERATOR),
        ("http", "PUT", "/api/cameras/cam0/ptz", Role.OPERATOR),
        ("http", "DELETE", "/api/recordings/a.mp4", Role.OPERATOR),
        ("http", "POST", "/api/cameras/cam0/plugins", Role.OPERATOR),
        ("http", "POST", "/api/webrtc/cam0", Role.VIEWER),
        ("http", "DELETE", "/api/webrtc/cam0/peer", Role.VIEWER),
        ("http", "POST", "/api/webrtc/cam0/peer", Role.OPERATOR),  # not signalling: not a viewer's
        ("http", "PATCH", "/anything/new", Role.OPERATOR),  # a route added later changes state: operator
        ("websocket", "GET", "/ws/control", Role.VIEWER),
    ],
)
def test_the_role_a_route_needs(kind: str, method: str, path: str, role: Role) -> None:
    assert required_role({"type": kind, "method": method, "path": path}) == role


def test_tokens_users_and_hashed_passwords() -> None:
    auth = _auth()
    assert _identify(auth, {"Authorization": f"Bearer {TOKEN}"}) == ("watcher", Role.VIEWER, "token")
    assert _identify(auth, {}, query=f"stream=cam0&token={TOKEN}") == ("watcher", Role.VIEWER, "token")
    assert _identify(auth, _basic("alice", "alice's password")) == ("alice", Role.OPERATOR, "basic")
    assert _identify(auth, _basic("bob", "bob's password")) == ("bob", Role.VIEWER, "basic")
    for wrong in (
        {"Authorization": "Bearer not-a-token"},
        _basic("alice", "nope"),
        _basic("mallory", "alice's password"),
        {"Authorization": "Basic %%%"},
        _basic("bob", "sha256:" + hashlib.sha256(b"bob's password").hexdigest()),  # the hash is not the password
    ):
        with pytest.raises(Refused) as refused:
            _principal(auth, _scope(), wrong)
        assert refused.value.status == 401


def test_anonymous_roles() -> None:
    configured = _auth()
    assert _identify(configured, {"host": "127.0.0.1:8000"}, client="127.0.0.1")[1] == Role.NONE
    open_server = Authenticator(AuthSettings(), server_id=lambda: SERVER_ID)
    for client, host in (("127.0.0.1", "127.0.0.1:8000"), ("::1", "[::1]:8000"), ("::ffff:127.0.0.1", "localhost")):
        assert _identify(open_server, {"host": host}, client=client)[1] == Role.OPERATOR, (client, host)
    assert _identify(open_server, {"host": "10.0.0.2:8000"}, client="10.0.0.9")[1] == Role.VIEWER
    assert _identify(open_server, {"host": "rebound.example:8000"}, client="127.0.0.1")[1] == Role.VIEWER
    assert _identify(open_server, {}, client="127.0.0.1")[1] == Role.VIEWER  # no Host: not provably local
    for mode, role in (("none", Role.NONE), ("viewer", Role.VIEWER), ("operator", Role.OPERATOR)):
        assert _identify(_auth(anonymous=mode), {}, client="10.0.0.9")[1] == role


def test_the_session_cookie_names_its_holder_and_ends() -> None:
    auth = _auth()
    alice = _principal(auth, _scope(), _basic("alice", "alice's password"))[0]
    set_cookie = auth.session_cookie(alice, secure=True)
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Secure" in set_cookie
    assert "alice's password" not in base64.urlsafe_b64decode(set_cookie.split("=", 1)[1].split(";")[0] + "==").decode()
    cookie = {"Cookie": set_cookie.split(";", 1)[0]}
    assert _identify(auth, cookie) == ("alice", Role.OPERATOR, "cookie")
    # A changed password ends the sessions made with the old one; a changed role applies at once.
    changed = _auth(users=[{"name": "alice", "password": "a new password!", "role": "operator"}])
    assert _identify(changed, cookie, client="10.0.0.9")[2] is None
    demoted = _auth(users=[{**SETTINGS["users"][0], "role": "viewer"}, SETTINGS["users"][1]])
    assert _identify(demoted, cookie) == ("alice", Role.VIEWER, "cookie")
    value = set_cookie.split(";", 1)[0].split("=", 1)[1]
    name, expires, signature = base64.urlsafe_b64decode(value + "==").decode().rsplit(".", 2)
    for forged in (f"bob.{expires}.{signature}", f"alice.{int(expires) + 1}.{signature}", f"alice.1.{signature}"):
        forged_cookie = {"Cookie": "vergence_session=" + base64.urlsafe_b64encode(forged.encode()).decode()}
        assert _identify(auth, forged_cookie)[2] is None, forged
    assert _identify(auth, {"Cookie": "vergence_session=@@@; other=1"})[2] is None
    assert _identify(auth, {"Cookie": 'junk="unterminated'})[2] is None


def test_two_servers_on_one_host_keep_a_session_cookie_each() -> None:
    # Browsers send a host's cookies to every port of it: one name for both servers made each sign-in end the other's.
    front, back = _auth(), _auth(users=[{"name": "carol", "password": "carol's password", "role": "viewer"}])
    at_front, at_back = {**_scope(), "server": ("10.0.0.2", 8000)}, {**_scope(), "server": ("10.0.0.2", 8001)}
    assert cookie_name(at_front) == "vergence_session_8000" and cookie_name(at_back) == "vergence_session_8001"
    alice = _principal(front, at_front, _basic("alice", "alice's password"))[0]
    carol = _principal(back, at_back, _basic("carol", "carol's password"))[0]
    jar = "; ".join(
        [
            front.session_cookie(alice, secure=False, name=cookie_name(at_front)).split(";", 1)[0],
            back.session_cookie(carol, secure=False, name=cookie_name(at_back)).split(";", 1)[0],
        ]
    )
    assert _principal(front, at_front, {"Cookie": jar})[0].name == "alice"
    assert _principal(back, at_back, {"Cookie": jar})[0].name == "carol"


def test_origins() -> None:
    auth = _auth(allowed_origins=["https://dashboard.example:8443"])

    def refused(kind: str, method: str, origin: str | None) -> bool:
        headers = {"host": "robot.local:8000", **({"origin": origin} if origin else {})}
        return auth.origin_refused({"type": kind, "method": method, "path": "/x"}, Headers(headers)) is not None

    assert not refused("websocket", "GET", None)  # not a browser
    assert not refused("websocket", "GET", "http://robot.local:8000")
    assert not refused("websocket", "GET", "HTTPS://dashboard.example:8443")
    assert refused("websocket", "GET", "http://robot.local:8001")
    assert refused("websocket", "GET", "null")
    assert refused("http", "POST", "http://evil.example")
    assert not refused("http", "GET", "http://evil.example")  # reading is not changing


def test_a_bad_secret_in_the_config_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERGENCE_AUTH__TOKENS", '[{"name": "x", "token": "short-secret"}]')
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "auth.tokens[0].token" in str(err.value) and "short-secret" not in str(err.value)
    monkeypatch.setenv("VERGENCE_AUTH__TOKENS", '[{"name": "x", "token": "long-enough-secret-1"}]')
    settings = load_settings()
    assert "long-enough-secret-1" not in repr(settings) and "long-enough-secret-1" not in str(settings.model_dump())


def test_redact_hides_url_secrets_in_text_and_logs() -> None:
    assert redact("rtmp://h:1935/live/sk-123") == "rtmp://h:1935/live/***"
    assert redact("rtsp://user:pw@cam/stream1") == "rtsp://***@cam/stream1"
    assert redact("rtsp://cam:554/stream1") == "rtsp://cam:554/stream1"
    assert redact('"WebSocket /ws/video/cam0?stream=a&token=abc" [accepted]') == (
        '"WebSocket /ws/video/cam0?stream=a&token=***" [accepted]'
    )
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s"', ("1.2.3.4", "/x?token=s3"), None
    )
    assert RedactingFilter().filter(record) and record.getMessage() == '1.2.3.4 - "WebSocket /x?token=***"'
