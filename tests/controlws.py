"""The control WebSocket (and the same protocol on a WebRTC data channel) from a test: commands in their envelope, and
waiting for the reply to one or for a state event, whichever order the two arrive in.

A command's reply comes back on the socket that sent it, while the state event it causes reaches every controller
through that controller's event queue: the sender may hear either first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

DEADLINE_S = 10.0


def envelope(command: dict[str, Any] | str, command_id: Any = None) -> dict[str, Any]:
    """The control message carrying one command: an object (`{"type": "zoom", …}`) or a text line (`zoom 2`)."""
    message: dict[str, Any] = {"type": "command"}
    message["text" if isinstance(command, str) else "command"] = command
    if command_id is not None:
        message["id"] = command_id
    return message


def send_command(ws: Any, command: dict[str, Any] | str, command_id: Any = None) -> None:
    ws.send(json.dumps(envelope(command, command_id)))


def wait_for(
    ws: Any,
    match: Callable[[dict[str, Any]], bool],
    what: str,
    deadline_s: float = DEADLINE_S,
    seen: list | None = None,
) -> dict[str, Any]:
    """The first message `match` accepts, skipping others (kept in `seen` when given); fail naming `what`."""
    deadline = time.monotonic() + deadline_s
    skipped = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            break
        if match(message):
            return message
        skipped.append(message)
        if seen is not None:
            seen.append(message)
    raise AssertionError(f"no {what} within {deadline_s} s; got {skipped[-5:]}")


def reply_to(ws: Any, command_id: Any, seen: list | None = None) -> dict[str, Any]:
    """The reply carrying `command_id`."""
    return wait_for(
        ws, lambda m: m.get("type") == "reply" and m.get("id") == command_id, f"reply to {command_id!r}", seen=seen
    )


def command(ws: Any, command: dict[str, Any] | str, command_id: Any = "t1", seen: list | None = None) -> dict[str, Any]:
    """Send one command and return its reply (state events before it are skipped, or kept in `seen`)."""
    send_command(ws, command, command_id)
    return reply_to(ws, command_id, seen=seen)


def event(ws: Any, kind: str, seen: list | None = None, **fields: Any) -> dict[str, Any]:
    """The next state event of `kind` whose fields include `fields` (replies and other events are skipped)."""
    return wait_for(
        ws,
        lambda m: m.get("type") == kind and all(m.get(key) == value for key, value in fields.items()),
        f"{kind} event with {fields}",
        seen=seen,
    )
