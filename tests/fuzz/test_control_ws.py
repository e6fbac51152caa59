"""Fuzzing the control WebSocket: every frame gets the answer docs/protocol.md promises, and the connection stays open.

Each fuzz frame is followed by a `ping` whose `t` is a token of ours; everything the server says before that pong is its
answer to the frame (replies come in order; state events may come between them and are told apart by their type):

- a frame that is not JSON (binary, bad syntax, NaN, lone surrogates, deeper than the limit): one `bad_json` error;
- JSON that is no object with a string `type`, or an unknown type: one `unknown_message` error;
- `ping`: one pong echoing `t`; `command`: one reply (`ok` and `command`, and `code` and `error` when refused), echoing
  `id`;
- `report`: nothing, or one `invalid` error;
- any other type, the older protocol's message kinds (`ptz`, `preset`, `overlay`, …) among them: one `unknown_message`
  error.

After each batch the server must still answer GET /api/streams and /api/stats (where reports land) with 200.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import ServerProcess
from tests.fuzz.harness import FUZZ_SETTINGS, INPUTS, assert_survived, log_tail
from tests.fuzz.strategies import control_frames
from vergence.control.commands import COMMAND_TYPES
from vergence.media import json_text

REPLY_TYPES = frozenset({"pong", "reply", "error"})  # everything else the server sends is a state event
NOT_JSON = object()
REPLY_TIMEOUT_S = 15.0  # a photo or a UDP destination that does not resolve takes a while; a hang takes longer


def _strict_json(text: str) -> Any:
    """Parse what the server sent as a strict JSON parser (a browser's JSON.parse) would."""

    def refuse(name: str) -> None:
        raise AssertionError(f"the server sent {name}, which is not JSON: {text[:300]}")

    return json.loads(text, parse_constant=refuse)


class ControlClient:
    """A control WebSocket that reconnects after a failed example, so Hypothesis can replay and shrink it."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.connection: ClientConnection | None = None
        self.syncs = 0
        self.sent = 0
        self.outcomes: Counter[str] = Counter()  # what the frames got: nothing, a pong, a reply, an error by code

    def _open(self) -> ClientConnection:
        if self.connection is None:
            # No keepalive pings: their thread draws from `random`, which Hypothesis takes for a strategy using it.
            self.connection = connect(
                f"{self.server.ws_url}/ws/control", max_size=None, open_timeout=10, ping_interval=None, legacy=True
            )
            state = _strict_json(str(self.connection.recv(timeout=10)))
            assert state["type"] == "state", state
        return self.connection

    def exchange(self, frame: str | bytes) -> list[dict[str, Any]]:
        """Send one frame and return the replies to it (events left out); the connection must stay open."""
        connection = self._open()
        self.syncs += 1
        token = f"fuzz-sync-{self.syncs}"
        try:
            connection.send(frame)
            self.sent += 1
            connection.send(json.dumps({"type": "ping", "t": token}))
            replies = []
            while True:
                data = connection.recv(timeout=REPLY_TIMEOUT_S)
                assert isinstance(data, str), f"a binary frame on the control WebSocket: {data[:100]!r}"
                message = _strict_json(data)
                assert isinstance(message, dict) and isinstance(message.get("type"), str), message
                if message["type"] == "pong" and message.get("t") == token:
                    self.outcomes.update([_outcome(reply) for reply in replies] or ["nothing"])
                    return replies
                if message["type"] in REPLY_TYPES:
                    replies.append(message)
        except ConnectionClosed as err:
            self.connection = None
            raise AssertionError(
                f"the server closed the control WebSocket ({err}) after {frame!r:.300}\n{log_tail(self.server)}"
            ) from None
        except TimeoutError:
            self.close()
            raise AssertionError(f"no answer within {REPLY_TIMEOUT_S} s to {frame!r:.300}") from None
        except BaseException:
            self.close()  # the next example starts on a clean connection, not amid this one's answers
            raise

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def _outcome(reply: dict[str, Any]) -> str:
    if reply["type"] == "reply":
        return "command done" if reply.get("ok") else f"command refused: {reply.get('code')}"
    return f"error: {reply.get('code')}" if reply["type"] == "error" else str(reply["type"])


def _assert_error(reply: dict[str, Any], code: str | None = None) -> None:
    assert reply["type"] == "error", reply
    assert isinstance(reply.get("code"), str) and reply["code"], reply
    assert isinstance(reply.get("error"), str) and reply["error"], reply
    if code is not None:
        assert reply["code"] == code, reply


def _decoded(frame: str | bytes) -> Any:
    """The JSON value of a frame as the protocol reads it, or NOT_JSON."""
    if isinstance(frame, bytes):
        return NOT_JSON
    try:
        return json_text.loads(frame)
    except ValueError:
        return NOT_JSON


def assert_answered(frame: str | bytes, replies: list[dict[str, Any]]) -> None:
    """The replies are what the protocol promises for `frame`."""
    message = _decoded(frame)
    if message is NOT_JSON:
        assert len(replies) == 1, (frame, replies)
        _assert_error(replies[0], "bad_json")
        return
    kind = message.get("type") if isinstance(message, dict) else None
    if not isinstance(kind, str):
        assert len(replies) == 1, (frame, replies)
        _assert_error(replies[0], "unknown_message")
    elif kind == "ping":
        assert len(replies) == 1 and replies[0]["type"] == "pong", (frame, replies)
        assert replies[0]["t"] == message.get("t") and isinstance(replies[0]["server_ns"], int), (frame, replies)
    elif kind == "command":
        assert len(replies) == 1 and replies[0]["type"] == "reply", (frame, replies)
        reply = replies[0]
        assert isinstance(reply.get("ok"), bool), reply
        if reply["ok"]:
            assert isinstance(reply.get("result"), dict) and reply.get("command") in COMMAND_TYPES, reply
        else:
            assert isinstance(reply.get("code"), str) and isinstance(reply.get("error"), str), reply
            assert reply.get("command") is None or isinstance(reply["command"], str), reply  # the type as sent
        if "id" in message:
            assert reply.get("id") == message["id"], (frame, reply)
    elif kind == "report":
        assert len(replies) <= 1, (frame, replies)
        for reply in replies:
            _assert_error(reply, "invalid")
    else:
        assert len(replies) == 1, (frame, replies)
        _assert_error(replies[0], "unknown_message")


def test_the_control_websocket_answers_every_frame_and_stays_open(fuzz_server):
    client = ControlClient(fuzz_server)
    http = httpx.Client(base_url=fuzz_server.url, timeout=10)

    @settings(FUZZ_SETTINGS, max_examples=760)  # ≈ 5,900 frames: the floor holds whatever Hypothesis replays
    @given(frames=st.lists(control_frames(), min_size=4, max_size=24))
    def batch(frames: list[str | bytes]) -> None:
        for frame in frames:
            assert_answered(frame, client.exchange(frame))
        for path in ("/api/streams", "/api/stats"):
            response = http.get(path)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])

    try:
        batch()
    finally:
        client.close()
        http.close()
    print(f"control WebSocket: {client.sent} frames sent; answers: {dict(client.outcomes.most_common())}")
    assert client.sent >= INPUTS["control_ws"], f"only {client.sent} frames sent"
    assert_survived(fuzz_server)
