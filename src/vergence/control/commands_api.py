"""REST for the command model (`POST /api/commands`) and the outputs (`/api/outputs`), both answered by the Commander."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from vergence.auth import principal_of
from vergence.control import json_text
from vergence.control.commander import Commander
from vergence.control.commands import command_schema

router = APIRouter()

# A refused command keeps the reply body every transport sends; the status says why.
_STATUS = {"invalid": 400, "unknown_command": 400, "forbidden": 403, "unavailable": 503, "io_error": 500}
MAX_COMMAND_BYTES = 64 * 1024


class CommandDone(BaseModel):
    """The reply to a command that ran."""

    ok: Literal[True]
    type: str = Field(description="the command's type")
    result: dict[str, Any]
    id: Any = Field(None, description="the command's id, when it had one")


class CommandRefused(BaseModel):
    """The reply to a command that was refused or failed."""

    ok: Literal[False]
    code: str = Field(description="invalid, unknown_command, command_error, unavailable, …")
    error: str = Field(description="what is wrong, naming the field")
    id: Any = Field(None, description="the command's id, when it had one")


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of the command union with its `$defs` inlined: the route reads its body itself, so OpenAPI
    learns the body's shape only from `openapi_extra`, where `$defs` references do not resolve."""
    defs = schema["$defs"]
    return {"oneOf": [defs[choice["$ref"].rsplit("/", 1)[-1]] for choice in schema["oneOf"]]}


_COMMAND_REFUSED: dict[int | str, dict[str, Any]] = {
    status: {"model": CommandRefused, "description": reason}
    for status, reason in ((400, "invalid or unknown command"), (409, "cannot be done now"), (503, "not ready"))
}
_COMMAND_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inline(command_schema())},
            "text/plain": {"schema": {"type": "string", "example": "zoom 2"}},
        },
    }
}


def _commander(request: Request) -> Commander:
    return request.app.state.vergence.commander


def _answer(reply: dict[str, Any]) -> JSONResponse:
    status = 200 if reply["ok"] else _STATUS.get(reply.get("code", ""), 409)
    return JSONResponse(reply, status_code=status)


@router.post(
    "/api/commands",
    tags=["control"],
    response_model=CommandDone,
    responses=_COMMAND_REFUSED,
    openapi_extra=_COMMAND_BODY,
)
async def post_command(request: Request) -> JSONResponse:
    """Run one command: a JSON object (`{"type": "zoom", "value": 2}`) or a text/plain line (`zoom 2`, `bitrate 2500`).

    The reply is the same on every transport: `{"ok": true, "type", "result"}` or `{"ok": false, "code", "error"}`
    (400 invalid or unknown, 409 cannot be done now, 503 not ready). Commands: docs/protocol.md, "Commands".
    """
    body = await request.body()
    if len(body) > MAX_COMMAND_BYTES:
        raise HTTPException(413, f"a command is at most {MAX_COMMAND_BYTES // 1024} KiB")
    content_type = request.headers.get("content-type", "")
    raw: Any = body
    if "json" in content_type:
        try:
            raw = json_text.loads(body)
        except ValueError as err:
            return _answer({"ok": False, "code": "invalid", "error": f"invalid JSON: {err}"})
    client, principal = request.client, principal_of(request.scope)
    source = f"REST {principal.name}@{client.host}" if client else f"REST {principal.name}"
    return _answer(await _commander(request).handle(raw, source=source))


@router.get("/api/outputs", tags=["outputs"])
async def list_outputs(request: Request) -> list[dict[str, Any]]:
    """The UDP (RTP / MPEG-TS) and restream outputs with their destination, state and counters."""
    return [output.describe() for output in request.app.state.vergence.outputs.values()]


def _output(request: Request, output_id: str) -> Any:
    outputs = request.app.state.vergence.outputs
    output = outputs.get(output_id)
    if output is None:
        raise HTTPException(404, f"unknown output {output_id!r}; outputs: {', '.join(outputs) or 'none configured'}")
    return output


@router.get(
    "/api/outputs/{output_id}.sdp",
    tags=["outputs"],
    response_class=Response,
    responses={200: {"content": {"application/sdp": {"schema": {"type": "string"}}}, "description": "the SDP"}},
)
async def output_sdp(request: Request, output_id: str) -> Response:
    """The session description of an RTP output: `ffplay -protocol_whitelist file,udp,rtp -i cam.sdp`."""
    output = _output(request, output_id)
    if output.kind != "udp" or output.describe().get("protocol") != "rtp":
        raise HTTPException(409, f"output {output_id} does not send RTP, so it has no SDP")
    sdp = output.sdp()
    if sdp is None:
        raise HTTPException(503, f"output {output_id} has not sent a keyframe yet")
    return Response(sdp, media_type="application/sdp", headers={"Cache-Control": "no-cache"})


@router.get("/api/outputs/{output_id}", tags=["outputs"])
async def get_output(request: Request, output_id: str) -> dict[str, Any]:
    """One output."""
    return _output(request, output_id).describe()


class OutputRequest(BaseModel):
    """A change to an output; omitted fields stay."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = Field(None, description="start (true) or stop (false) sending")
    host: str | None = Field(None, min_length=1, max_length=253, description="UDP destination address")
    port: int | None = Field(None, ge=1, le=65535, description="UDP destination port")
    protocol: Literal["rtp", "mpegts"] | None = Field(None, description="UDP payload")


@router.put("/api/outputs/{output_id}", tags=["outputs"])
async def put_output(request: Request, output_id: str, body: OutputRequest) -> JSONResponse:
    """Change an output at run time (destination, protocol, on/off) without touching any other output."""
    _output(request, output_id)
    commander = _commander(request)
    commands: list[dict[str, Any]] = []
    if body.host is not None or body.port is not None:
        commands.append({"type": "destination", "output": output_id, "host": body.host, "port": body.port})
    if body.protocol is not None:
        commands.append({"type": "protocol", "output": output_id, "protocol": body.protocol})
    if body.enabled is not None:
        commands.append({"type": "stream", "output": output_id, "action": "start" if body.enabled else "stop"})
    for command in commands:
        reply = await commander.handle({key: value for key, value in command.items() if value is not None})
        if not reply["ok"]:
            return _answer(reply)
    return JSONResponse(_output(request, output_id).describe())
