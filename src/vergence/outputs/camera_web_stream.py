"""camera-web-stream's TCP feed (`[compat.camera_web_stream] tcp_port`), as its clients speak it.

The client sends 14 bytes, `struct.pack("qhhh", quality, width, height, fps)` in the machine's order (little-endian on
every machine it ran on: x86, the Pi's ARM); the server answers nothing and sends frames, each a 28-byte header
`struct "qhhh14s"` (the JPEG's length, width, height, fps, and the capture time as `"%14.3f"` ASCII seconds) and the
JPEG. There is no refusal message: a request vergence refuses is closed.

It is vergence's TCP feed with this wire: clients asking the same size, quality and rate share one encoder and the
framed bytes; a client that stops reading skips frames and costs the others nothing.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vergence.config import TcpFeedSettings
from vergence.media.frame import EncodedPacket
from vergence.outputs.tcp import Asked, FeedRequest, HandshakeError, StreamShape, TcpFeed

if TYPE_CHECKING:
    from vergence.context import Parts

REQUEST = struct.Struct("<qhhh")  # quality, width, height, fps
HEADER = struct.Struct("<qhhh14s")  # JPEG length, width, height, fps, capture time "%14.3f"
MIN_SIZE_PX = 16


class CameraWebStreamWire:
    """Its handshake and frame header, onto the feed's requests; every client gets `stream`."""

    def __init__(self, stream: str | None) -> None:
        self._stream = stream

    async def ask(self, reader: asyncio.StreamReader, streams: Mapping[str, StreamShape], timeout_s: float) -> Asked:
        try:
            data = await asyncio.wait_for(reader.readexactly(REQUEST.size), timeout_s)
        except TimeoutError:
            raise HandshakeError(f"no request within {timeout_s:g} s") from None
        except asyncio.IncompleteReadError:
            raise HandshakeError(f"a request is {REQUEST.size} bytes") from None
        quality, width, height, fps = REQUEST.unpack(data)
        stream_id = self._stream or next(iter(streams))
        shape = streams[stream_id]
        if not 1 < quality <= 100:  # as the project's server checked
            raise HandshakeError(f"quality = {quality} must be within 2 … 100")
        if width < MIN_SIZE_PX or height < MIN_SIZE_PX or fps < 1:
            raise HandshakeError(f"{width}x{height} at {fps} fps is no picture")
        # The stream's size at the most (a camera of its own would have been set to the size asked; here every
        # client shares the stream), even for I420, and its rate at the most.
        scale = min(1.0, shape.width / width, shape.height / height)
        served_width = max(MIN_SIZE_PX, int(width * scale) & ~1)
        served_height = max(MIN_SIZE_PX, int(height * scale) & ~1)
        served_fps = float(min(fps, shape.fps)) if shape.fps > 0 else float(fps)
        return Asked(FeedRequest(stream_id, served_width, served_height, quality, served_fps))

    def accepted(self, request: FeedRequest) -> bytes:
        return b""

    def refusal(self, reason: str) -> bytes:
        return b""

    def variant(self, request: FeedRequest) -> tuple[Any, ...]:
        return (request.width, request.height, request.quality, request.fps)  # the rate is in every header

    def frame(self, packet: EncodedPacket, width: int, height: int, fps: float) -> bytes:
        sent = f"{packet.capture_ns / 1e9:14.3f}".encode()[:14]
        return HEADER.pack(len(packet.data), width, height, round(fps), sent) + packet.data


def create_service(parts: Parts) -> TcpFeed:
    """The `[compat.camera_web_stream]` TCP feed."""
    compat = parts.settings.compat.camera_web_stream
    assert compat.tcp_port is not None
    settings = TcpFeedSettings(enabled=True, host=compat.host, port=compat.tcp_port, max_clients=compat.max_clients)
    wire = CameraWebStreamWire(compat.stream)
    return TcpFeed(settings, parts.streams, parts.settings, parts.auth, wire, "camera-web-stream tcp")
