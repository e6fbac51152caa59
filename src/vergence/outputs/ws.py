"""Video over WebSocket: H.264 access units with a frame header (or bare, ?raw=1), and fMP4 fragments for MSE."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from vergence.hub import Channel, Subscription, SubscriptionClosed
from vergence.media import h264
from vergence.media.frame import HEADER, HEADER_VERSION, EncodedPacket
from vergence.stream import Stream

log = logging.getLogger(__name__)

CLOSE_UNKNOWN_STREAM = 4404


async def refuse_unknown_stream(websocket: WebSocket, stream_id: str) -> None:
    """Accept, then close with 4404, so a browser sees why (a refused handshake only says 403)."""
    await websocket.accept()
    await websocket.close(code=CLOSE_UNKNOWN_STREAM, reason=f"unknown stream {stream_id}")


def init_message(stream: Stream, codec: str | None, mse: bool = False) -> dict[str, Any]:
    """The JSON `init` message that opens a video or MSE WebSocket (docs/protocol.md)."""
    message: dict[str, Any] = {
        "type": "init",
        "version": HEADER_VERSION,
        "stream": stream.id,
        "codec": codec,
        "width": stream.info.width,
        "height": stream.info.height,
        "fps": stream.info.fps,
        "header_len": HEADER.size,
    }
    if mse:
        message["mime"] = f'video/mp4; codecs="{codec}"'
    return message


async def _close_on_disconnect(websocket: WebSocket, subscription: Subscription) -> None:
    """Read (and ignore) what the client sends, so a hang-up is noticed even while no packet flows."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    subscription.close()


async def serve_channel(websocket: WebSocket, stream: Stream, channel: Channel, max_packets: int, raw: bool) -> None:
    """Send one channel to one WebSocket client until either side goes away."""
    await websocket.accept()
    client = websocket.client
    subscription = channel.subscribe("gop", max_packets, name=f"ws {client.host}:{client.port}" if client else "ws")
    watcher = asyncio.create_task(_close_on_disconnect(websocket, subscription))
    codec: str | None = None
    mse = channel.format == "fmp4"
    try:
        while True:
            item = await subscription.get()
            if isinstance(item, dict):
                if not raw:
                    await websocket.send_json(item)
                continue
            if not raw:
                codec = await _send_init_if_new(websocket, stream, item, codec, mse)
            await websocket.send_bytes(item.data if raw else item.framed())
            channel.stats.send_to_wire_ms.add((time.time_ns() - item.send_ns) / 1e6)
    except (SubscriptionClosed, WebSocketDisconnect):
        pass
    except RuntimeError as err:  # sending on a socket that closed under us
        log.debug("ws client %s gone: %s", client, err)
    finally:
        subscription.close()
        watcher.cancel()
        if websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close()


async def _send_init_if_new(
    websocket: WebSocket, stream: Stream, packet: EncodedPacket, codec: str | None, mse: bool
) -> str | None:
    """Send `init` before the first packet and again whenever the SPS (size, profile) changes."""
    if mse:
        if not packet.init:
            return codec
        new_codec = stream.h264.codec
    else:
        if not packet.config:
            return codec
        new_codec = h264.codec_string(packet.data)
    if new_codec != codec or codec is None:
        await websocket.send_json(init_message(stream, new_codec, mse))
    return new_codec
