"""Request bodies: refused by their declared size before a byte is read, counted as they arrive, and timed.

Every route reads its body through this middleware's `receive`, so none can be made to hold more than `max_body_bytes`
in memory (a 1 GiB WebRTC offer used to be read whole, 2.25 GB of RSS, before its 413) or wait forever for a body that
trickles in. The limit holds for bodies sent without a Content-Length (chunked) too: they are counted as they come.
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import HTTPException  # FastAPI passes its own through when reading a body fails; others become 400
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLOSE = {"Connection": "close"}  # the rest of a refused body is not read: the connection ends with the answer


class BodyLimitMiddleware:
    """413 for a body over `max_body_bytes` (by its Content-Length at once, else when the count passes it), 408 for a
    body not complete within `timeout_s` of the request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _refuse(send, 400, f"Content-Length {declared[:32]!r} is not a byte count")
                return
            if int(declared) > self.max_body_bytes:
                await _refuse(send, 413, self._too_large())
                return
        await self.app(scope, self._counted(receive), send)

    def _counted(self, receive: Receive) -> Receive:
        deadline = time.monotonic() + self.timeout_s
        received = 0
        complete = False

        async def counted() -> Message:
            nonlocal received, complete
            if complete:  # past the body: what is left is waiting for the client to go (streamed responses)
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise HTTPException(
                    408, f"the request body did not arrive within {self.timeout_s:g} s", CLOSE
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(413, self._too_large(), CLOSE)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        return counted

    def _too_large(self) -> str:
        return f"a request body is at most {self.max_body_bytes // 1024} KiB ([server] max_body_kb)"


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"connection", b"close"), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
