"""Read vergence's ZeroMQ frames and send it commands from another process (needs pyzmq).

```python
from vergence.client.zmq import ZmqFrames, zmq_command

with ZmqFrames("tcp://127.0.0.1:5555", streams=("cam0",)) as frames:
    for frame in frames:
        image = frame.image()  # numpy BGR, from a JPEG or raw pixels
        print(frame.metadata["seq"], image.shape)

zmq_command("tcp://127.0.0.1:5556", {"type": "zoom", "value": 2})  # {"ok": True, "type": "zoom", "result": {…}}
```
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np

DEFAULT_FRAMES = "tcp://127.0.0.1:5555"
DEFAULT_COMMANDS = "tcp://127.0.0.1:5556"
#: Most messages taken off the socket in one conflating pass: a bound, in case frames come faster than they are read.
MAX_DRAIN = 1000


def _zmq() -> Any:
    try:
        import zmq
    except ImportError as err:
        raise ImportError("vergence.client.zmq needs pyzmq: pip install pyzmq") from err
    return zmq


class ZmqFrame(NamedTuple):
    """One frame message: its metadata (docs/protocol.md, "ZeroMQ") and its payload (a JPEG or raw BGR bytes)."""

    metadata: dict[str, Any]
    payload: bytes

    def image(self) -> np.ndarray:
        """Return the picture as a numpy BGR array (height, width, 3)."""
        return decode_image(self.metadata, self.payload)


def decode_image(metadata: dict[str, Any], payload: bytes) -> np.ndarray:
    """Decode a frame's payload to BGR: cv2.imdecode for jpeg, a read-only view of the bytes for raw."""
    if metadata.get("format") == "raw":
        return np.frombuffer(payload, dtype=metadata.get("dtype", "uint8")).reshape(metadata["shape"])
    import cv2

    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"frame {metadata.get('seq')} of {metadata.get('stream')} is not a decodable JPEG")
    return image


def use_curve(socket: Any, server_key: str | None, client_keys: tuple[str, str] | None) -> None:
    """Make `socket` a CURVE client of the server whose public key is `server_key` (Z85), before it connects.

    `client_keys` is this client's (public, secret) pair, which a server with `curve_clients` must know; without it a
    new pair is made (enough for a server that lets any client in: the traffic is still encrypted).
    """
    if server_key is None:
        return
    public, secret = client_keys or tuple(key.decode() for key in _zmq().curve_keypair())
    socket.curve_serverkey = server_key.encode()
    socket.curve_publickey = public.encode()
    socket.curve_secretkey = secret.encode()


class ZmqFrames:
    """Subscribe to some streams of a vergence PUB socket and iterate over their frames.

    With `conflate=True` (the default) every read first takes all messages waiting and keeps the newest of each stream, so
    a reader slower than the camera always gets the latest picture rather than a backlog (ZMQ_CONFLATE cannot do this: it
    breaks multipart messages). `skipped` counts the frames passed over. With `conflate=False` every frame is returned
    in order. An empty `streams` subscribes to every stream.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_FRAMES,
        streams: Iterable[str] = ("cam0",),
        conflate: bool = True,
        timeout_s: float | None = None,
        context: Any = None,
        server_key: str | None = None,
        client_keys: tuple[str, str] | None = None,
    ) -> None:
        zmq = _zmq()
        self._zmq = zmq
        self.endpoint = endpoint
        self.streams = tuple(streams)
        self.conflate = conflate
        self.timeout_s = timeout_s
        self.skipped = 0
        self._topics = {stream.encode() for stream in self.streams}
        self._newest: dict[bytes, ZmqFrame] = {}  # per topic, in order of arrival
        self._socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        for topic in self._topics or {b""}:
            # A prefix filter: "cam1" also lets "cam10" through, so topics are checked exactly once received.
            self._socket.setsockopt(zmq.SUBSCRIBE, topic)
        use_curve(self._socket, server_key, client_keys)
        self._socket.connect(endpoint)

    def __iter__(self) -> Iterator[ZmqFrame]:
        return self

    def __next__(self) -> ZmqFrame:
        return self.recv()

    def recv(self, timeout_s: float | None = None) -> ZmqFrame:
        """Return the next frame (the newest, when conflating); raise TimeoutError after `timeout_s` (None: wait on)."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            frame = self._take()
            if frame is not None:
                return frame
            if deadline is None:
                self._socket.poll(None, self._zmq.POLLIN)
                continue
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise TimeoutError(f"no frame from {self.endpoint} within {timeout_s:g} s")
            self._socket.poll(max(1, round(remaining_s * 1000)), self._zmq.POLLIN)

    def _take(self) -> ZmqFrame | None:
        """A frame already received, without waiting."""
        for _ in range(MAX_DRAIN if self.conflate else 1):
            try:
                parts = self._socket.recv_multipart(self._zmq.NOBLOCK)
            except self._zmq.Again:
                break
            frame = self._parse(parts)
            if frame is None:
                continue
            if not self.conflate:
                return frame
            topic = parts[0]
            if self._newest.pop(topic, None) is not None:
                self.skipped += 1
            self._newest[topic] = frame
        if self._newest:
            return self._newest.pop(next(iter(self._newest)))
        return None

    def _parse(self, parts: list[bytes]) -> ZmqFrame | None:
        if len(parts) != 3 or (self._topics and parts[0] not in self._topics):
            return None
        try:
            metadata = json.loads(parts[1])
        except ValueError:
            return None
        return ZmqFrame(metadata, parts[2]) if isinstance(metadata, dict) else None

    def close(self) -> None:
        """Close the socket (at once: nothing is left to send)."""
        self._socket.close(linger=0)

    def __enter__(self) -> ZmqFrames:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class ZmqControl:
    """A REQ socket to vergence's REP endpoint that survives a lost reply.

    A REQ socket that sent a request must receive its reply before it may send again; when the reply does not come in
    time the socket is stuck, so it is closed at once (linger 0, the request is abandoned) and the next command connects
    a new one (ZeroMQ's "lazy pirate" pattern).
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_COMMANDS,
        timeout_s: float = 5.0,
        context: Any = None,
        server_key: str | None = None,
        client_keys: tuple[str, str] | None = None,
    ) -> None:
        self._zmq = _zmq()
        self._curve = (server_key, client_keys)
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._context = context or self._zmq.Context.instance()
        self._socket: Any = None

    def send(self, command: dict[str, Any] | str | bytes, timeout_s: float | None = None) -> dict[str, Any]:
        """Send a command (a dict, JSON text or a `<type> <value>` line) and return the reply dict.

        Raise TimeoutError when no reply comes within `timeout_s` (default: the one given at construction).
        """
        zmq = self._zmq
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if self._socket is None:
            self._socket = self._context.socket(zmq.REQ)
            self._socket.setsockopt(zmq.LINGER, 0)
            use_curve(self._socket, *self._curve)
            self._socket.connect(self.endpoint)
        if isinstance(command, dict):
            message = json.dumps(command).encode()
        else:
            message = command.encode() if isinstance(command, str) else command
        self._socket.send(message)
        if self._socket.poll(max(1, round(timeout_s * 1000)), zmq.POLLIN):
            return json.loads(self._socket.recv())
        self.close()
        raise TimeoutError(f"no reply from {self.endpoint} within {timeout_s:g} s")

    def close(self) -> None:
        """Close the socket, abandoning a request still waiting for its reply."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def __enter__(self) -> ZmqControl:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def zmq_command(
    endpoint: str = DEFAULT_COMMANDS, command: dict[str, Any] | str | bytes = "status", timeout_s: float = 5.0
) -> dict[str, Any]:
    """Send one command to vergence's REP socket and return its reply; raise TimeoutError when none comes in time."""
    with ZmqControl(endpoint, timeout_s) as control:
        return control.send(command)
