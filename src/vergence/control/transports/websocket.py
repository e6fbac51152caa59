"""The control WebSocket (`/ws/control`) and the control protocol it shares with the WebRTC data channel.

Three messages come in: `ping` (clock sync), `report` (what a player measured) and `command` (one command of the
command vocabulary, as an object or a text line). State events go out to every controller as they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocketDisconnect

from vergence.auth import Principal, may_command, principal_of
from vergence.context import Server, ServerContext
from vergence.control.parsing import command_type, describe_validation
from vergence.events import EventSubscription
from vergence.media import json_text

router = APIRouter()
_client_ids = itertools.count(1)
VIEWER_MESSAGES = frozenset({"ping", "report"})  # the rest of the control protocol is commands


class PlayerReport(BaseModel):
    """A player's `report` on the control WebSocket, listed by /api/stats under `clients` (the page sends it every 2 s)."""

    model_config = ConfigDict(allow_inf_nan=False)

    stream: str | None = Field(None, max_length=64)
    player: str | None = Field(None, max_length=64)
    fps: float | None = None
    latency_ms: dict[Annotated[str, Field(max_length=16)], float | None] | None = Field(
        None, max_length=8, description="p50, p95, max"
    )
    frames: int | None = None
    dropped: int | None = None


@router.websocket("/ws/control")
async def control(websocket: WebSocket, vergence: Server) -> None:
    """JSON both ways: the current state on connect, then every change by anyone; ping → pong; commands → replies."""
    await websocket.accept()
    controllers = vergence.commander.controllers
    principal = principal_of(websocket.scope)
    client_id = new_client_id()
    events = vergence.events.subscribe(f"control WS {principal.name}")
    sender = asyncio.create_task(_forward(websocket, events))
    try:
        await websocket.send_json(controllers.snapshot())
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                try:
                    message = _decode(frame)
                except ValueError as err:
                    await websocket.send_json({"type": "error", "code": "bad_json", "error": str(err)})
                    continue
                reply = await answer_control(message, client_id, vergence, principal)
                if reply is not None:
                    await websocket.send_json(reply)
    finally:
        events.close()
        sender.cancel()
        vergence.client_reports.pop(client_id, None)


def _decode(frame: Mapping[str, Any]) -> Any:
    """The JSON of one WebSocket frame; ValueError for a binary frame or text that is not JSON as json_text reads it."""
    text = frame.get("text")
    if text is None:
        raise ValueError("messages must be JSON text frames, not binary")
    try:
        return json_text.loads(text)
    except ValueError as err:
        raise ValueError(f"messages must be JSON: {err}") from None


async def _forward(websocket: WebSocket, events: EventSubscription) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        async for event in events:
            await websocket.send_json(event)


def new_client_id() -> int:
    """A number for one controller (a control WebSocket or a WebRTC data channel), keying its player reports."""
    return next(_client_ids)


async def answer_control(
    message: Any, client_id: int, vergence: ServerContext, principal: Principal
) -> dict[str, Any] | None:
    """Answer one message of the control protocol, from a control WebSocket or a WebRTC data channel.

    Anyone who may watch may ping and report; a command changes something and needs an operator.
    """
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "ping":
        return {"type": "pong", "t": message.get("t"), "server_ns": time.time_ns()}
    if kind == "report":
        try:
            report = PlayerReport.model_validate({k: v for k, v in message.items() if k in PlayerReport.model_fields})
        except ValidationError as err:
            return {"type": "error", "code": "invalid", "error": describe_validation(err, union=False)}
        vergence.report(client_id, report.model_dump())
        return None
    if kind != "command":
        got = f"type {kind!r}" if isinstance(message, dict) else f"a JSON {type(message).__name__}"
        error = (
            'a control message is {"type": "ping" | "report" | "command", …}; commands go as '
            f'{{"type": "command", "command": {{…}}}} or {{"type": "command", "text": "zoom 2"}}, got {got}'
        )
        return {"type": "error", "code": "unknown_message", "error": error}
    raw = message.get("command", message.get("text"))
    if isinstance(raw, dict) and "id" in message:
        raw = {**raw, "id": message["id"]}
    if not may_command(principal):
        role = principal.role.name.lower()
        reply: dict[str, Any] = {
            "ok": False,
            "command": command_type(raw),
            "code": "forbidden",
            "error": f"commands need the operator role; {principal.name} is a {role}",
        }
    else:
        reply = await vergence.commander.handle(raw, source=f"control {principal.name}")
    if "id" in message:
        reply["id"] = message["id"]
    return {"type": "reply", **reply}
