"""REST API and the control WebSocket (clock sync, player reports)."""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Any

from fastapi import APIRouter, Request, WebSocket
from pydantic import BaseModel
from starlette.websockets import WebSocketDisconnect

router = APIRouter()
_client_ids = itertools.count(1)


class StreamInfo(BaseModel):
    """A stream as listed by GET /api/streams."""

    id: str
    width: int
    height: int
    fps: float
    codec: str | None
    source: str
    state: str


@router.get("/api/streams", response_model=list[StreamInfo], tags=["streams"])
async def list_streams(request: Request) -> list[dict[str, Any]]:
    """List the streams with size, frame rate and H.264 codec string."""
    return [stream.describe() for stream in request.app.state.vergence.streams.values()]


@router.get("/api/stats", tags=["streams"])
async def stats(request: Request) -> dict[str, Any]:
    """Frame rates, bitrates, viewers, drops, per-stage timings, and the latency players reported."""
    return request.app.state.vergence.stats()


@router.websocket("/ws/control")
async def control(websocket: WebSocket) -> None:
    """JSON messages: ping → pong with the server clock; player latency reports."""
    await websocket.accept()
    vergence = websocket.app.state.vergence
    client_id = next(_client_ids)
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            try:
                message = await websocket.receive_json()
            except ValueError:
                await websocket.send_json({"type": "error", "code": "bad_json", "message": "messages must be JSON"})
                continue
            reply = handle_control(message, client_id, vergence)
            if reply is not None:
                await websocket.send_json(reply)
    vergence.client_reports.pop(client_id, None)


def handle_control(message: Any, client_id: int, vergence: Any) -> dict[str, Any] | None:
    """Answer one control message."""
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "ping":
        return {"type": "pong", "t": message.get("t"), "server_ns": time.time_ns()}
    if kind == "report":
        report = {key: message.get(key) for key in ("stream", "player", "fps", "latency_ms", "frames", "dropped")}
        vergence.report(client_id, report)
        return None
    return {"type": "error", "code": "unknown_message", "message": f"unknown message type {kind!r}"}
