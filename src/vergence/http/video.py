"""HTTP and WebSocket routes of the video outputs."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, WebSocket
from fastapi.responses import Response, StreamingResponse

from vergence.context import Server
from vergence.outputs.mjpeg import MEDIA_TYPE, mjpeg_parts
from vergence.outputs.ws import refuse_unknown_stream, serve_channel

router = APIRouter()
_NO_CACHE = {"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"}


@router.websocket("/ws/video/{stream_id}")
async def video_ws(websocket: WebSocket, stream_id: str, vergence: Server, raw: bool = False) -> None:
    """H.264 access units: JSON init, then header + Annex-B per message (or bare Annex-B with ?raw=1)."""
    stream = vergence.streams.get(stream_id)
    if stream is None:
        await refuse_unknown_stream(websocket, stream_id)
        return
    await serve_channel(websocket, stream, stream.h264, vergence.settings.hub, raw)


@router.websocket("/ws/fmp4/{stream_id}")
async def fmp4_ws(websocket: WebSocket, stream_id: str, vergence: Server) -> None:
    """Fragmented MP4 for MSE: JSON init, then the init segment and one fragment per frame, each with a header."""
    stream = vergence.streams.get(stream_id)
    if stream is None:
        await refuse_unknown_stream(websocket, stream_id)
        return
    await serve_channel(websocket, stream, stream.fmp4, vergence.settings.hub, raw=False)


@router.get(
    "/stream/{stream_id}.mjpeg",
    tags=["video"],
    response_class=StreamingResponse,
    responses={
        200: {"content": {"multipart/x-mixed-replace": {}}, "description": "JPEG parts until the client hangs up"}
    },
)
async def mjpeg(request: Request, stream_id: str, server: Server) -> StreamingResponse:
    """MJPEG: multipart/x-mixed-replace of the newest JPEGs, with X-Seq and X-Capture-Ns part headers."""
    stream = server.streams.find(stream_id)
    client = request.client
    name = f"mjpeg {client.host}:{client.port}" if client else "mjpeg"
    return StreamingResponse(mjpeg_parts(stream, name), media_type=MEDIA_TYPE, headers=_NO_CACHE)


@router.get(
    "/snapshot/{stream_id}.jpg",
    tags=["video"],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "the newest frame"}},
)
async def snapshot(stream_id: str, server: Server) -> Response:
    """The newest frame as one JPEG."""
    stream = server.streams.find(stream_id)
    packet = await stream.snapshot()
    if packet is None:
        raise HTTPException(503, f"stream {stream_id} has no frame yet")
    headers = {**_NO_CACHE, "X-Seq": str(packet.seq), "X-Capture-Ns": str(packet.capture_ns)}
    return Response(packet.data, media_type="image/jpeg", headers=headers)
