"""REST API and the control WebSocket (clock sync, player reports)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocketDisconnect

from vergence import ptz
from vergence.auth import Principal, may_command, principal_of
from vergence.control import json_text, processing_api
from vergence.control.controller import CameraController, Controllers, StereoRig
from vergence.control.refusal import REFUSED
from vergence.errors import CommandError

router = APIRouter(responses=REFUSED)
_client_ids = itertools.count(1)
VIEWER_MESSAGES = frozenset({"ping", "report"})  # the rest of the control protocol is commands
EVENT_QUEUE = 256  # state events a slow controller may fall behind before it loses the oldest


class StreamInfo(BaseModel):
    """A stream as listed by GET /api/streams."""

    id: str
    width: int
    height: int
    fps: float
    codec: str | None
    bitrate_bps: int
    source: str
    state: str
    sensor_mode: dict[str, Any] | None = Field(
        None, description="picamera2: the sensor mode streamed from (size, crop of the pixel array, field_of_view)"
    )


@router.get("/api/streams", response_model=list[StreamInfo], tags=["streams"])
async def list_streams(request: Request) -> list[dict[str, Any]]:
    """List the streams with size, frame rate and H.264 codec string."""
    return [stream.describe() for stream in request.app.state.vergence.streams.values()]


@router.get("/api/stats", tags=["streams"])
async def stats(request: Request) -> dict[str, Any]:
    """Frame rates, bitrates, viewers, drops, per-stage timings, and the latency players reported (WebRTC peers one by
    one for operators only)."""
    return request.app.state.vergence.stats(operator=may_command(principal_of(request.scope)))


class PtzRequest(BaseModel):
    """An absolute PTZ position; omitted fields keep their value."""

    model_config = ConfigDict(allow_inf_nan=False)

    pan: float | None = Field(None, ge=0, le=1, description="crop centre, 0 = left edge … 1 = right edge")
    tilt: float | None = Field(None, ge=0, le=1, description="crop centre, 0 = top … 1 = bottom")
    zoom: float | None = Field(None, ge=1, description="1 = the whole field of view … max_zoom")


def _controllers(request: Request | WebSocket) -> Controllers:
    controllers = request.app.state.vergence.controllers
    assert controllers is not None, "controllers are built at startup"
    return controllers


def _camera(request: Request, camera: str) -> CameraController:
    try:
        return _controllers(request).get(camera)
    except CommandError as err:
        raise HTTPException(404, str(err)) from None


@router.get("/api/cameras/{camera}/ptz", tags=["control"])
async def get_ptz(request: Request, camera: str) -> dict[str, Any]:
    """The camera's pan, tilt, zoom and the crop they give in sensor pixels."""
    return _camera(request, camera).describe()


@router.put("/api/cameras/{camera}/ptz", tags=["control"])
async def put_ptz(request: Request, camera: str, body: PtzRequest) -> dict[str, Any]:
    """Move to an absolute position; every controller is told."""
    try:
        return _camera(request, camera).set_ptz(body.pan, body.tilt, body.zoom)
    except CommandError as err:
        raise HTTPException(422, str(err)) from None


class VelocityRequest(BaseModel):
    """A velocity move; all zero stops. It stops by itself after duration_s, so resend it while a stick is held."""

    model_config = ConfigDict(allow_inf_nan=False)
    pan_per_s: float = Field(0.0, ge=-10, le=10, description="crop widths per second, + = right")
    tilt_per_s: float = Field(0.0, ge=-10, le=10, description="crop heights per second, + = down")
    zoom_per_s: float = Field(0.0, ge=-10, le=10, description="log rate: zoom × e^(rate·s), + = in")
    duration_s: float = Field(2.0, gt=0, le=30, description="the move stops after this long")


def _command(call: Callable[[], dict[str, Any]], missing_status: int = 422) -> dict[str, Any]:
    try:
        return call()
    except CommandError as err:
        status = 404 if "no preset" in str(err) else missing_status
        raise HTTPException(status, str(err)) from None


@router.post("/api/cameras/{camera}/ptz/velocity", tags=["control"])
async def ptz_velocity(request: Request, camera: str, body: VelocityRequest) -> dict[str, Any]:
    """Start, change or stop (all zero) a velocity move."""
    controller = _camera(request, camera)
    return _command(lambda: controller.move(body.pan_per_s, body.tilt_per_s, body.zoom_per_s, body.duration_s))


@router.get("/api/cameras/{camera}/presets", tags=["control"])
async def list_presets(request: Request, camera: str) -> dict[str, Any]:
    """The camera's saved views by name."""
    return _camera(request, camera).describe_presets()


@router.put("/api/cameras/{camera}/presets/{name}", tags=["control"])
async def save_preset(request: Request, camera: str, name: str, body: PtzRequest | None = None) -> dict[str, Any]:
    """Save the current view as `name` (or the given pan/tilt/zoom); `home` makes the home button go there."""
    controller = _camera(request, camera)
    state = None
    if body is not None and any(v is not None for v in (body.pan, body.tilt, body.zoom)):
        current = controller.state
        state = ptz.PtzState(
            current.pan if body.pan is None else body.pan,
            current.tilt if body.tilt is None else body.tilt,
            current.zoom if body.zoom is None else body.zoom,
        )
    return _command(lambda: controller.save_preset(name, state))


@router.post("/api/cameras/{camera}/presets/{name}/recall", tags=["control"])
async def recall_preset(request: Request, camera: str, name: str) -> dict[str, Any]:
    """Go to a saved view (`home` always exists: the whole field of view unless saved otherwise)."""
    controller = _camera(request, camera)
    return _command(lambda: controller.recall_preset(name))


@router.delete("/api/cameras/{camera}/presets/{name}", tags=["control"])
async def delete_preset(request: Request, camera: str, name: str) -> dict[str, Any]:
    """Forget a saved view."""
    controller = _camera(request, camera)
    return _command(lambda: controller.delete_preset(name))


class StereoRequest(PtzRequest):
    """A linked move of both eyes and/or a vergence change."""

    vergence: float | None = Field(
        None, ge=-0.5, le=0.5, description="disparity as a fraction of the crop width, + converges"
    )


def _rig(request: Request) -> StereoRig:
    rig = _controllers(request).rig
    if rig is None:
        raise HTTPException(404, "stereo is not enabled ([stereo] enabled = true)")
    return rig


@router.get("/api/stereo", tags=["control"])
async def get_stereo(request: Request) -> dict[str, Any]:
    """Both eyes' PTZ, their calibration offsets and the vergence."""
    return _rig(request).describe()


@router.put("/api/stereo", tags=["control"])
async def put_stereo(request: Request, body: StereoRequest) -> dict[str, Any]:
    """Move both eyes together (pan, tilt, zoom) and/or set the vergence; every controller is told."""
    rig = _rig(request)
    return _command(lambda: rig.move(body.pan, body.tilt, body.zoom, body.vergence))


class FlipRequest(BaseModel):
    horizontal: bool = False
    vertical: bool = False


class PauseRequest(BaseModel):
    paused: bool


@router.put("/api/cameras/{camera}/flip", tags=["control"])
async def put_flip(request: Request, camera: str, body: FlipRequest) -> dict[str, Any]:
    """Mirror one camera (a backend may restart that camera, never another); 409 when the source cannot."""
    controller = _camera(request, camera)
    return _command(lambda: controller.set_flip(body.horizontal, body.vertical), missing_status=409)


@router.put("/api/cameras/{camera}/pause", tags=["control"])
async def put_pause(request: Request, camera: str, body: PauseRequest) -> dict[str, Any]:
    """Hold or release one camera's picture."""
    controller = _camera(request, camera)
    return _command(lambda: controller.set_paused(body.paused))


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
async def control(websocket: WebSocket) -> None:
    """JSON both ways: the current state on connect, then every change by anyone; ping → pong; PTZ; player reports."""
    await websocket.accept()
    vergence = websocket.app.state.vergence
    controllers = _controllers(websocket)
    principal = principal_of(websocket.scope)
    client_id = new_client_id()
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=EVENT_QUEUE)
    controllers.listeners.add(events)
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
                    await websocket.send_json({"type": "error", "code": "bad_json", "message": str(err)})
                    continue
                reply = await answer_control(message, client_id, vergence, principal)
                if reply is not None:
                    await websocket.send_json(reply)
    finally:
        controllers.listeners.discard(events)
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


async def _forward(websocket: WebSocket, events: asyncio.Queue[dict[str, Any]]) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.send_json(await events.get())


def new_client_id() -> int:
    """A number for one controller (a control WebSocket or a WebRTC data channel), keying its player reports."""
    return next(_client_ids)


async def answer_control(message: Any, client_id: int, vergence: Any, principal: Principal) -> dict[str, Any] | None:
    """Answer one message of the control protocol, from a control WebSocket or a WebRTC data channel.

    Anyone who may watch may ping and report; everything else changes something and needs an operator.
    """
    kind = message.get("type") if isinstance(message, dict) else None
    if not isinstance(kind, str):
        got = f"an object with type {kind!r}" if isinstance(message, dict) else f"a JSON {type(message).__name__}"
        message_text = f'a control message is a JSON object with a "type" string, got {got}'
        return {"type": "error", "code": "unknown_message", "message": message_text}
    if kind not in VIEWER_MESSAGES and not may_command(principal):
        refusal = f"{kind!r} needs the operator role; {principal.name} is a {principal.role.name.lower()}"
        if kind == "command":
            reply = {"ok": False, "code": "forbidden", "error": refusal, "type": "reply", "command": None}
            return {**reply, "id": message["id"]} if "id" in message else reply
        return {"type": "error", "code": "forbidden", "message": refusal}
    if kind == "command":
        return await run_command(message, vergence, principal)
    return handle_control(message, client_id, vergence)


async def run_command(message: dict[str, Any], vergence: Any, principal: Principal) -> dict[str, Any]:
    """`{"type": "command", "command": {…} | "text": "zoom 2", "id"?}` → `{"type": "reply", "command": <its type>, …}`."""
    raw = message.get("command", message.get("text"))
    if isinstance(raw, dict) and "id" in message:
        raw = {**raw, "id": message["id"]}
    reply = await vergence.commander.handle(raw, source=f"control WS {principal.name}")
    if "id" in message:
        reply["id"] = message["id"]
    return {**reply, "type": "reply", "command": reply.get("type")}


def handle_control(message: Any, client_id: int, vergence: Any) -> dict[str, Any] | None:
    """Answer one control message (state changes reach every controller as events, this one included)."""
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "ping":
        return {"type": "pong", "t": message.get("t"), "server_ns": time.time_ns()}
    if kind == "report":
        try:
            report = PlayerReport.model_validate({k: v for k, v in message.items() if k in PlayerReport.model_fields})
        except ValidationError as err:
            return {"type": "error", "code": "invalid", "message": _first_error(err)}
        vergence.report(client_id, report.model_dump())
        return None
    if kind == "stereo":
        rig = vergence.controllers.rig
        if rig is None:
            return {"type": "error", "code": "command_error", "message": "stereo is not enabled"}
        try:
            linked = StereoRequest.model_validate({k: v for k, v in message.items() if k in StereoRequest.model_fields})
            rig.move(linked.pan, linked.tilt, linked.zoom, linked.vergence)
        except ValidationError as err:
            return {"type": "error", "code": "invalid", "message": _first_error(err)}
        except CommandError as err:
            return {"type": "error", "code": err.code, "message": str(err)}
        return None
    if kind in processing_api.KINDS:
        return processing_api.handle(kind, message, vergence)
    if kind in ("ptz_velocity", "preset"):
        return _handle_camera_command(kind, message, vergence)
    if kind == "ptz":
        try:
            request = PtzRequest.model_validate({k: v for k, v in message.items() if k in ("pan", "tilt", "zoom")})
            vergence.controllers.get(str(message.get("camera", ""))).set_ptz(request.pan, request.tilt, request.zoom)
        except ValidationError as err:
            return {"type": "error", "code": "invalid", "message": _first_error(err)}
        except CommandError as err:
            return {"type": "error", "code": err.code, "message": str(err)}
        return None
    return {"type": "error", "code": "unknown_message", "message": f"unknown message type {kind!r}"}


def _handle_camera_command(kind: str, message: dict[str, Any], vergence: Any) -> dict[str, Any] | None:
    """`ptz_velocity` {camera, pan_per_s, tilt_per_s, zoom_per_s, duration_s}; `preset` {camera, action, name}."""
    try:
        controller = vergence.controllers.get(str(message.get("camera", "")))
        if kind == "ptz_velocity":
            fields = {k: v for k, v in message.items() if k in VelocityRequest.model_fields}
            velocity = VelocityRequest.model_validate(fields)
            controller.move(velocity.pan_per_s, velocity.tilt_per_s, velocity.zoom_per_s, velocity.duration_s)
            return None
        action, name = message.get("action"), str(message.get("name", ""))
        if action == "save":
            controller.save_preset(name)
        elif action == "recall":
            controller.recall_preset(name)
        elif action == "delete":
            controller.delete_preset(name)
        else:
            return {"type": "error", "code": "invalid", "message": f"preset action {action!r}: save, recall or delete"}
    except ValidationError as err:
        return {"type": "error", "code": "invalid", "message": _first_error(err)}
    except CommandError as err:
        return {"type": "error", "code": err.code, "message": str(err)}
    return None


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
