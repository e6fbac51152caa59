"""REST for commands: `POST /api/commands` takes any command, and resource-shaped routes (PTZ, presets, stereo, flip,
pause, overlays, ROIs, stabilization, plugins, outputs) each turn their path and body into one command.

Every route hands its command to the `Commander`; a refusal is the reply every transport sends, with the status
`HTTP_STATUS` gives its code (and `detail`, the same sentence, for clients that read FastAPI's field).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from vergence.auth import principal_of
from vergence.context import server_context
from vergence.control.commander import Commander, error_reply
from vergence.control.commands import (
    FlipCommand,
    MoveCommand,
    OverlayCommand,
    PauseCommand,
    PluginCommand,
    PtzCommand,
    Roi,
    StabilizeCommand,
    StereoCommand,
    command_schema,
    fields_of,
)
from vergence.control.controller import CameraController
from vergence.control.parsing import describe_validation
from vergence.control.processing import ProcessingController
from vergence.errors import CommandError, InvalidCommand, VergenceError, http_status
from vergence.media import json_text

router = APIRouter()
MAX_COMMAND_BYTES = 64 * 1024


class CommandDone(BaseModel):
    """The reply to a command that ran."""

    ok: Literal[True]
    command: str = Field(description="the command's type")
    result: dict[str, Any]
    id: Any = Field(None, description="the command's id, when it had one")


class CommandRefused(BaseModel):
    """The reply to a command that was refused or failed."""

    ok: Literal[False]
    command: str | None = Field(description="the command's type, when it had one")
    code: str = Field(description="invalid, unknown_command, not_found, forbidden, conflict, unavailable, …")
    error: str = Field(description="what is wrong, naming the field")
    id: Any = Field(None, description="the command's id, when it had one")
    detail: Any = Field(None, description="the same sentence (or FastAPI's list of field errors)")


REFUSED: dict[int | str, dict[str, Any]] = {
    status: {"model": CommandRefused, "description": reason}
    for status, reason in (
        (400, "not a command, or an unknown one"),
        (404, "it names something that does not exist"),
        (409, "it cannot be done now"),
        (422, "a value is invalid"),
        (503, "not ready"),
    )
}


def refused(err: VergenceError, kind: str | None = None, command_id: Any = None) -> JSONResponse:
    """A refusal as HTTP: the reply every transport sends, with the status of its code."""
    return as_http(error_reply(command_id, err, kind))


def as_http(reply: dict[str, Any]) -> JSONResponse:
    """A reply as HTTP: 200, or a refusal with the status of its code and `detail` (the same sentence)."""
    if reply["ok"]:
        return JSONResponse(reply)
    return JSONResponse({**reply, "detail": reply["error"]}, status_code=http_status(reply["code"]))


def _commander(request: Request) -> Commander:
    return server_context(request).commander


async def _read(request: Request) -> bytes:
    """A command's body, refused (too_large) beyond MAX_COMMAND_BYTES."""
    raw = await request.body()
    if len(raw) > MAX_COMMAND_BYTES:
        raise CommandError(f"a command is at most {MAX_COMMAND_BYTES // 1024} KiB", code="too_large")
    return raw


def _json(raw: bytes) -> Any:
    """Strict JSON (bad_request when it is not)."""
    try:
        return json_text.loads(raw)
    except ValueError as err:
        raise CommandError(f"invalid JSON: {err}", code="bad_request") from None


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object a route's body holds (none: no fields)."""
    raw = await _read(request)
    if not raw.strip():
        return {}
    body = _json(raw)
    if not isinstance(body, dict):
        raise CommandError("the body is a JSON object", code="bad_request")
    return body


async def _run(request: Request, kind: str, path: dict[str, Any], body: dict[str, Any] | None = None) -> Any:
    """Run the command `kind` with the route's path fields over the body's; a refusal is an HTTP error reply."""
    try:
        fields = {**(await _body(request) if body is None else body), **path, "type": kind}
        return await _commander(request).run(fields)
    except VergenceError as err:
        return refused(err, kind)


def _with_body(model: type[Any], description: str = "") -> dict[str, Any]:
    """The OpenAPI request body of a route that carries a command's fields."""
    schema = _resolved(fields_of(model))
    return {
        "requestBody": {
            "required": False,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


def _resolved(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema with every `#/$defs/…` reference replaced by its definition (and no `$defs`): a route that reads its
    body itself tells OpenAPI the body's shape in `openapi_extra`, where such a reference would be looked up in the
    whole document and not found (an overlay's `texts`, a command union's members)."""
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items() if key != "$defs"}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)  # type: ignore[no-any-return]


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of the command union with its `$defs` inlined (see `_resolved`); the discriminator's mapping
    names `$defs` too, so it is left out (each member's `type` const tells them apart)."""
    return {"oneOf": _resolved(schema)["oneOf"]}


_COMMAND_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inline(command_schema())},
            "text/plain": {"schema": {"type": "string", "example": "zoom 2"}},
        },
    }
}


@router.post(
    "/api/commands", tags=["control"], response_model=CommandDone, responses=REFUSED, openapi_extra=_COMMAND_BODY
)
async def post_command(request: Request) -> JSONResponse:
    """Run one command: a JSON object (`{"type": "zoom", "value": 2}`) or a text/plain line (`zoom 2`, `flip cam1 h`).

    The reply is the same on every transport: `{"ok": true, "command", "result"}` or `{"ok": false, "code", "error"}`;
    the status follows the code (docs/protocol.md, "Error codes").
    """
    try:
        raw = await _read(request)
        command = _json(raw) if "json" in request.headers.get("content-type", "") else raw
    except VergenceError as err:
        return refused(err)
    client, principal = request.client, principal_of(request.scope)
    source = f"REST {principal.name}@{client.host}" if client else f"REST {principal.name}"
    return as_http(await _commander(request).handle(command, source=source))


# ---- cameras: PTZ, presets, flip, pause


def _camera(request: Request, camera: str) -> CameraController:
    return _commander(request).controllers.get(camera)


@router.get("/api/cameras/{camera}/ptz", tags=["control"], responses=REFUSED)
async def get_ptz(request: Request, camera: str) -> dict[str, Any]:
    """The camera's pan, tilt, zoom and the crop they give in sensor pixels."""
    return _camera(request, camera).describe()


@router.put("/api/cameras/{camera}/ptz", tags=["control"], responses=REFUSED, openapi_extra=_with_body(PtzCommand))
async def put_ptz(request: Request, camera: str) -> Any:
    """Move to an absolute position (the `ptz` command); every controller is told."""
    return await _run(request, "ptz", {"stream": camera})


@router.post(
    "/api/cameras/{camera}/ptz/velocity", tags=["control"], responses=REFUSED, openapi_extra=_with_body(MoveCommand)
)
async def ptz_velocity(request: Request, camera: str) -> Any:
    """Start, change or stop (all zero) a velocity move (the `move` command)."""
    return await _run(request, "move", {"stream": camera})


@router.get("/api/cameras/{camera}/presets", tags=["control"], responses=REFUSED)
async def list_presets(request: Request, camera: str) -> dict[str, Any]:
    """The camera's saved views by name."""
    return _camera(request, camera).describe_presets()


@router.put(
    "/api/cameras/{camera}/presets/{name}",
    tags=["control"],
    responses=REFUSED,
    openapi_extra=_with_body(PtzCommand, "pan, tilt, zoom to save instead of the current view"),
)
async def save_preset(request: Request, camera: str, name: str) -> Any:
    """Save the current view as `name` (or the given pan/tilt/zoom); `home` makes the home button go there."""
    return await _run(request, "preset", {"stream": camera, "action": "save", "name": name})


@router.post("/api/cameras/{camera}/presets/{name}/recall", tags=["control"], responses=REFUSED)
async def recall_preset(request: Request, camera: str, name: str) -> Any:
    """Go to a saved view (`home` always exists: the whole field of view unless saved otherwise)."""
    return await _run(request, "preset", {"stream": camera, "action": "recall", "name": name}, body={})


@router.delete("/api/cameras/{camera}/presets/{name}", tags=["control"], responses=REFUSED)
async def delete_preset(request: Request, camera: str, name: str) -> Any:
    """Forget a saved view."""
    return await _run(request, "preset", {"stream": camera, "action": "delete", "name": name}, body={})


@router.put("/api/cameras/{camera}/flip", tags=["control"], responses=REFUSED, openapi_extra=_with_body(FlipCommand))
async def put_flip(request: Request, camera: str) -> Any:
    """Mirror one camera (a backend may restart that camera, never another); 409 when the source cannot."""
    return await _run(request, "flip", {"stream": camera})


@router.put("/api/cameras/{camera}/pause", tags=["control"], responses=REFUSED, openapi_extra=_with_body(PauseCommand))
async def put_pause(request: Request, camera: str) -> Any:
    """Hold or release one camera's picture."""
    return await _run(request, "pause", {"stream": camera})


# ---- stereo


@router.get("/api/stereo", tags=["control"], responses=REFUSED)
async def get_stereo(request: Request) -> dict[str, Any]:
    """Both eyes' PTZ, their calibration offsets and the vergence."""
    return _commander(request).rig().describe()


@router.put("/api/stereo", tags=["control"], responses=REFUSED, openapi_extra=_with_body(StereoCommand))
async def put_stereo(request: Request) -> Any:
    """Move both eyes together (pan, tilt, zoom) and/or set the vergence; every controller is told."""
    return await _run(request, "stereo", {})


# ---- processing: `{camera}` is any stream id, a camera or a derived stream that draws its own overlays


def _processing(request: Request, camera: str) -> ProcessingController:
    commander = _commander(request)
    return commander.controllers.get_processing(commander.stream(camera).id)


@router.get("/api/cameras/{camera}/overlay", tags=["processing"], responses=REFUSED)
async def get_overlay(request: Request, camera: str) -> dict[str, Any]:
    """Which overlays the stream draws."""
    return _processing(request, camera).describe_overlay()


@router.put(
    "/api/cameras/{camera}/overlay", tags=["processing"], responses=REFUSED, openapi_extra=_with_body(OverlayCommand)
)
async def put_overlay(request: Request, camera: str) -> Any:
    """Turn overlays on or off (any subset: timestamp, timestamp_format, crosshair, grid, rec, zoom, rois, texts)."""
    return await _run(request, "overlay", {"stream": camera})


@router.get("/api/cameras/{camera}/rois", tags=["processing"], responses=REFUSED)
async def list_rois(request: Request, camera: str) -> list[dict[str, Any]]:
    """The stream's regions of interest, corners in % of the frame."""
    return _processing(request, camera).describe_rois()


@router.put(
    "/api/cameras/{camera}/rois/{name}",
    tags=["processing"],
    responses=REFUSED,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": Roi.model_json_schema()}}}
    },
)
async def put_roi(request: Request, camera: str, name: str) -> Any:
    """Create or replace a region of interest."""
    return await _run(request, "roi", {"stream": camera, "action": "set", "name": name})


@router.delete("/api/cameras/{camera}/rois/{name}", tags=["processing"], responses=REFUSED)
async def delete_roi(request: Request, camera: str, name: str) -> Any:
    """Forget a region of interest (404 when there is none of that name)."""
    return await _run(request, "roi", {"stream": camera, "action": "delete", "name": name}, body={})


@router.get("/api/cameras/{camera}/stabilize", tags=["processing"], responses=REFUSED)
async def get_stabilize(request: Request, camera: str) -> dict[str, Any]:
    """Whether the stream is stabilized."""
    processing = _processing(request, camera)
    return {"stream": processing.stream.id, "enabled": processing.processing.stabilize}


@router.put(
    "/api/cameras/{camera}/stabilize",
    tags=["processing"],
    responses=REFUSED,
    openapi_extra=_with_body(StabilizeCommand),
)
async def put_stabilize(request: Request, camera: str) -> Any:
    """Turn stabilization on or off (either way it starts from a clean trajectory)."""
    return await _run(request, "stabilize", {"stream": camera})


@router.get("/api/cameras/{camera}/plugins", tags=["processing"], responses=REFUSED)
async def list_plugins(request: Request, camera: str) -> list[dict[str, Any]]:
    """The stream's plugins: where each runs (branch or inline), its cost, its results, its error."""
    return _processing(request, camera).describe_plugins()


@router.post(
    "/api/cameras/{camera}/plugins",
    status_code=201,
    tags=["processing"],
    responses=REFUSED,
    openapi_extra=_with_body(PluginCommand),
)
async def add_plugin(request: Request, camera: str) -> Any:
    """Load a plugin from a file in [processing] plugin_dir or one of vergence's modules, now; kept across restarts."""
    return await _run(request, "plugin", {"stream": camera, "action": "add"})


class EnabledRequest(BaseModel):
    enabled: bool


@router.put(
    "/api/cameras/{camera}/plugins/{name}",
    tags=["processing"],
    responses=REFUSED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EnabledRequest.model_json_schema()}},
        }
    },
)
async def put_plugin(request: Request, camera: str, name: str) -> Any:
    """Turn a plugin on or off (on again clears its error)."""
    # The body is read here, as every other route reads its own: FastAPI's model would answer a body it cannot parse
    # with its own 400 (`{"detail": …}`), not the refusal every other route gives.
    try:
        body = EnabledRequest.model_validate(await _body(request))
    except ValidationError as err:
        return refused(InvalidCommand(describe_validation(err, union=False)), "plugin")
    except VergenceError as err:
        return refused(err, "plugin")
    action = "enable" if body.enabled else "disable"
    return await _run(request, "plugin", {"stream": camera, "action": action, "name": name}, body={})


@router.delete("/api/cameras/{camera}/plugins/{name}", tags=["processing"], responses=REFUSED)
async def delete_plugin(request: Request, camera: str, name: str) -> Any:
    """Unload a plugin."""
    return await _run(request, "plugin", {"stream": camera, "action": "remove", "name": name}, body={})


# ---- outputs


@router.get("/api/outputs", tags=["outputs"])
async def list_outputs(request: Request) -> list[dict[str, Any]]:
    """The UDP (RTP / MPEG-TS) and restream outputs with their destination, state and counters."""
    return [output.describe() for output in server_context(request).outputs.values()]


@router.get(
    "/api/outputs/{output_id}.sdp",
    tags=["outputs"],
    response_class=Response,
    responses={
        200: {"content": {"application/sdp": {"schema": {"type": "string"}}}, "description": "the SDP"},
        **REFUSED,
    },
)
async def output_sdp(request: Request, output_id: str) -> Response:
    """The session description of an RTP output: `ffplay -protocol_whitelist file,udp,rtp -i cam.sdp`."""
    output: Any = _commander(request).output(output_id)
    if output.kind != "udp" or output.describe().get("protocol") != "rtp":
        return refused(CommandError(f"output {output_id} does not send RTP, so it has no SDP"))
    sdp = output.sdp()
    if sdp is None:
        return refused(CommandError(f"output {output_id} has not sent a keyframe yet", code="unavailable"))
    return Response(sdp, media_type="application/sdp", headers={"Cache-Control": "no-cache"})


@router.get("/api/outputs/{output_id}", tags=["outputs"], responses=REFUSED)
async def get_output(request: Request, output_id: str) -> dict[str, Any]:
    """One output."""
    return _commander(request).output(output_id).describe()


class OutputRequest(BaseModel):
    """A change to an output; omitted fields stay."""

    enabled: bool | None = Field(None, description="start (true) or stop (false) sending")
    host: str | None = Field(None, description="UDP destination address")
    port: int | None = Field(None, description="UDP destination port")
    protocol: Literal["rtp", "mpegts"] | None = Field(None, description="UDP payload")


@router.put(
    "/api/outputs/{output_id}",
    tags=["outputs"],
    responses=REFUSED,
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": OutputRequest.model_json_schema()}}}},
)
async def put_output(request: Request, output_id: str) -> Any:
    """Change an output at run time (destination, protocol, on/off; the `destination`, `protocol` and `output`
    commands) without touching any other output."""
    try:
        body = await _body(request)
        unknown = set(body) - set(OutputRequest.model_fields)
        if unknown:
            raise CommandError(f"unknown fields {', '.join(sorted(unknown))}", code="invalid")
        commander = _commander(request)
        commander.output(output_id)
        commands: list[dict[str, Any]] = []
        if body.get("host") is not None or body.get("port") is not None:
            commands.append({"type": "destination", "host": body.get("host"), "port": body.get("port")})
        if body.get("protocol") is not None:
            commands.append({"type": "protocol", "protocol": body["protocol"]})
        if body.get("enabled") is not None:
            enabled = body["enabled"]
            if not isinstance(enabled, bool):
                raise CommandError(f"enabled: a boolean, got {enabled!r}", code="invalid")
            commands.append({"type": "output", "action": "start" if enabled else "stop"})
        for fields in commands:
            present = {key: value for key, value in fields.items() if value is not None}
            await commander.run({**present, "output": output_id})
    except VergenceError as err:
        return refused(err)
    return commander.output(output_id).describe()
