"""Read JPEG frames from vergence's TCP feed with a plain blocking socket, and the feed's wire format.

```python
from vergence.client.tcp import TcpFrames, decode

with TcpFrames("127.0.0.1", 8100, stream="cam0", width=320, quality=50, fps=5) as frames:
    print(frames.accepted)                    # {"ok": True, "stream": "cam0", "width": 320, "height": 180, …}
    for header, jpeg in frames:
        image = decode(jpeg)                  # numpy BGR (height, width, 3)
        print(header["seq"], header["capture_ns"], image.shape)
```

Wire format (docs/protocol.md, "TCP JPEG feed"): the client sends one JSON line, the server answers one JSON line, then
sends frames, each a 28-byte big-endian header followed by one JPEG. Nothing here needs asyncio or the server's code.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1
MAGIC = b"VRGJ"
#: magic, version, flags, header length, seq, capture_ns, width, height, payload length.
HEADER = struct.Struct(">4sBBHIQHHI")
#: Longest handshake line the server reads, newline excluded.
MAX_HANDSHAKE_BYTES = 1024
MAX_REPLY_BYTES = 4096
DEFAULT_PORT = 8100


class TcpFeedError(Exception):
    """The server refused the request (the reason is the server's) or broke the protocol."""


def pack_header(seq: int, capture_ns: int, width: int, height: int, length: int, flags: int = 0) -> bytes:
    """Return the header of one frame."""
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, flags, HEADER.size, seq & 0xFFFFFFFF, capture_ns, width, height, length)


def parse_header(data: bytes) -> dict[str, Any]:
    """Parse a frame header; TcpFeedError when it is not one this client understands."""
    if len(data) < HEADER.size:
        raise TcpFeedError(f"a frame header is {HEADER.size} bytes, got {len(data)}")
    magic, version, flags, header_len, seq, capture_ns, width, height, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise TcpFeedError(f"not a vergence frame: magic {magic!r}")
    if version != PROTOCOL_VERSION or header_len < HEADER.size:
        raise TcpFeedError(f"unsupported frame header: version {version}, length {header_len}")
    return {
        "version": version,
        "flags": flags,
        "header_len": header_len,
        "seq": seq,
        "capture_ns": capture_ns,
        "width": width,
        "height": height,
        "length": length,
    }


def request_line(**fields: Any) -> bytes:
    """Return the handshake line for a request; fields left None take the server's defaults."""
    request = {"version": PROTOCOL_VERSION, **{key: value for key, value in fields.items() if value is not None}}
    return json.dumps(request, separators=(",", ":")).encode() + b"\n"


def decode(jpeg: bytes) -> np.ndarray:
    """Decode one JPEG to a numpy BGR image (height, width, 3)."""
    import cv2

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable JPEG")
    return image


class TcpFrames:
    """A connection to the TCP feed: `with TcpFrames(...) as frames: for header, jpeg in frames: …`.

    Requests are checked by the server: an unknown stream, a size over the stream's, a rate over its frame rate or a
    quality outside 1…100 raises TcpFeedError with the server's reason. Reads wait at most `timeout_s` (TimeoutError);
    after a timeout, close the connection and open a new one.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        stream: str | None = None,
        quality: int | None = None,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        timeout_s: float | None = 10.0,
        token: str | None = None,
    ) -> None:
        self.address = (host, port)
        self.request = {"stream": stream, "quality": quality, "width": width, "height": height, "fps": fps}
        if token is not None:
            self.request["token"] = token
        self.timeout_s = timeout_s
        self.accepted: dict[str, Any] = {}
        self._socket: socket.socket | None = None
        self._file: Any = None

    def open(self) -> dict[str, Any]:
        """Connect and hand over the request; return the server's acceptance (stream, width, height, quality, fps)."""
        self._socket = socket.create_connection(self.address, timeout=self.timeout_s)
        self._file = self._socket.makefile("rb")
        try:
            self._socket.sendall(request_line(**self.request))
            line = self._file.readline(MAX_REPLY_BYTES)
            if not line.endswith(b"\n"):
                raise TcpFeedError(f"no answer to the request (got {line[:80]!r})")
            reply = json.loads(line)
            if not reply.get("ok"):
                raise TcpFeedError(str(reply.get("error", "refused")))
        except BaseException:
            self.close()
            raise
        self.accepted = reply
        return reply

    def read(self) -> tuple[dict[str, Any], bytes]:
        """Return the next frame as (header, JPEG bytes); EOFError once the server has closed the connection."""
        if self._file is None:
            raise TcpFeedError("not connected: call open() or use `with`")
        head = self._file.read(HEADER.size)
        if not head:
            raise EOFError("the server closed the connection")
        if len(head) < HEADER.size:
            raise ConnectionError("the connection ended inside a frame header")
        header = parse_header(head)
        extra = header["header_len"] - HEADER.size  # a later version's longer header: skip what this one does not know
        if extra and len(self._file.read(extra)) < extra:
            raise ConnectionError("the connection ended inside a frame header")
        jpeg = self._file.read(header["length"])
        if len(jpeg) < header["length"]:
            raise ConnectionError("the connection ended inside a frame")
        return header, jpeg

    def close(self) -> None:
        file, self._file = self._file, None
        sock, self._socket = self._socket, None
        if file is not None:
            file.close()
        if sock is not None:
            sock.close()

    def __enter__(self) -> TcpFrames:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple[dict[str, Any], bytes]]:
        while True:
            try:
                yield self.read()
            except EOFError:
                return
