"""The bare reference of `vergence bench fanout`: a plain uvicorn WebSocket fan-out with no vergence code.

`python -m bench.fanout_reference --port P --size-bytes N --fps F`: a raw ASGI app (no Starlette, no middleware)
served by uvicorn with the same WebSocket implementation, event loop and listening socket as `vergence serve`. A ticker
makes one message of N bytes per frame interval (vergence's 24-byte frame header with seq and times, then filler) and
each connection's task sends the newest message with `await send(...)`, as the simplest fan-out would. `GET /stats`
answers with counters (the bench's readiness probe).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from vergence.media.frame import FLAG_KEYFRAME, HEADER, HEADER_VERSION

Scope = dict[str, Any]


class Ticker:
    """Makes one message per frame interval and wakes every connection waiting for it."""

    def __init__(self, size_bytes: int, fps: float) -> None:
        self.filler = os.urandom(max(0, size_bytes - HEADER.size))
        self.interval_s = 1.0 / fps
        self.seq = -1
        self.message = b""
        self.clients = 0
        self.sent = 0
        self._next: asyncio.Future[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while True:
            n += 1
            await asyncio.sleep(max(0.0, start + n * self.interval_s - loop.time()))
            now_ns = time.time_ns()
            self.seq += 1
            header = HEADER.pack(HEADER_VERSION, FLAG_KEYFRAME, HEADER.size, self.seq & 0xFFFFFFFF, now_ns, now_ns)
            self.message = header + self.filler
            if self._next is not None:
                self._next.set_result(None)
                self._next = None

    async def next_message(self, seen: int) -> tuple[int, bytes]:
        """The newest message after `seen`, waiting for the ticker when there is none yet."""
        if self.seq == seen:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            await self._next
        return self.seq, self.message


def make_app(ticker: Ticker) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            task: asyncio.Task[None] | None = None
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    task = asyncio.create_task(ticker.run())
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if task is not None:
                        task.cancel()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http":
            body = json.dumps({"clients": ticker.clients, "sent": ticker.sent, "seq": ticker.seq}).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        ticker.clients += 1
        seen = ticker.seq
        try:
            while True:
                seen, message = await ticker.next_message(seen)
                await send({"type": "websocket.send", "bytes": message})
                ticker.sent += 1
        except Exception:  # the client went away (uvicorn raises ClientDisconnected or OSError)
            pass
        finally:
            ticker.clients -= 1

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size-bytes", type=int, required=True)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--send-buffer-bytes", type=int, default=131_072)
    args = parser.parse_args()

    import uvicorn

    from vergence.cli import GIL_SWITCH_INTERVAL_S, listen_socket

    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # as `vergence serve` does
    config = uvicorn.Config(
        make_app(Ticker(args.size_bytes, args.fps)),
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # a fan-out of video would not compress what does not compress
        log_level="warning",
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[listen_socket("127.0.0.1", args.port, args.send_buffer_bytes)])


if __name__ == "__main__":
    main()
