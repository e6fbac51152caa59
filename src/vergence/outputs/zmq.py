"""ZeroMQ: each stream's newest frames on a PUB socket, commands on a REP socket (docs/protocol.md, "ZeroMQ").

Frames go out as three-part messages `[topic, metadata JSON, payload]`, the topic being the stream id, so a subscriber
filters cameras in libzmq. Each stream is read from its hub channel with the `latest` policy: a PUB socket that cannot keep
up makes vergence skip frames, never queue them.

Why the PUB socket is a plain (synchronous) pyzmq socket: PUB never waits. Sent with NOBLOCK it either queues the message
or drops it for a subscriber whose queue is at SNDHWM, so there is nothing to await and a zmq.asyncio socket would only
add a Future per frame. The REP socket does wait (for requests), so it is a zmq.asyncio socket, read on the event loop
through ZMQ_FD; every socket is touched on the loop thread only, as libzmq requires.

Why not ZMQ_CONFLATE on the PUB side: conflate keeps one *message part*, not one message, so it breaks multipart messages
(libzmq documents it as unsupported). A small SNDHWM bounds what waits per subscriber instead, and
`vergence.client.zmq.ZmqFrames(conflate=True)` keeps only the newest frame per stream on the subscriber's side.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vergence.errors import ConfigError, OutputError
from vergence.hub import Channel
from vergence.media.frame import EncodedPacket
from vergence.outputs.base import FrameGate

if TYPE_CHECKING:
    from collections.abc import Mapping

    import zmq
    import zmq.asyncio

    from vergence.config import Settings, ZmqSettings
    from vergence.stream import Stream

log = logging.getLogger(__name__)

CommandAnswer = Callable[[list[bytes]], Awaitable[bytes]]

METADATA_VERSION = 1
#: Largest command accepted on the REP socket; a peer sending more is disconnected by libzmq, not read into memory.
MAX_REQUEST_BYTES = 64 * 1024


def frame_metadata(stream_id: str, format: str, packet: EncodedPacket, width: int, height: int, send_ns: int) -> bytes:
    """The metadata part of a frame message: JSON, with shape and dtype for raw pixels."""
    metadata: dict[str, Any] = {
        "v": METADATA_VERSION,
        "stream": stream_id,
        "seq": packet.seq,
        "capture_ns": packet.capture_ns,
        "send_ns": send_ns,
        "format": format,
        "width": width,
        "height": height,
    }
    if format == "raw":
        metadata["shape"] = [height, width, 3]
        metadata["dtype"] = "uint8"
    return json.dumps(metadata, separators=(",", ":")).encode()


def import_zmq() -> Any:
    """Return the pyzmq module, or raise ConfigError naming the package to install."""
    try:
        import zmq
        import zmq.asyncio
    except ImportError as err:
        raise ConfigError("[zmq] needs pyzmq: pip install pyzmq (or vergence[zmq])") from err
    return zmq


@dataclass(slots=True)
class _Counts:
    sent: int = 0
    dropped: int = 0  # refused by the PUB socket (EAGAIN)


class ZmqService:
    """The `[zmq]` service: a PUB socket with frames of the chosen streams and a REP socket running commands."""

    def __init__(
        self,
        settings: ZmqSettings,
        streams: Mapping[str, Stream],
        server: Settings,
        answer: CommandAnswer,
        single_part: bool = False,
        name: str = "zmq",
    ) -> None:
        self.name = name
        # single_part: each frame a one-part message, the JPEG alone (RPI-CameraStreaming's subscribers, which set
        # ZMQ_CONFLATE: conflate keeps one part, so a multipart message would abort their libzmq).
        self._single_part = single_part
        self._zmq = import_zmq()
        self.settings = settings
        self._streams = streams
        self._server_settings = server
        self._answer = answer  # a request → its reply: control.transports.zmq
        self._context: zmq.asyncio.Context | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._rep: zmq.asyncio.Socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._counts: dict[str, _Counts] = {}
        self._curve: tuple[bytes, bytes] | None = None  # (secret, public) Z85 keys
        self._authenticator: Any = None
        self.requests = 0

    def _channels(self) -> list[Channel]:
        """The channel each published stream is read from; an unknown stream id is a config error."""
        stream_ids = self.settings.streams or [camera.id for camera in self._server_settings.cameras]
        channels = []
        for stream_id in stream_ids:
            stream = self._streams.get(stream_id)
            channel = None if stream is None else stream.jpeg if self.settings.format == "jpeg" else stream.raw
            if channel is None:
                raise ConfigError(f"zmq.streams: unknown stream {stream_id!r}; streams: {', '.join(self._streams)}")
            channels.append(channel)
        return channels

    async def start(self) -> None:
        """Bind the configured sockets and start publishing and answering."""
        zmq = self._zmq
        loop = asyncio.get_running_loop()
        self._context = zmq.asyncio.Context()
        try:
            self._start_curve()
            if self.settings.pub:
                channels = self._channels()
                # Options first: libzmq copies them into the listener at bind, for every connection it accepts. A
                # small kernel buffer, as for every viewer (architecture.md): else a stalled subscriber's backlog sits
                # in megabytes of socket buffer, out of reach of the HWM, and it resumes with stale frames.
                pub_options = {
                    zmq.SNDHWM: self.settings.hwm,
                    zmq.SNDBUF: self._server_settings.server.send_buffer_bytes,
                }
                self._pub = self._bind(zmq.PUB, self.settings.pub, "zmq.pub", zmq.Socket, pub_options)
                for channel in channels:
                    self._counts[channel.stream_id] = _Counts()
                    self._spawn(loop, self._publish(channel), f"zmq publish {channel.stream_id}")
                log.info(
                    "ZeroMQ: %s frames of %s on %s", self.settings.format, ", ".join(self._counts), self.settings.pub
                )
            if self.settings.rep:
                rep_options = {zmq.MAXMSGSIZE: MAX_REQUEST_BYTES}
                self._rep = self._bind(zmq.REP, self.settings.rep, "zmq.rep", zmq.asyncio.Socket, rep_options)
                self._spawn(loop, self._answer_commands(self._rep), "zmq commands")
                log.info("ZeroMQ: commands on %s", self.settings.rep)
            if self._curve is not None:
                clients = len(self.settings.curve_clients) or "any"
                log.info("ZeroMQ: CURVE on, server public key %s, clients allowed: %s", self.public_key, clients)
        except BaseException:
            await self.stop()
            raise

    def _start_curve(self) -> None:
        """With a CURVE key both sockets encrypt; with client keys, a ZAP handler lets only those clients in."""
        if self.settings.curve_secret_key is None:
            return
        zmq = self._zmq
        secret = self.settings.curve_secret_key.get_secret_value().encode()
        self._curve = (secret, zmq.curve_public(secret))
        if self.settings.curve_clients:
            from zmq.auth.asyncio import AsyncioAuthenticator

            allowed = {key.encode() for key in self.settings.curve_clients}

            class Allowed:
                def callback(self, domain: str, key: bytes) -> bool:
                    return key in allowed

            self._authenticator = AsyncioAuthenticator(self._context)
            self._authenticator.start()
            self._authenticator.configure_curve_callback("*", credentials_provider=Allowed())

    @property
    def public_key(self) -> str | None:
        """The server's CURVE public key (Z85), which clients need; None without CURVE."""
        return self._curve[1].decode() if self._curve is not None else None

    def _spawn(self, loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None], name: str) -> None:
        task = loop.create_task(work, name=name)
        task.add_done_callback(_report_failure)
        self._tasks.append(task)

    def _bind(self, kind: int, endpoint: str, key: str, socket_class: type[Any], options: dict[int, int]) -> Any:
        zmq = self._zmq
        assert self._context is not None
        socket = self._context.socket(kind, socket_class=socket_class)
        socket.setsockopt(zmq.LINGER, 0)  # stopping must never wait for a subscriber to read
        for option, value in options.items():
            socket.setsockopt(option, value)
        if self._curve is not None:
            socket.curve_secretkey, socket.curve_publickey = self._curve
            socket.curve_server = True
        try:
            socket.bind(endpoint)
        except zmq.ZMQError as err:
            socket.close()
            raise OutputError(f"{key} = {endpoint!r}: cannot bind: {err}") from err
        return socket

    async def _publish(self, channel: Channel) -> None:
        stream_id = channel.stream_id
        gate = FrameGate(self.settings.fps)
        subscription = channel.subscribe("latest", name="zmq", kind="zmq")
        try:
            async for item in subscription:
                if isinstance(item, EncodedPacket) and gate.ready(time.monotonic()):
                    self._send(stream_id, item)
        finally:
            subscription.close()

    def _send(self, stream_id: str, packet: EncodedPacket) -> None:
        zmq = self._zmq
        assert self._pub is not None
        info = self._streams[stream_id].info
        # Packets carry their picture size; the stream's is a fallback for a producer that does not set it.
        width, height = packet.width or info.width, packet.height or info.height
        counts = self._counts[stream_id]
        try:
            if self._single_part:
                self._pub.send(packet.data, flags=zmq.NOBLOCK, copy=False)
            else:
                metadata = frame_metadata(stream_id, self.settings.format, packet, width, height, time.time_ns())
                # copy=False: a raw 720p frame is 2.7 MB; libzmq sends from the packet's own bytes.
                self._pub.send_multipart([stream_id.encode(), metadata, packet.data], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            # PUB drops silently per subscriber at SNDHWM; EAGAIN comes only when the socket as a whole cannot queue.
            counts.dropped += 1
            return
        counts.sent += 1

    async def _answer_commands(self, rep: zmq.asyncio.Socket) -> None:
        """Answer every request in turn: REP must reply to each one before it may receive the next."""
        while True:
            parts = await rep.recv_multipart()
            self.requests += 1
            await rep.send(await self._answer(parts))

    async def stop(self) -> None:
        """Stop publishing and answering; close the sockets without waiting for any peer. Safe to call twice."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for socket in (self._pub, self._rep):
            if socket is not None:
                socket.close(linger=0)
        self._pub = self._rep = None
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def describe(self) -> dict[str, Any]:
        """Endpoints, format, rate and per-stream counters."""
        return {
            "name": self.name,
            "pub": self.settings.pub,
            "rep": self.settings.rep,
            "format": self.settings.format,
            "fps": self.settings.fps,
            "hwm": self.settings.hwm,
            "curve_public_key": self.public_key,
            "curve_clients": len(self.settings.curve_clients),
            "streams": {stream_id: {"sent": c.sent, "dropped": c.dropped} for stream_id, c in self._counts.items()},
            "requests": self.requests,
        }


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s ended: %r", task.get_name(), task.exception(), exc_info=task.exception())
