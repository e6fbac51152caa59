"""Viewer processes of `vergence bench fanout`: many lightweight WebSocket viewers on one asyncio loop.

Run as `python -m bench.fanout_client` (from the checkout's root); the bench drives it with one JSON command per line on stdin and reads one
JSON reply per line on stdout:

- `{"cmd": "connect", "url": "ws://127.0.0.1:8000/ws/video/cam0", "count": 125, "deflate": true}`: open `count` reading
  viewers; the reply comes once each has received its first binary message (or failed). With `deflate` each offers
  permessage-deflate as Chromium does, and inflates what the server compresses.
- `{"cmd": "stall", "url": …, "count": 1}`: open viewers with a tiny receive buffer that read the handshake and then never
  read again.
- `{"cmd": "mark"}`: start a measuring window (counters of every viewer restart).
- `{"cmd": "report"}`: what each reading viewer received since the mark.
- `{"cmd": "close"}`: hang up every viewer. `{"cmd": "quit"}`, or the end of stdin, ends the process.

With `--poll-ms N` the process reads its sockets every N ms instead of as data arrives. On loopback the kernel charges
the server's send for waking a viewer that waits in epoll (and for being preempted by it); remote viewers never cost it
that, so polling viewers show how much of the server's CPU is this artefact of sharing the machine.

A viewer is a bare `asyncio.Protocol` with a minimal WebSocket reader (RFC 6455 server frames are unmasked; pings are
answered, compressed messages inflated, everything else counted or skipped): the `websockets` client costs several times more CPU per message, and
these processes share the machine's cores with the server being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import struct
import sys
import time
import zlib
from typing import Any, cast
from urllib.parse import urlsplit

from vergence.media.frame import HEADER

CONNECTS_AT_ONCE = 32  # handshakes in flight per process: 500 at once overflow nothing, but the server's loop stalls
FIRST_FRAME_TIMEOUT_S = 30.0
STALLED_RCVBUF_BYTES = 4096  # the kernel rounds it up (doubles it); small, so the server's send buffer fills at once
LAG_BIN_MS = 0.25  # histogram resolution of hub → viewer lag
LAG_BINS = 4000  # up to 1 s; later arrivals land in the last bin

_FIELDS = struct.Struct(">IQQ")  # seq, capture_ns, send_ns at offset 4 of the frame header
_SEQ_MODULO = 1 << 32
# What Chromium offers in every WebSocket handshake; a server that accepts compresses each message for each viewer.
BROWSER_EXTENSIONS = "permessage-deflate; client_max_window_bits"
_DEFLATE_TAIL = b"\x00\x00\xff\xff"  # RFC 7692: removed by the sender, restored by the receiver


class Viewer(asyncio.Protocol):
    """One WebSocket viewer: counts binary messages, seq gaps and bytes, and bins hub → viewer lag."""

    def __init__(
        self, host: str, path: str, stall: bool, lags: list[int], capture_lags: list[int], offer_deflate: bool
    ) -> None:
        extensions = f"Sec-WebSocket-Extensions: {BROWSER_EXTENSIONS}\r\n" if offer_deflate else ""
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dmVyZ2VuY2UtZmFub3V0IQ==\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
        ).encode()
        self.inflater: Any = None  # a zlib decompressor once the server has accepted permessage-deflate
        self.stall = stall
        self.lags = lags
        self.capture_lags = capture_lags
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.open = False
        self.first_frame: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost = 0  # frames missing between consecutive seqs
        self.frames = 0
        self.bytes = 0
        self.last_seq = -1
        self.closed = False
        self.port = 0

    def mark(self) -> None:
        self.frames = self.bytes = self.lost = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.port = transport.get_extra_info("sockname")[1]  # the server names its subscription after it
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.first_frame.done():
            self.first_frame.set_exception(ConnectionError(f"connection lost before the first frame: {exc}"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            if status.split()[1:2] != [b"101"]:
                self.first_frame.set_exception(ConnectionError(f"handshake refused: {status.decode(errors='replace')}"))
                assert self.transport is not None
                self.transport.close()
                return
            if b"permessage-deflate" in buffer[:end].lower():
                self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # the server keeps its context: so do we
            del buffer[: end + 4]
            self.open = True
            if self.stall:
                assert self.transport is not None
                self.transport.pause_reading()  # from now on the kernel's receive buffer fills, then the server's
                self.first_frame.set_result(None)
                return
        self._parse(buffer)

    def _parse(self, buffer: bytearray) -> None:
        now = 0
        pos = 0
        size = len(buffer)
        while size - pos >= 2:
            opcode = buffer[pos] & 0x0F
            length = buffer[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            message: bytes | bytearray = buffer
            if buffer[pos] & 0x40 and self.inflater is not None:  # RSV1: a compressed message
                message = self.inflater.decompress(bytes(buffer[start:end]) + _DEFLATE_TAIL)
                start, length = 0, len(message)
            if opcode == 2 and length >= HEADER.size:
                seq, capture_ns, send_ns = _FIELDS.unpack_from(message, start + 4)
                if not now:
                    now = time.time_ns()
                if self.last_seq >= 0:
                    gap = (seq - self.last_seq - 1) % _SEQ_MODULO
                    if gap < _SEQ_MODULO // 2:
                        self.lost += gap
                self.last_seq = seq
                self.frames += 1
                self.bytes += length
                self.lags[min(int((now - send_ns) / 1e6 / LAG_BIN_MS), LAG_BINS - 1)] += 1
                self.capture_lags[min(int((now - capture_ns) / 1e6 / LAG_BIN_MS), LAG_BINS - 1)] += 1
                if not self.first_frame.done():
                    self.first_frame.set_result(None)
            elif opcode == 9:  # ping: answer with a pong, masked as client frames are (a zero mask changes nothing)
                payload = bytes(buffer[start:end])
                assert self.transport is not None
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
            elif opcode == 8:
                assert self.transport is not None
                self.transport.close()
            pos = end
        if pos:
            del buffer[:pos]


class ViewerProcess:
    """The viewers of this process and the commands that drive them."""

    def __init__(self, poll_s: float = 0.0) -> None:
        self.poll_s = poll_s
        self.viewers: list[Viewer] = []
        self.stalled: list[Viewer] = []
        self.lags = [0] * LAG_BINS
        self.capture_lags = [0] * LAG_BINS
        self.marked = time.monotonic()
        self.cpu_marked = time.process_time()

    async def connect(self, url: str, count: int, stall: bool, offer_deflate: bool) -> dict[str, Any]:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        limit = asyncio.Semaphore(CONNECTS_AT_ONCE)
        loop = asyncio.get_running_loop()

        async def one() -> Viewer:
            async with limit:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                if stall:  # before connect, so the window the kernel offers is small from the start
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF_BYTES)
                await loop.sock_connect(sock, (host, port))
                _, viewer = await loop.create_connection(
                    lambda: Viewer(f"{host}:{port}", path, stall, self.lags, self.capture_lags, offer_deflate),
                    sock=sock,
                )
                await asyncio.wait_for(viewer.first_frame, FIRST_FRAME_TIMEOUT_S)
                return viewer

        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        opened = [viewer for viewer in results if isinstance(viewer, Viewer)]
        errors = [repr(error) for error in results if not isinstance(error, Viewer)]
        (self.stalled if stall else self.viewers).extend(opened)
        compressed = sum(viewer.inflater is not None for viewer in opened)
        return {"connected": len(opened), "failed": len(errors), "errors": errors[:3], "compressed": compressed}

    def mark(self) -> dict[str, Any]:
        for viewer in self.viewers:
            viewer.mark()
        self.lags[:] = [0] * LAG_BINS
        self.capture_lags[:] = [0] * LAG_BINS
        self.marked, self.cpu_marked = time.monotonic(), time.process_time()
        return {"ok": True}

    def report(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.marked
        return {
            "seconds": elapsed,
            "cpu_s": time.process_time() - self.cpu_marked,
            "frames": [viewer.frames for viewer in self.viewers],
            "lost": [viewer.lost for viewer in self.viewers],
            "bytes": [viewer.bytes for viewer in self.viewers],
            "closed": sum(viewer.closed for viewer in self.viewers),
            "stalled_closed": sum(viewer.closed for viewer in self.stalled),
            "stalled_ports": [viewer.port for viewer in self.stalled],
            "lag_bins": {str(i): n for i, n in enumerate(self.lags) if n},
            "capture_lag_bins": {str(i): n for i, n in enumerate(self.capture_lags) if n},
        }

    def close(self) -> dict[str, Any]:
        for viewer in self.viewers + self.stalled:
            if viewer.transport is not None:
                viewer.transport.abort()
        self.viewers, self.stalled = [], []
        return {"ok": True}

    def _nap(self) -> None:
        """Block the loop for `poll_s`, then let it read whatever arrived meanwhile, and again: the process is asleep,
        not waiting in epoll, while the server writes, so the server's writes wake nobody (as with remote viewers)."""
        time.sleep(self.poll_s)
        asyncio.get_running_loop().call_soon(self._nap)

    async def serve(self) -> None:
        """Answer commands from stdin until it ends or says quit."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        if self.poll_s:
            loop.call_soon(self._nap)
        while line := await reader.readline():
            command = json.loads(line)
            name = command["cmd"]
            if name == "quit":
                break
            if name in ("connect", "stall"):
                reply = await self.connect(
                    command["url"], int(command["count"]), name == "stall", bool(command.get("deflate", True))
                )
            elif name == "mark":
                reply = self.mark()
            elif name == "report":
                reply = self.report()
            elif name == "close":
                reply = self.close()
            else:
                reply = {"error": f"unknown command {name!r}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
        self.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="viewer processes of `vergence bench fanout`")
    parser.add_argument("--poll-ms", type=float, default=0.0, help="read every N ms instead of as data arrives")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # the plain loop works too, at some more CPU per message
        runner = asyncio.run
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    runner(ViewerProcess(args.poll_ms / 1000).serve())


if __name__ == "__main__":
    main()
