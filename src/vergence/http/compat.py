"""pi-h264-to-browser's video and PTZ WebSockets (`[compat] pi_h264_to_browser = true`), as its pages use them.

Its pages open `ws://HOST:PORT/ws/` (the single-camera server) or `/cam0/`, `/cam1/` (the dual one) and hand every
binary message, one Annex-B access unit, to jMuxer: vergence sends the stream's own H.264 access units, bare (as
`/ws/video/{stream}?raw=1` does). The single-camera page also sends text on its video socket: `X:<int>` and `Y:<int>`,
the crop's top-left corner in sensor pixels, and `Z:<float>`, the crop's size as a multiple of the picture's
(ScalerCrop = (X, Y, W·Z, H·Z)); each becomes a `ptz` command of the view nearest that crop, for operators only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, WebSocket

from vergence import ptz
from vergence.auth import may_command, principal_of
from vergence.context import Server, ServerContext
from vergence.outputs.ws import refuse_unknown_stream, serve_channel
from vergence.stream import Stream

log = logging.getLogger(__name__)

router = APIRouter()


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
    await serve_channel(websocket, stream, stream.h264, vergence.settings.hub.h264_buffer_packets, True, texts)


@router.websocket("/cam{index}/")
async def dual_camera(websocket: WebSocket, index: str, vergence: Server) -> None:
    """The dual-camera page: camera `index` (0, 1, … in the configured order)."""
    cameras = vergence.settings.cameras
    if not index.isdigit() or int(index) >= len(cameras):
        await refuse_unknown_stream(websocket, f"cam{index}")
        return
    stream = vergence.streams[cameras[int(index)].id]
    await serve_channel(websocket, stream, stream.h264, vergence.settings.hub.h264_buffer_packets, True)
