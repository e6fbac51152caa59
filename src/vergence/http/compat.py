"""pi-h264-to-browser's video and PTZ WebSockets (`[compat] pi_h264_to_browser = true`), as its pages use them.

Its pages open `ws://HOST:PORT/ws/` (the single-camera server) or `/cam0/`, `/cam1/` (the dual one) and hand every
binary message, one Annex-B access unit, to jMuxer: vergence sends the stream's own H.264 access units, bare (as
`/ws/video/{stream}?raw=1` does). The single-camera page also sends text on its video socket: `X:<int>` and `Y:<int>`,
the crop's top-left corner in sensor pixels, and `Z:<float>`, the crop's size as a multiple of the picture's
(ScalerCrop = (X, Y, W·Z, H·Z)); each becomes a `ptz` command of the view nearest that crop, for operators only.

The dual page's `/ptz/` socket carries a JSON array of three objects: per camera (`cam` 0 and 1) its flips and pause
(`f`: `hor`, `ver`, `pau`), its overlays (`e`: `txt` the time, `lin` the centre lines, `def` "save as default") and
its crop centre in sensor pixels (`x`, `y`: `min`, `val`, `max`); and (`cam` 2) both together: an offset (`x`, `y`)
and a zoom factor `z` (the crop's size as a multiple of the picture's, 0.5 … 2). The server sends the state when a
page connects and every page's message to every page; each message becomes `flip`, `pause`, `overlay` and `ptz`
commands (operators only).

Its pages themselves, from the user's copy of the project's `web/` folder (`pi_h264_to_browser_pages`), are served at
`/compat/` (and its `jmuxer.min.js` also at `/jmuxer.min.js`, where the single-camera page looks for it): the page and
script files get the values its server filled in (`$port`, `$fps`, `$width`, `$height`, `$xmax`, `$ymax`, `$ip`), from
the first camera and the address the browser used; every other file is sent as it is.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, RedirectResponse, Response

from vergence import ptz
from vergence.auth import may_command, principal_of
from vergence.context import Server, ServerContext
from vergence.outputs.ws import CLOSE_UNKNOWN_STREAM, refuse_unknown_stream, serve_channel
from vergence.stream import Stream

log = logging.getLogger(__name__)

router = APIRouter()
pages_router = APIRouter()

# The names its servers filled into the pages (string.Template), and the files they filled them into: pages and their
# own scripts, never a minified library (whose `$` are its own).
PAGE_KEYS = ("ip", "port", "fps", "width", "height", "xmax", "ymax")
_PAGE_KEY = re.compile(r"\$(?:\{(" + "|".join(PAGE_KEYS) + r")\}|(" + "|".join(PAGE_KEYS) + r")\b)")
TEMPLATED_SUFFIXES = (".html", ".htm", ".js")
_HOST = re.compile(r"[A-Za-z0-9.:-]{1,253}")


class CropTexts:
    """One page's `X:` / `Y:` / `Z:` messages: the crop it asks for, as `ptz` commands of one camera."""

    def __init__(self, server: ServerContext, stream: Stream, allowed: bool) -> None:
        self._server = server
        self._stream = stream
        self._allowed = allowed
        controller = server.commander.controllers.get(stream.id)
        crop = controller.crop()
        self.x, self.y = crop.x, crop.y
        self.zoom = crop.width / stream.info.width  # the page's Z: the crop's width over the picture's

    async def __call__(self, text: str) -> None:
        key, _, value = text.partition(":")
        try:
            if key == "X":
                self.x = int(value)
            elif key == "Y":
                self.y = int(value)
            elif key == "Z":
                self.zoom = float(value)
            else:
                return
        except ValueError:
            log.info("pi-h264-to-browser: %r is not a number", text[:40])
            return
        if not self._allowed:
            log.info("pi-h264-to-browser: PTZ from a viewer refused (an operator's role is needed)")
            return
        await self._server.commander.handle(self.command(), source="pi-h264-to-browser /ws/")

    def command(self) -> dict[str, Any]:
        """The `ptz` command of the view nearest the crop asked for."""
        stream = self._stream
        controller = self._server.commander.controllers.get(stream.id)
        width = max(2, round(stream.info.width * self.zoom))
        height = max(2, round(stream.info.height * self.zoom))
        crop = ptz.Rect(self.x, self.y, width, height)
        state = ptz.state_for_crop(crop, stream.geometry, controller.output_size, controller.max_zoom)
        return {"type": "ptz", "stream": stream.id, "pan": state.pan, "tilt": state.tilt, "zoom": state.zoom}


@router.websocket("/ws/")
async def single_camera(websocket: WebSocket, vergence: Server) -> None:
    """The single-camera page: the first camera's access units, and its X:/Y:/Z: crop messages."""
    stream = vergence.streams[vergence.settings.cameras[0].id]
    allowed = may_command(principal_of(websocket.scope))
    texts = CropTexts(vergence, stream, allowed)
    await serve_channel(websocket, stream, stream.h264, vergence.settings.hub, True, texts)


@router.websocket("/cam{index}/")
async def dual_camera(websocket: WebSocket, index: str, vergence: Server) -> None:
    """The dual-camera page: camera `index` (0, 1, … in the configured order)."""
    cameras = vergence.settings.cameras
    if not index.isdigit() or int(index) >= len(cameras):
        await refuse_unknown_stream(websocket, f"cam{index}")
        return
    stream = vergence.streams[cameras[int(index)].id]
    await serve_channel(websocket, stream, stream.h264, vergence.settings.hub, True)


class DualPtz:
    """The `/ptz/` pages of one server: what each message asks of the first two cameras, and who hears it."""

    def __init__(self) -> None:
        self.pages: set[WebSocket] = set()

    def state(self, server: ServerContext) -> list[dict[str, Any]]:
        """The array a page gets when it connects, from the cameras' current state."""
        cameras = [server.streams[camera.id] for camera in server.settings.cameras[:2]]
        described: list[dict[str, Any]] = []
        zoom = 1.0
        for index, stream in enumerate(cameras):
            controller = server.commander.controllers.get(stream.id)
            overlay = server.commander.controllers.get_processing(stream.id).describe_overlay()
            crop, sensor = controller.crop(), stream.geometry
            width, height = stream.info.width, stream.info.height
            zoom = crop.width / width
            described.append(
                {
                    "cam": index,
                    "f": {"hor": int(stream.flip[0]), "ver": int(stream.flip[1]), "pau": int(stream.paused)},
                    "e": {"txt": overlay["timestamp"], "lin": overlay["crosshair"], "def": False},
                    "x": {"min": width // 2, "val": crop.x + crop.width // 2, "max": sensor.width - width // 2},
                    "y": {"min": height // 2, "val": crop.y + crop.height // 2, "max": sensor.height - height // 2},
                }
            )
        both = {
            "cam": 2,
            "x": {"min": -1500, "val": 0, "max": 1500},
            "y": {"min": -1500, "val": 0, "max": 1500},
            "z": {"min": 0.5, "val": round(zoom, 3), "max": 2.0},
        }
        return [*described, both]

    def commands(self, server: ServerContext, data: Any) -> list[dict[str, Any]]:
        """The commands one message stands for; ValueError when it is not the pages' array."""
        if not isinstance(data, list) or len(data) != 3:
            raise ValueError("expected an array of three objects (cam 0, cam 1, both)")
        both = data[2]
        dx, dy, zoom = int(both["x"]["val"]), int(both["y"]["val"]), float(both["z"]["val"])
        commands: list[dict[str, Any]] = []
        for camera, page in zip(server.settings.cameras[:2], data[:2], strict=False):
            stream = server.streams[camera.id]
            controller = server.commander.controllers.get(stream.id)
            width, height = round(stream.info.width * zoom), round(stream.info.height * zoom)
            centre_x, centre_y = int(page["x"]["val"]) + dx, int(page["y"]["val"]) + dy
            crop = ptz.Rect(centre_x - width // 2, centre_y - height // 2, width, height)
            state = ptz.state_for_crop(crop, stream.geometry, controller.output_size, controller.max_zoom)
            flips = (bool(page["f"]["hor"]), bool(page["f"]["ver"]))
            if flips != stream.flip:
                commands.append({"type": "flip", "stream": stream.id, "horizontal": flips[0], "vertical": flips[1]})
            if bool(page["f"]["pau"]) != stream.paused:
                commands.append({"type": "pause", "stream": stream.id, "paused": bool(page["f"]["pau"])})
            # Only what changed: a slider sends the whole array many times a second, and each overlay command is an
            # event to every controller and a save of the state.
            overlay = {"timestamp": bool(page["e"]["txt"]), "crosshair": bool(page["e"]["lin"])}
            current = server.commander.controllers.get_processing(stream.id).describe_overlay()
            if any(current[key] != value for key, value in overlay.items()):
                commands.append({"type": "overlay", "stream": stream.id, **overlay})
            commands.append(
                {"type": "ptz", "stream": stream.id, "pan": state.pan, "tilt": state.tilt, "zoom": state.zoom}
            )
        return commands


def _dual(websocket: WebSocket) -> DualPtz:
    """The `/ptz/` pages of this application (made with its first page)."""
    state = websocket.app.state
    if getattr(state, "compat_dual_ptz", None) is None:
        state.compat_dual_ptz = DualPtz()
    return state.compat_dual_ptz  # type: ignore[no-any-return]


@router.websocket("/ptz/")
async def dual_ptz(websocket: WebSocket, vergence: Server) -> None:
    """The dual page's PTZ socket: the state on connect, then each page's message as commands and to every page."""
    dual = _dual(websocket)
    allowed = may_command(principal_of(websocket.scope))
    await websocket.accept()
    if len(vergence.settings.cameras) < 2:
        # Its dual page is two cameras' page: one camera is the single page's /ws/, with its X:/Y:/Z: messages.
        log.info("pi-h264-to-browser /ptz/: refused, the dual page needs two cameras and one is configured")
        await websocket.close(code=CLOSE_UNKNOWN_STREAM, reason="the dual page's /ptz/ needs two cameras; use /ws/")
        return
    dual.pages.add(websocket)
    try:
        await websocket.send_text(json.dumps(dual.state(vergence)))
        while True:
            message = await websocket.receive_text()
            if not allowed:
                log.info("pi-h264-to-browser /ptz/: a viewer's message refused (an operator's role is needed)")
                continue
            try:
                commands = dual.commands(vergence, json.loads(message))
            except (ValueError, KeyError, TypeError) as err:
                log.info("pi-h264-to-browser /ptz/: %s", err)
                continue
            for command in commands:
                reply = await vergence.commander.handle(command, source="pi-h264-to-browser /ptz/")
                if not reply["ok"]:
                    log.info("pi-h264-to-browser /ptz/: %s refused: %s", command["type"], reply["error"])
            for page in list(dual.pages):
                try:
                    await page.send_text(message)
                except (RuntimeError, WebSocketDisconnect):
                    dual.pages.discard(page)
    except WebSocketDisconnect:
        pass
    finally:
        dual.pages.discard(websocket)


def page_values(server: ServerContext, request: Request) -> dict[str, str]:
    """What its server put into the pages: the first camera's picture and crop range, and where the browser found us."""
    stream = server.streams[server.settings.cameras[0].id]
    width, height = stream.info.width, stream.info.height
    host = request.url.hostname or ""
    if not _HOST.fullmatch(host):  # the Host header is the client's word: only a host name or address goes in a page
        host = "localhost"
    port = request.url.port or (443 if request.url.scheme == "https" else 80)
    return {
        "ip": f"[{host}]" if ":" in host else host,
        "port": str(port),
        "fps": f"{stream.info.fps:g}",
        "width": str(width),
        "height": str(height),
        "xmax": str(max(0, stream.geometry.width - width)),
        "ymax": str(max(0, stream.geometry.height - height)),
    }


def fill_in(text: str, values: dict[str, str]) -> str:
    """Replace `$name` / `${name}` of PAGE_KEYS, leaving every other `$` as it is."""
    return _PAGE_KEY.sub(lambda match: values[match.group(1) or match.group(2)], text)


def page_file(folder: Path, path: str) -> Path:
    """The file `path` names inside `folder`; 404 for anything else (outside it, hidden, a folder, missing)."""
    root = folder.expanduser().resolve()
    if any(part.startswith(".") for part in Path(path).parts):
        raise HTTPException(404, "no such page file")
    target = (root / (path or "index.html")).resolve()
    if target.is_dir():
        target = target / "index.html"
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(404, "no such page file")
    return target


def serve_page_file(server: ServerContext, request: Request, path: str) -> Response:
    folder = server.settings.compat.pi_h264_to_browser_pages
    assert folder is not None  # the router is included only when it is set
    target = page_file(folder, path)
    media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    headers = {"Cache-Control": "no-cache"}
    if not target.name.endswith(TEMPLATED_SUFFIXES) or target.name.endswith(".min.js"):
        return FileResponse(target, media_type=media_type, headers=headers)  # as it is, read off the loop
    text = fill_in(target.read_text("utf-8", "replace"), page_values(server, request))  # a page: small
    return Response(text.encode(), media_type=media_type, headers=headers)


@pages_router.get("/compat/{path:path}", include_in_schema=False)
async def compat_page(path: str, request: Request, vergence: Server) -> Response:
    """A file of the project's pages, as its server sent it."""
    return serve_page_file(vergence, request, path)


@pages_router.get("/compat", include_in_schema=False)
async def compat_index() -> RedirectResponse:
    return RedirectResponse("/compat/")  # its pages load their files relative to the folder


@pages_router.get("/jmuxer.min.js", include_in_schema=False)
async def jmuxer(request: Request, vergence: Server) -> Response:
    """Where the single-camera page loads jMuxer from (`<script src="/jmuxer.min.js">`)."""
    return serve_page_file(vergence, request, "jmuxer.min.js")
