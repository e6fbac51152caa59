"""A blocking client of vergence's video WebSocket for tests."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field

from websockets.sync.client import ClientConnection, connect

from vergence.media.frame import FrameHeader, parse_header


@dataclass
class Message:
    header: FrameHeader | None
    payload: bytes
    text: dict | None = None


@dataclass
class VideoClient:
    connection: ClientConnection
    init: dict | None = None
    notices: list[dict] = field(default_factory=list)

    @classmethod
    def open(cls, ws_url: str, path: str, rcvbuf: int | None = None) -> VideoClient:
        sock = None
        if rcvbuf is not None:  # a tiny receive window makes a non-reading client push back on the server at once
            host, port = ws_url.removeprefix("ws://").split(":")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.connect((host, int(port)))
        connection = connect(
            f"{ws_url}{path}", max_size=None, sock=sock, open_timeout=10, close_timeout=2, max_queue=None, legacy=True
        )
        return cls(connection)

    def next(self, timeout: float = 10.0, raw: bool = False) -> Message:
        """Return the next binary message (text messages are kept as init/notices)."""
        while True:
            data = self.connection.recv(timeout=timeout)
            if isinstance(data, str):
                message = json.loads(data)
                if message.get("type") == "init":
                    self.init = message
                else:
                    self.notices.append(message)
                continue
            if raw:
                return Message(None, data)
            header, payload = parse_header(data)
            return Message(header, payload)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> VideoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
