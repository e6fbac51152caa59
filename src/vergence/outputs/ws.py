"""Video over WebSocket: H.264 access units with a frame header (or bare, ?raw=1), and fMP4 fragments for MSE."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from vergence.hub import Channel, Item, Subscription, SubscriptionClosed
from vergence.media import h264
from vergence.media.frame import HEADER, HEADER_VERSION, EncodedPacket
from vergence.outputs.ws_direct import DIRECT_SEND, DirectSend, websocket_message
from vergence.stream import Stream

if TYPE_CHECKING:
    from vergence.config import HubSettings

log = logging.getLogger(__name__)

CLOSE_UNKNOWN_STREAM = 4404
CLOSE_TIMEOUT_S = 2.0  # a close that cannot be written (a stalled client) is given up


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


async def _close_on_disconnect(
    websocket: WebSocket, subscription: Subscription, on_text: Callable[[str], Awaitable[None]] | None
) -> None:
    """Read what the client sends (text to `on_text`, else ignored), so a hang-up is noticed even while no packet
    flows."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if on_text is not None and message.get("text") is not None:
                await on_text(message["text"])
    subscription.close()


async def serve_channel(
    websocket: WebSocket,
    stream: Stream,
    channel: Channel,
    hub: HubSettings,
    raw: bool,
    on_text: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """Send one channel to one WebSocket client until either side goes away; what it sends as text goes to
    `on_text` (pi-h264-to-browser's pages send PTZ on their video socket).

    A client whose connection takes nothing for `hub.viewer_stall_s` is cut: one that stopped reading (a frozen tab, a
    link TCP has not yet given up on) would otherwise hold its connection, a task and the encoder for good."""
    await websocket.accept()
    client = websocket.client
    subscription = channel.subscribe(
        "gop", hub.h264_buffer_packets, name=f"ws {client.host}:{client.port}" if client else "ws", kind="ws"
    )
    viewer = _Viewer(websocket, stream, channel, raw)
    if viewer.direct is not None:
        subscription.sink = viewer.take
    watcher = asyncio.create_task(_close_on_disconnect(websocket, subscription, on_text))
    try:
        while True:
            item = await subscription.get()
            viewer.busy = True  # until it is sent, later packets queue behind it
            try:
                async with asyncio.timeout(hub.viewer_stall_s):  # no task of its own, unlike wait_for
                    await viewer.send(item)
            except TimeoutError:
                log.info("%s took nothing for %g s: cut", subscription.name, hub.viewer_stall_s)
                viewer.abort()
                break
            viewer.busy = False
    except (SubscriptionClosed, WebSocketDisconnect):
        pass
    except RuntimeError as err:  # sending on a socket that closed under us
        log.debug("ws client %s gone: %s", client, err)
    finally:
        subscription.close()
        watcher.cancel()
        if websocket.application_state == WebSocketState.CONNECTED and not viewer.aborted:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, TimeoutError):
                await asyncio.wait_for(websocket.close(), CLOSE_TIMEOUT_S)


def _observe_send(channel: Channel, packet: EncodedPacket) -> None:
    """Note hub release → written. Viewers written as the hub publishes are timed once per packet, when the last of
    them has been written (a timing per viewer and frame cost more than the write); queued sends one by one."""
    channel.stats.send_to_wire_ms.add((time.time_ns() - packet.send_ns) / 1e6)


class _Viewer:
    """One client of a channel. What its subscription queued goes out through `send` on the client's task; while nothing
    is queued, `take` writes a live packet straight to the connection (`DirectSend`), with no task switch and no ASGI
    message: the hub calls it for every viewer as it publishes, and the message bytes are built once for all of them.
    """

    def __init__(self, websocket: WebSocket, stream: Stream, channel: Channel, raw: bool) -> None:
        self.websocket = websocket
        self.stream = stream
        self.channel = channel
        self.raw = raw
        self.mse = channel.format == "fmp4"
        self.codec: str | None = None
        self.busy = False
        self.direct: DirectSend | None = websocket.scope.get("extensions", {}).get(DIRECT_SEND)
        self._wire_key = "ws-raw" if raw else "ws"
        self.aborted = False

    def abort(self) -> None:
        """Drop the connection without a closing handshake (which a client that reads nothing would never get)."""
        self.aborted = True
        if self.direct is not None:
            self.direct.abort()

    def take(self, packet: EncodedPacket) -> bool:
        """The subscription's sink: write `packet` now and return True, or False to have it queued."""
        if self.busy or ((packet.config or packet.init) and self._needs_init(packet)):
            return False  # behind what the task holds, or an init message goes first: the task sends both
        assert self.direct is not None  # take is the sink only with a DirectSend
        message = packet.wire.get(self._wire_key)
        if message is None:  # the first viewer of this live packet: time the whole batch once it is written
            message = self._message(packet)
            asyncio.get_running_loop().call_soon(_observe_send, self.channel, packet)
        return self.direct.try_write(message)

    async def send(self, item: Item) -> None:
        """Send one queued item: a notice as JSON, a packet after the init message it may need."""
        if isinstance(item, dict):
            if not self.raw:
                await self.websocket.send_json(item)
            return
        if not self.raw:
            self.codec = await _send_init_if_new(self.websocket, self.stream, item, self.codec, self.mse)
        if self.direct is None:
            await self.websocket.send_bytes(item.data if self.raw else item.framed())
        else:
            await self.direct.writable()
            if not self.direct.try_write(self._message(item)):
                raise WebSocketDisconnect(1006)  # writable again only because the connection is gone
        _observe_send(self.channel, item)

    def _needs_init(self, packet: EncodedPacket) -> bool:
        """Whether `_send_init_if_new` would send an init message before this live packet."""
        if self.raw:
            return False
        if self.mse:
            return packet.init
        return packet.config and (self.codec is None or self.channel.codec != self.codec)

    def _message(self, packet: EncodedPacket) -> bytes:
        message = packet.wire.get(self._wire_key)
        if message is None:
            message = websocket_message(packet.data if self.raw else packet.framed())
            packet.wire[self._wire_key] = message
        return message


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
