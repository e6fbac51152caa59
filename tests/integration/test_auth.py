"""Roles on every route of a real server: no credentials → 401, a viewer watches but every command is 403, an operator
commands; cross-site Origins refused; basic auth and the page's cookie; the default without credentials."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.aio import run
from tests.controlws import envelope
from vergence.app import create_app
from vergence.auth import required_role
from vergence.client.webrtc import WebRtcClient, WebRtcClientError
from vergence.config import Settings
from vergence.control.commands import COMMAND_TYPES

VIEWER_TOKEN = "viewer-secret-0123456789abcdef"
OPERATOR_TOKEN = "operator-secret-0123456789abcdef"
PASSWORD = "correct horse battery"
AUTH_ENV = {
    "VERGENCE_AUTH__TOKENS": json.dumps(
        [
            {"name": "watcher", "token": VIEWER_TOKEN, "role": "viewer"},
            {"name": "pilot", "token": OPERATOR_TOKEN, "role": "operator"},
        ]
    ),
    "VERGENCE_AUTH__USERS": json.dumps([{"name": "alice", "password": PASSWORD, "role": "operator"}]),
}
VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
SAMPLE_PARAMS = {
    "stream_id": "cam0",
    "camera": "cam0",
    "name": "none-such.mp4",
    "output_id": "udp0",
    "peer": "nobody",
}


def _routes() -> tuple[list[tuple[str, str]], list[str]]:
    """Every (method, path) and WebSocket path the app serves, from the app itself: a route added later is covered."""
    app = create_app(Settings())
    http: list[tuple[str, str]] = []
    websockets: list[str] = []
    for route in _flatten(app.routes):
        path = getattr(route, "path", "")
        if path.startswith("/static"):
            continue
        concrete = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: SAMPLE_PARAMS[m[1]], path)
        methods = getattr(route, "methods", None)
        if methods is None:
            websockets.append(concrete)
        else:
            http += [(method, concrete) for method in sorted(methods) if method != "HEAD"]
    return http, websockets


def _flatten(routes: list[Any]) -> list[Any]:
    """Routes of included routers too (FastAPI ≥ 0.16x wraps each `include_router` in one object; we use no prefixes)."""
    flat = []
    for route in routes:
        included = getattr(route, "original_router", None)
        flat += _flatten(included.routes) if included is not None else [route]
    return flat


HTTP_ROUTES, WS_ROUTES = _routes()
MUTATING = [
    (m, p) for m, p in HTTP_ROUTES if required_role({"type": "http", "method": m, "path": p}).name == "OPERATOR"
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.conftest import start_server

    tmp = tmp_path_factory.mktemp("auth")
    process = start_server(
        ("--size", "320x180", "--fps", "15"),
        tmp / "server.log",
        {**AUTH_ENV, "VERGENCE_MEDIA__DIR": str(tmp / "media")},
    )
    yield process
    process.stop()


def _request(server: Any, method: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    kwargs: dict[str, Any] = {"headers": {"Content-Type": "application/json", **(headers or {})}, "timeout": 10}
    if path.endswith(".mjpeg"):  # never ends: the status line is enough
        with httpx.stream(method, f"{server.url}{path}", **kwargs) as response:
            return response
    return httpx.request(method, f"{server.url}{path}", content=body, **kwargs)


def _ws_status(server: Any, path: str, headers: dict[str, str] | None = None) -> int:
    """101 when the handshake succeeds, else the HTTP status the server refused it with."""
    try:
        with connect(f"{server.ws_url}{path}", additional_headers=headers or {}, open_timeout=10):
            return 101
    except InvalidStatus as err:
        return err.response.status_code


def test_the_sweep_sees_every_route_family() -> None:
    families = {
        path.split("/")[1] + ("/" + path.split("/")[2] if path.startswith("/api/") else "") for _, path in HTTP_ROUTES
    }
    for family in ("api/streams", "api/commands", "api/cameras", "api/recordings", "api/webrtc", "api/outputs",
                   "stream", "snapshot", "api/session", "docs", "openapi.json"):  # fmt: skip
        assert family in families, family
    assert {"/ws/control", "/ws/video/cam0", "/ws/fmp4/cam0"} <= set(WS_ROUTES)
    assert ("PUT", "/api/cameras/cam0/ptz") in MUTATING and ("POST", "/api/commands") in MUTATING
    assert ("POST", "/api/webrtc/cam0") not in MUTATING  # a viewer may ask for a WebRTC picture


def test_no_credentials_get_401_on_every_route(server: Any) -> None:
    refused = {(method, path): _request(server, method, path).status_code for method, path in HTTP_ROUTES}
    assert set(refused.values()) == {401}, {key: code for key, code in refused.items() if code != 401}
    assert {path: _ws_status(server, path) for path in WS_ROUTES} == dict.fromkeys(WS_ROUTES, 401)
    # Wrong credentials are refused too, never taken for no credentials.
    assert (
        _request(server, "GET", "/api/streams", {"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    )
    assert _request(server, "GET", "/api/streams", {"Authorization": "Basic !!!"}).status_code == 401
    # The page's own assets are public (the sign-in page uses them); nothing else is.
    assert httpx.get(f"{server.url}/static/main.js", timeout=5).status_code == 200


def test_a_viewer_watches_every_read_route_but_gets_403_on_every_change(server: Any) -> None:
    for method, path in HTTP_ROUTES:
        status = _request(server, method, path, VIEWER).status_code
        if (method, path) in MUTATING:
            assert status == 403, (method, path, status)
        else:
            assert status not in (401, 403) and status < 500, (method, path, status)
    assert {path: _ws_status(server, path, VIEWER) for path in WS_ROUTES} == dict.fromkeys(WS_ROUTES, 101)
    with connect(f"{server.ws_url}/ws/video/cam0?token={VIEWER_TOKEN}", open_timeout=10) as video:
        binary = [message for message in (video.recv(timeout=10) for _ in range(6)) if isinstance(message, bytes)]
    assert binary, "a viewer's video WebSocket carries frames"
    snapshot = httpx.get(f"{server.url}/snapshot/cam0.jpg", headers=VIEWER, timeout=10)
    assert snapshot.status_code == 200 and snapshot.content[:2] == b"\xff\xd8"


@pytest.mark.parametrize("command_type", COMMAND_TYPES)
def test_every_command_type_is_403_for_a_viewer_and_runs_for_an_operator(server: Any, command_type: str) -> None:
    command = {"type": command_type}
    as_viewer = httpx.post(f"{server.url}/api/commands", json=command, headers=VIEWER, timeout=10)
    assert as_viewer.status_code == 403, as_viewer.text
    as_text = httpx.post(f"{server.url}/api/commands", content=command_type.encode(), headers=VIEWER, timeout=10)
    assert as_text.status_code == 403
    # An operator reaches the command model: a reply of the command model, not a refusal of the role.
    as_operator = httpx.post(f"{server.url}/api/commands", json=command, headers=OPERATOR, timeout=10)
    assert as_operator.status_code not in (401, 403) and "ok" in as_operator.json(), as_operator.text


def _viewable(server: Any) -> dict[str, Any]:
    """What a viewer can read of what the commands below would change."""
    cam0 = f"{server.url}/api/cameras/cam0"
    return {
        part: httpx.get(f"{cam0}/{part}", headers=VIEWER, timeout=10).json()
        for part in ("ptz", "presets", "overlay", "rois", "stabilize", "plugins")
    }


def test_a_viewer_on_the_control_websocket_may_ping_and_report_but_not_command(server: Any) -> None:
    before = _viewable(server)
    zoom = before["ptz"]["zoom"] + 1
    valid = [  # each would change something if an operator sent it
        {"type": "ptz", "stream": "cam0", "zoom": zoom},
        {"type": "zoom", "camera": "cam0", "value": zoom},
        {"type": "move", "stream": "cam0", "zoom_per_s": 1.0, "duration_s": 1},
        {"type": "preset", "stream": "cam0", "action": "save", "name": "viewer"},
        {"type": "overlay", "stream": "cam0", "grid": not before["overlay"]["grid"]},
        {"type": "roi", "stream": "cam0", "action": "set", "name": "viewer", "x1": 1, "y1": 1, "x2": 50, "y2": 50},
        {"type": "stabilize", "stream": "cam0", "enabled": not before["stabilize"]["enabled"]},
        {"type": "plugin", "stream": "cam0", "action": "add", "module": "vergence.plugins.edges"},
        f"zoom cam0 {zoom}",
    ]
    with connect(f"{server.ws_url}/ws/control", additional_headers=VIEWER, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "state"
        ws.send(json.dumps({"type": "ping", "t": 1}))
        assert _next_of(ws, "pong")["t"] == 1
        for command_type in COMMAND_TYPES:
            ws.send(json.dumps({"type": "command", "command": {"type": command_type}, "id": command_type}))
            reply = _next_of(ws, "reply")
            assert (reply["ok"], reply["code"], reply["id"]) == (False, "forbidden", command_type)
            assert reply["command"] == command_type and "operator" in reply["error"], reply
        for number, command in enumerate(valid):
            ws.send(json.dumps(envelope(command, number)))
            reply = _next_of(ws, "reply")
            assert (reply["ok"], reply["code"], reply["id"]) == (False, "forbidden", number), (command, reply)
        # The message kinds of the old protocol are no commands at all, for a viewer as for anyone.
        for kind in ("ptz", "ptz_velocity", "preset", "stereo", "overlay", "roi", "stabilize", "plugin"):
            ws.send(json.dumps({"type": kind, "camera": "cam0", "zoom": zoom}))
            assert _next_of(ws, "error")["code"] == "unknown_message", kind
    assert _viewable(server) == before  # nothing the viewer sent changed anything


def test_an_operator_on_the_control_websocket_moves_the_camera(server: Any) -> None:
    with connect(f"{server.ws_url}/ws/control", additional_headers=OPERATOR, open_timeout=10) as ws:
        ws.recv(timeout=10)
        ws.send(json.dumps({"type": "command", "text": "zoom 3", "id": 7}))
        reply = _next_of(ws, "reply")
        assert reply["ok"] and reply["id"] == 7
    assert httpx.get(f"{server.url}/api/cameras/cam0/ptz", headers=VIEWER, timeout=10).json()["zoom"] == 3
    httpx.post(f"{server.url}/api/commands", content=b"zoom 1", headers=OPERATOR, timeout=10)


def test_a_viewer_webrtc_peer_watches_but_its_data_channel_commands_are_refused(server: Any) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with WebRtcClient(server.url, "cam0", token=VIEWER_TOKEN) as client:
            await client.frame()
            refused = await client.request({"type": "command", "text": "zoom 2"}, "reply")
            moved = await client.request(envelope({"type": "ptz", "stream": "cam0", "zoom": 2}, "m1"), "reply")
            return refused, moved

    before = httpx.get(f"{server.url}/api/cameras/cam0/ptz", headers=VIEWER, timeout=10).json()
    refused, moved = run(scenario())
    assert (refused["type"], refused["ok"], refused["code"]) == ("reply", False, "forbidden"), refused
    assert (moved["type"], moved["ok"], moved["code"], moved["id"]) == ("reply", False, "forbidden", "m1"), moved
    assert httpx.get(f"{server.url}/api/cameras/cam0/ptz", headers=VIEWER, timeout=10).json() == before

    async def anonymous() -> None:
        async with WebRtcClient(server.url, "cam0"):
            pass

    with pytest.raises(WebRtcClientError, match="401"):
        run(anonymous())


def test_a_control_websocket_from_another_origin_is_refused(server: Any) -> None:
    own = f"http://127.0.0.1:{server.port}"
    assert _ws_status(server, "/ws/control", {**OPERATOR, "Origin": own}) == 101
    assert _ws_status(server, "/ws/control", {**OPERATOR, "Origin": "http://evil.example"}) == 403
    assert _ws_status(server, "/ws/control", {**OPERATOR, "Origin": "null"}) == 403
    assert _ws_status(server, "/ws/video/cam0", {**VIEWER, "Origin": "http://evil.example:8000"}) == 403
    # A cross-site form or fetch that would change something is refused even with an operator's credentials; reading
    # (an <img> of the stream on another site) is not.
    cross = {**OPERATOR, "Origin": "http://evil.example"}
    assert httpx.post(f"{server.url}/api/commands", content=b"zoom 2", headers=cross, timeout=10).status_code == 403
    assert (
        httpx.get(f"{server.url}/snapshot/cam0.jpg", headers={**VIEWER, "Origin": "http://x"}, timeout=10).status_code
        == 200
    )


def test_basic_auth_signs_a_browser_in_with_a_cookie_its_websockets_carry(server: Any) -> None:
    assert "Basic" in httpx.get(f"{server.url}/api/streams", timeout=10).headers["www-authenticate"]
    wrong = httpx.get(f"{server.url}/", auth=("alice", "wrong password"), timeout=10)
    assert wrong.status_code == 401
    page = httpx.get(f"{server.url}/", auth=("alice", PASSWORD), timeout=10)
    assert page.status_code == 200 and "<title>vergence</title>" in page.text
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and PASSWORD not in cookie
    session = cookie.split(";", 1)[0]
    me = httpx.get(f"{server.url}/api/session", headers={"Cookie": session}, timeout=10).json()
    assert me == {"name": "alice", "role": "operator", "commands": True}
    assert _ws_status(server, "/ws/control", {"Cookie": session}) == 101
    forged = session[:-4] + ("AAAA" if not session.endswith("AAAA") else "BBBB")
    assert httpx.get(f"{server.url}/api/session", headers={"Cookie": forged}, timeout=10).status_code == 401


def test_a_browser_without_credentials_gets_a_sign_in_page(server: Any) -> None:
    page = httpx.get(f"{server.url}/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 401 and '<form method="get" action="/">' in page.text and 'name="token"' in page.text
    signed_in = httpx.get(f"{server.url}/?token={VIEWER_TOKEN}", headers={"Accept": "text/html"}, timeout=10)
    assert signed_in.status_code == 200 and f"vergence_session_{server.port}=" in signed_in.headers["set-cookie"]


def test_no_secret_reaches_the_log(server: Any) -> None:
    httpx.get(f"{server.url}/api/streams", headers={"Authorization": "Bearer wrong-secret-0123456789"}, timeout=10)
    httpx.get(f"{server.url}/?token=another-wrong-secret-987654", timeout=10)
    log = server.log()
    assert "refused" in log  # refusals are logged …
    for secret in (VIEWER_TOKEN, OPERATOR_TOKEN, PASSWORD, "wrong-secret-0123456789", "another-wrong-secret-987654"):
        assert secret not in log  # … without what was presented


def test_without_credentials_this_machine_commands_and_others_watch(vergence_server: Any, ice_address: str) -> None:
    """The default (no tokens, no users): loopback is an operator, another address of the network a viewer, and a page
    reaching loopback under another name (DNS rebinding) a viewer too."""
    server = vergence_server("--size", "320x180", "--fps", "15", "--host", "0.0.0.0")
    local = httpx.post(f"{server.url}/api/commands", content=b"zoom 2", timeout=10)
    assert local.status_code == 200, local.text
    remote_url = f"http://{ice_address}:{server.port}"
    assert httpx.get(f"{remote_url}/api/session", timeout=10).json()["role"] == "viewer"
    assert httpx.get(f"{remote_url}/api/streams", timeout=10).status_code == 200
    assert httpx.post(f"{remote_url}/api/commands", content=b"zoom 1", timeout=10).status_code == 403
    rebound = httpx.get(f"{server.url}/api/session", headers={"Host": f"evil.example:{server.port}"}, timeout=10)
    assert rebound.json()["role"] == "viewer"


def _next_of(ws: Any, kind: str) -> dict[str, Any]:
    """The next message of `kind` (state events from other tests' commands may come between)."""
    for _ in range(50):
        message = json.loads(ws.recv(timeout=10))
        if message.get("type") == kind:
            return message
    raise AssertionError(f"no {kind!r} message")


def test_ctl_sends_the_token_from_the_environment(server: Any) -> None:
    def ctl(token: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "VERGENCE_TOKEN"}
        if token is not None:
            env["VERGENCE_TOKEN"] = token
        command = [sys.executable, "-m", "vergence", "ctl", "--url", server.url, "status"]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    anonymous, viewer, operator = ctl(None), ctl(VIEWER_TOKEN), ctl(OPERATOR_TOKEN)
    assert (
        anonymous.returncode == 2 and "credentials needed" in anonymous.stderr and "VERGENCE_TOKEN" in anonymous.stderr
    )
    assert viewer.returncode == 2 and "operator role needed" in viewer.stderr
    assert operator.returncode == 0 and json.loads(operator.stdout)["ok"] is True
