"""REST routes and control-WS messages for overlays, regions of interest, stabilization and plugins.

`{camera}` in these routes is any stream id: a camera, or a derived stream (stereo, depth) that draws its own overlays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ValidationError

from vergence.control.processing import OverlayModel, PluginModel, ProcessingController, RoiModel
from vergence.control.refusal import REFUSED
from vergence.errors import CommandError

router = APIRouter(tags=["processing"], responses=REFUSED)


class EnabledRequest(BaseModel):
    enabled: bool


def _processing(request: Request, camera: str) -> ProcessingController:
    controllers = request.app.state.vergence.controllers
    try:
        return controllers.get_processing(camera)  # type: ignore[no-any-return]
    except CommandError as err:
        raise HTTPException(404, str(err)) from None


def _run(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except KeyError as err:
        raise HTTPException(404, str(err.args[0])) from None
    except CommandError as err:
        raise HTTPException(403 if err.code == "forbidden" else 422, str(err)) from None


@router.get("/api/cameras/{camera}/overlay")
async def get_overlay(request: Request, camera: str) -> dict[str, Any]:
    """Which overlays the stream draws."""
    return _processing(request, camera).describe_overlay()


@router.put("/api/cameras/{camera}/overlay")
async def put_overlay(request: Request, camera: str, body: OverlayModel) -> dict[str, Any]:
    """Turn overlays on or off (any subset: timestamp, timestamp_format, crosshair, grid, rec, zoom, rois, texts)."""
    controller = _processing(request, camera)
    return _run(lambda: controller.set_overlay(body))


@router.get("/api/cameras/{camera}/rois")
async def list_rois(request: Request, camera: str) -> list[dict[str, Any]]:
    """The stream's regions of interest, corners in % of the frame."""
    return _processing(request, camera).describe_rois()


@router.put("/api/cameras/{camera}/rois/{name}")
async def put_roi(request: Request, camera: str, name: str, body: RoiModel) -> dict[str, Any]:
    """Create or replace a region of interest."""
    controller = _processing(request, camera)
    return _run(lambda: controller.set_roi(name, body))  # type: ignore[no-any-return]


@router.delete("/api/cameras/{camera}/rois/{name}")
async def delete_roi(request: Request, camera: str, name: str) -> dict[str, Any]:
    """Forget a region of interest (404 when there is none of that name)."""
    controller = _processing(request, camera)
    return _run(lambda: controller.delete_roi(name))  # type: ignore[no-any-return]


@router.get("/api/cameras/{camera}/stabilize")
async def get_stabilize(request: Request, camera: str) -> dict[str, Any]:
    """Whether the stream is stabilized."""
    return {"camera": camera, "enabled": _processing(request, camera).processing.stabilize}


@router.put("/api/cameras/{camera}/stabilize")
async def put_stabilize(request: Request, camera: str, body: EnabledRequest) -> dict[str, Any]:
    """Turn stabilization on or off (either way it starts from a clean trajectory)."""
    return _processing(request, camera).set_stabilize(body.enabled)


@router.get("/api/cameras/{camera}/plugins")
async def list_plugins(request: Request, camera: str) -> list[dict[str, Any]]:
    """The stream's plugins: where each runs (branch or inline), its cost, its results, its error."""
    return _processing(request, camera).describe_plugins()


@router.post("/api/cameras/{camera}/plugins", status_code=201)
async def add_plugin(request: Request, camera: str, body: PluginModel) -> dict[str, Any]:
    """Load a plugin from a file path or a module name, now; it is kept across restarts."""
    controller = _processing(request, camera)
    return _run(lambda: controller.add_plugin(body))  # type: ignore[no-any-return]


@router.put("/api/cameras/{camera}/plugins/{name}")
async def put_plugin(request: Request, camera: str, name: str, body: EnabledRequest) -> dict[str, Any]:
    """Turn a plugin on or off (on again clears its error)."""
    controller = _processing(request, camera)
    return _run(lambda: controller.set_plugin_enabled(name, body.enabled))  # type: ignore[no-any-return]


@router.delete("/api/cameras/{camera}/plugins/{name}")
async def delete_plugin(request: Request, camera: str, name: str) -> dict[str, Any]:
    """Unload a plugin."""
    controller = _processing(request, camera)
    return _run(lambda: controller.remove_plugin(name))  # type: ignore[no-any-return]


KINDS = ("overlay", "roi", "stabilize", "plugin")


def handle(kind: str, message: dict[str, Any], vergence: Any) -> dict[str, Any] | None:
    """Answer a control-WS processing message; changes reach every controller as events, errors only the sender.

    `overlay` {camera, …fields}; `roi` {camera, action: set|delete, name, x1, y1, x2, y2, colour};
    `stabilize` {camera, enabled}; `plugin` {camera, action: add|enable|disable|remove, name, path|module, options}.
    """
    try:
        controller: ProcessingController = vergence.controllers.get_processing(str(message.get("camera", "")))
        fields = {k: v for k, v in message.items() if k not in ("type", "camera", "action")}
        action = message.get("action")
        if kind == "overlay":
            controller.set_overlay(OverlayModel.model_validate(fields))
        elif kind == "stabilize":
            controller.set_stabilize(EnabledRequest.model_validate(fields).enabled)
        elif kind == "roi":
            name = str(fields.pop("name", ""))
            if action == "set":
                controller.set_roi(name, RoiModel.model_validate(fields))
            elif action == "delete":
                controller.delete_roi(name)
            else:
                return _error("invalid", f"roi action {action!r}: set or delete")
        else:
            name = str(fields.get("name", ""))
            if action == "add":
                controller.add_plugin(PluginModel.model_validate(fields))
            elif action in ("enable", "disable"):
                controller.set_plugin_enabled(name, action == "enable")
            elif action == "remove":
                controller.remove_plugin(name)
            else:
                return _error("invalid", f"plugin action {action!r}: add, enable, disable or remove")
    except ValidationError as err:
        return _error("invalid", validation_message(err))
    except KeyError as err:
        return _error("not_found", str(err.args[0]))
    except CommandError as err:
        return _error(err.code, str(err))
    return None


def validation_message(err: ValidationError) -> str:
    """The first problem of a validation error as one line: `field: what is wrong` (no field for a whole-body check)."""
    first = err.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {message}" if where else message


def _error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}
