"""The WebSocket protocol `vergence serve` runs by default: uvicorn's websockets-sansio one, plus a direct send.

Sending a video packet through ASGI costs each viewer a message dict, five coroutine layers (Starlette's WebSocket and
exception wrappers, uvicorn's `send`), a websockets frame object and a copy of the payload: at 500 viewers of 30 fps that
was most of the server's CPU (docs/benchmarks.md, fan-out). A video packet is the same message for every viewer, so
`outputs/ws.py` builds it once, WebSocket frame header included, and writes those bytes straight to each connection's
transport through this protocol's `DirectSend`, offered to the app as the ASGI scope extension `DIRECT_SEND`.
Everything else (handshake, text messages, pings, close) stays uvicorn's. Under any other `[server] ws` implementation,
or a test client, the extension is absent and the app sends through ASGI as before.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

DIRECT_SEND = "vergence.direct_send"


def websocket_message(payload: bytes) -> bytes:
    """One unmasked binary WebSocket frame holding `payload` (RFC 6455 §5.2), as a server sends it."""
    size = len(payload)
    if size < 126:
        header = bytes((0x82, size))
    elif size < 1 << 16:
        header = bytes((0x82, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x82, 127)) + size.to_bytes(8, "big")
    return header + payload


class DirectSend:
    """Writes whole prepared WebSocket messages to one connection, bypassing ASGI; on the event loop only."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: DirectWebSocketProtocol) -> None:
        self._protocol = protocol

    def try_write(self, message: bytes) -> bool:
        """Write one whole message (`websocket_message`) and return True if it goes out now: the connection is open
        and its transport below the high-water mark. Otherwise write nothing and return False. Never blocks."""
        protocol = self._protocol
        transport = protocol.transport
        if protocol.paused or protocol.close_sent or transport.is_closing():
            return False
        transport.write(message)
        return True

    def abort(self) -> None:
        """Drop the connection at once, unsent data and all."""
        self._protocol.transport.abort()

    async def writable(self) -> None:
        """Wait until the transport takes writes again (or the connection is lost)."""
        await self._protocol.writable.wait()


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol that offers the app a `DirectSend` in `scope["extensions"]`."""

    paused = False  # the transport is above its high-water mark (uvicorn's `writable` event, as a plain flag)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        self.paused = False

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # set only for an accepted upgrade; the app's task has not run yet
        if scope is not None:
            scope["extensions"][DIRECT_SEND] = DirectSend(self)
