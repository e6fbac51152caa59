"""JPEG frames over plain TCP (docs/protocol.md, "TCP JPEG feed"): each client asks for its own stream, size, quality and
rate in a one-line JSON handshake, then reads framed JPEGs (wire format in `vergence.client.tcp`).

Clients asking the same (stream, width, height, quality) share a *variant*: the stream's own `jpeg` channel when they
ask its size at the configured quality, else a scaling JPEG encoder attached to the stream on a thread of its own,
started with the variant's first client and stopped with its last. A variant frames each JPEG once (header + payload)
and offers those same bytes to each of its clients. A client keeps only the newest frame offered (a one-slot mailbox;
what it replaces is counted as dropped) and sends from its own task, so a client that stops reading fills its own socket
buffer, then skips frames: it costs the others nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from vergence.auth import Refused, Role
from vergence.client.tcp import MAX_HANDSHAKE_BYTES, PROTOCOL_VERSION, pack_header
from vergence.encoders.jpeg import ScaledJpegEncoder
from vergence.errors import OutputError
from vergence.hub import Subscription
from vergence.media.frame import EncodedPacket
from vergence.outputs.base import FrameGate

if TYPE_CHECKING:
    from vergence.auth import Authenticator
    from vergence.config import Settings, TcpFeedSettings
    from vergence.context import Parts
    from vergence.stream import Stream

log = logging.getLogger(__name__)

MIN_SIZE_PX = 16
#: The rate limit offered for a stream that does not know its own frame rate.
MAX_FPS = 240.0
REQUEST_KEYS = frozenset({"version", "stream", "quality", "width", "height", "fps", "token"})
#: After refusing a client, how long its leftover input is read and discarded: closing a socket with unread input sends
#: a reset, which can destroy the refusal before the client has read it.
REFUSAL_LINGER_S = 1.0


# --- the handshake (pure) --------------------------------------------------------------------------------------------


class HandshakeError(ValueError):
    """A request the feed refuses; the message is sent to the client as the reason. `logged`: said in the log already
    (a failed login, which the login throttle logs)."""

    def __init__(self, message: str, logged: bool = False) -> None:
        super().__init__(message)
        self.logged = logged


@dataclass(frozen=True, slots=True)
class StreamShape:
    """What a client may ask of a stream: at most its size and frame rate."""

    width: int
    height: int
    fps: float


@dataclass(frozen=True, slots=True)
class FeedRequest:
    """A validated request: every field filled in."""

    stream: str
    width: int
    height: int
    quality: int
    fps: float

    def reply(self) -> dict[str, Any]:
        return {
            "ok": True,
            "version": PROTOCOL_VERSION,
            "stream": self.stream,
            "width": self.width,
            "height": self.height,
            "quality": self.quality,
            "fps": self.fps,
        }


def _integer(request: dict[str, Any], key: str) -> int | None:
    """The integer at `key`, None when the key is absent (null is not an integer)."""
    if key not in request:
        return None
    value = request[key]
    if type(value) is not int:  # bool is an int to Python, not to the protocol
        raise HandshakeError(f"{key} must be an integer, got {json.dumps(value)}")
    return value


def _size(key: str, value: int, largest: int) -> int:
    if not MIN_SIZE_PX <= value <= largest or value % 2:
        raise HandshakeError(f"{key} = {value} must be even and within {MIN_SIZE_PX} … {largest}")
    return value


def _scaled(side: int, ratio: float) -> int:
    """The other side of a picture scaled by `ratio`, kept even and at least MIN_SIZE_PX."""
    return max(MIN_SIZE_PX, round(side * ratio / 2) * 2)


def parse_request(line: bytes, streams: Mapping[str, StreamShape], default_quality: int) -> FeedRequest:
    """Validate a handshake line against the streams on offer (the first is the default); HandshakeError says why not."""
    try:
        request = json.loads(line)
    except ValueError as err:  # includes UnicodeDecodeError
        raise HandshakeError(f"the handshake is not JSON: {err}") from None
    if not isinstance(request, dict):
        raise HandshakeError("the handshake must be a JSON object")
    unknown = sorted(set(request) - REQUEST_KEYS)
    if unknown:
        raise HandshakeError(f"unknown key {unknown[0]!r}; keys: {', '.join(sorted(REQUEST_KEYS))}")
    version = _integer(request, "version")
    if version != PROTOCOL_VERSION:
        raise HandshakeError(f"version must be {PROTOCOL_VERSION}, got {json.dumps(request.get('version'))}")
    stream_id = request.get("stream", next(iter(streams)))
    if not isinstance(stream_id, str) or stream_id not in streams:
        raise HandshakeError(f"unknown stream {json.dumps(stream_id)}; streams: {', '.join(streams)}")
    shape = streams[stream_id]
    quality = _integer(request, "quality")
    if quality is None:
        quality = default_quality
    elif not 1 <= quality <= 100:
        raise HandshakeError(f"quality = {quality} must be within 1 … 100")
    width, height = _integer(request, "width"), _integer(request, "height")
    if width is not None:
        width = _size("width", width, shape.width)
    if height is not None:
        height = _size("height", height, shape.height)
    if width is None and height is None:
        width, height = shape.width, shape.height
    elif height is None:  # one side given: keep the stream's aspect
        assert width is not None
        height = min(shape.height & ~1, _scaled(shape.height, width / shape.width))
    elif width is None:
        width = min(shape.width & ~1, _scaled(shape.width, height / shape.height))
    top_fps = shape.fps if shape.fps > 0 else MAX_FPS
    fps = request.get("fps", top_fps)
    if type(fps) not in (int, float) or not math.isfinite(fps) or not 0 < fps <= top_fps:
        raise HandshakeError(f"fps = {json.dumps(fps)} must be a number within 0 (excluded) … {top_fps:g}")
    return FeedRequest(stream_id, width, height, quality, float(fps))


# --- wires: how a client asks and how its frames are framed ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Asked:
    """A client's validated request, and the token it gave (None: none)."""

    request: FeedRequest
    token: str | None = None


class Wire(Protocol):
    """A TCP feed's dialect: how a client asks for frames, and how each frame is framed for it."""

    async def ask(self, reader: asyncio.StreamReader, streams: Mapping[str, StreamShape], timeout_s: float) -> Asked:
        """Read and validate a client's request; HandshakeError says why it is refused."""

    def accepted(self, request: FeedRequest) -> bytes:
        """What an accepted client is sent first (may be nothing)."""

    def refusal(self, reason: str) -> bytes:
        """What a refused client is sent before the connection closes (may be nothing)."""

    def variant(self, request: FeedRequest) -> tuple[Any, ...]:
        """What clients must share to share framed bytes (besides the stream)."""

    def frame(self, packet: EncodedPacket, width: int, height: int, fps: float) -> bytes:
        """One JPEG with its header."""


class VergenceWire:
    """vergence's own: a one-line JSON handshake answered by a JSON line, frames with the `VRGJ` header
    (docs/protocol.md, "TCP JPEG feed")."""

    def __init__(self, default_quality: int) -> None:
        self._default_quality = default_quality

    async def ask(self, reader: asyncio.StreamReader, streams: Mapping[str, StreamShape], timeout_s: float) -> Asked:
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), timeout_s)
        except TimeoutError:
            raise HandshakeError(f"no handshake line within {timeout_s:g} s") from None
        except asyncio.LimitOverrunError:
            raise HandshakeError(f"the handshake line is longer than {MAX_HANDSHAKE_BYTES} bytes") from None
        except asyncio.IncompleteReadError:
            raise HandshakeError("the handshake line must end with a newline") from None
        request = parse_request(line, streams, self._default_quality)
        token = json.loads(line).get("token")  # parse_request has checked the line is a JSON object
        if token is not None and not isinstance(token, str):
            raise HandshakeError("token must be a string")
        return Asked(request, token)

    def accepted(self, request: FeedRequest) -> bytes:
        return json.dumps(request.reply()).encode() + b"\n"

    def refusal(self, reason: str) -> bytes:
        return json.dumps({"ok": False, "error": reason}).encode() + b"\n"

    def variant(self, request: FeedRequest) -> tuple[Any, ...]:
        """What clients must share to share framed bytes (besides the stream)."""
        return (request.width, request.height, request.quality)

    def frame(self, packet: EncodedPacket, width: int, height: int, fps: float) -> bytes:
        return pack_header(packet.seq, packet.capture_ns, width, height, len(packet.data)) + packet.data


# --- clients and variants --------------------------------------------------------------------------------------------


class FeedClient:
    """One client: its request, a one-slot mailbox of framed JPEGs, and its counters."""

    def __init__(self, request: FeedRequest, peer: str, writer: asyncio.StreamWriter, stream_fps: float) -> None:
        self.request = request
        self.peer = peer
        self._writer = writer
        self._gate = FrameGate(request.fps if request.fps < stream_fps else 0.0)
        # Capture times jitter around the camera's grid: a frame a hair early for its slot would be skipped and the
        # rate would fall short, so a frame counts as on time from half a camera interval before its slot.
        self._early_s = 0.5 / stream_fps if stream_fps > 0 else 0.0
        self._pending: bytes | None = None
        self._ready = asyncio.Event()
        self.connected_at = time.monotonic()
        self.frames = self.drops = 0

    def offer(self, framed: bytes, capture_ns: int) -> None:
        """Keep a frame for sending (on the loop, never waits): the newest wins, at the client's rate."""
        if not self._gate.ready((capture_ns or time.time_ns()) / 1e9 + self._early_s):
            return
        if self._pending is not None:
            self.drops += 1
        self._pending = framed
        self._ready.set()

    async def send_forever(self) -> None:
        """Write each newest frame once the previous one is all in the kernel's hands."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            framed, self._pending = self._pending, None
            if framed is None:
                continue
            self._writer.write(framed)
            await self._writer.drain()
            self.frames += 1

    def describe(self) -> dict[str, Any]:
        request = self.request
        return {
            "peer": self.peer,
            "stream": request.stream,
            "width": request.width,
            "height": request.height,
            "quality": request.quality,
            "fps": request.fps,
            "frames": self.frames,
            "drops": self.drops,
            "connected_s": round(time.monotonic() - self.connected_at, 1),
        }


class Variant:
    """The clients of one (stream, width, height, quality) and the source of their JPEGs, framed once per frame."""

    def __init__(
        self, stream: Stream, request: FeedRequest, loop: asyncio.AbstractEventLoop, own: bool, wire: Wire
    ) -> None:
        self.stream = stream
        self.width, self.height, self.quality = request.width, request.height, request.quality
        self.fps = request.fps  # told in each frame's header by wires that tell it (the variant is per rate then)
        self._wire = wire
        self.key: tuple[Any, ...] = (stream.id, *wire.variant(request))  # what its clients share
        self.own = own  # the stream's own jpeg channel, else a scaling encoder
        self.clients: set[FeedClient] = set()
        self.frames = 0
        self._loop = loop
        self._subscription: Subscription | None = None
        self._pump: asyncio.Task[None] | None = None
        self._encoder: ScaledJpegEncoder | None = None

    def start(self) -> None:
        if self.own:
            self._subscription = self.stream.jpeg.subscribe("latest", name="tcp", kind="tcp")
            self._pump = self._loop.create_task(self._read(self._subscription), name=f"tcp {self.stream.id} jpeg")
            return

        def sink(packet: EncodedPacket) -> None:  # the encoder thread's door to the loop
            self._loop.call_soon_threadsafe(self.publish, packet)

        self._encoder = ScaledJpegEncoder(self.stream.id, self.width, self.height, self.quality, sink)
        self._encoder.start()
        self.stream.attach(self._encoder)
        log.info("tcp: encoding %s at %dx%d, quality %d", self.stream.id, self.width, self.height, self.quality)

    async def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        encoder, self._encoder = self._encoder, None
        if encoder is not None:
            self.stream.detach(encoder)
            await asyncio.to_thread(encoder.stop)  # joins the encoder thread

    async def _read(self, subscription: Subscription) -> None:
        async for item in subscription:
            if isinstance(item, EncodedPacket):
                self.publish(item)

    def publish(self, packet: EncodedPacket) -> None:
        """Frame one JPEG and offer it to every client of the variant (on the loop)."""
        width, height = packet.width or self.width, packet.height or self.height
        framed = self._wire.frame(packet, width, height, self.fps)
        self.frames += 1
        for client in list(self.clients):
            client.offer(framed, packet.capture_ns)

    def describe(self) -> dict[str, Any]:
        return {
            "stream": self.stream.id,
            "width": self.width,
            "height": self.height,
            "quality": self.quality,
            "source": "jpeg channel" if self.own else "scaling encoder",
            "clients": len(self.clients),
            "frames": self.frames,
        }


# --- the service -----------------------------------------------------------------------------------------------------


class TcpFeed:
    """The `[tcp]` service: accepts clients, checks their handshake, and serves each its variant of a stream."""

    def __init__(
        self,
        settings: TcpFeedSettings,
        streams: Mapping[str, Stream],
        server: Settings,
        auth: Authenticator,
        wire: Wire | None = None,
        name: str = "tcp",
    ) -> None:
        self.name = name
        self._wire = wire or VergenceWire(server.jpeg.quality)
        self.settings = settings
        self._streams = streams
        self._server_settings = server
        self._server: asyncio.Server | None = None
        self._clients: set[FeedClient] = set()
        self._variants: dict[tuple[Any, ...], Variant] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._auth = auth  # the server's: failed logins here count with those over HTTP
        self.refused = 0

    async def start(self) -> None:
        """Listen on host:port; OutputError when the address cannot be bound."""
        host, port = self.settings.host, self.settings.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            send_buffer = self._server_settings.server.send_buffer_bytes
            if send_buffer:
                # Inherited by every accepted client: a stalled client's backlog stays one frame in our mailbox instead
                # of megabytes of stale frames queued in the kernel (architecture.md, "Small kernel send buffers").
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            sock.bind((host, port))
        except OSError as err:
            sock.close()
            raise OutputError(f"tcp: cannot listen on {host}:{port}: {err}") from err
        # limit: the reader's buffer, so a handshake line longer than the protocol allows is refused, not buffered.
        self._server = await asyncio.start_server(self._accept, sock=sock, limit=MAX_HANDSHAKE_BYTES + 1)
        log.info("%s: JPEG feed on %s:%d", self.name, host, port)

    async def stop(self) -> None:
        """Stop listening, drop every client and stop every variant; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        handlers, self._handlers = self._handlers, set()
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        variants, self._variants = self._variants, {}
        for variant in variants.values():
            await variant.stop()
        if server is not None:
            await server.wait_closed()

    def describe(self) -> dict[str, Any]:
        """Address, clients with their request and counters, variants running."""
        return {
            "name": self.name,
            "host": self.settings.host,
            "port": self.settings.port,
            "max_clients": self.settings.max_clients,
            "clients": [client.describe() for client in self._clients],
            "variants": [variant.describe() for variant in self._variants.values()],
            "refused": self.refused,
        }

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        peer = writer.get_extra_info("peername")
        peer_name = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        try:
            await self._serve(reader, writer, peer_name)
        except (ConnectionError, OSError):
            pass  # the client went away
        finally:
            self._handlers.discard(handler)
            writer.transport.abort()  # never wait to flush to a client that is gone or stalled

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        try:
            asked = await self._wire.ask(reader, self._shapes(), self.settings.handshake_timeout_s)
            request = asked.request
            self._check_viewer(asked.token, writer)
        except HandshakeError as err:
            await self._refuse(reader, writer, peer, str(err), err.logged)
            return
        if len(self._clients) >= self.settings.max_clients:
            await self._refuse(reader, writer, peer, "server full")
            return
        stream = self._streams[request.stream]
        writer.transport.set_write_buffer_limits(high=0)  # drain() waits until the kernel has taken the whole frame
        writer.write(self._wire.accepted(request))
        client = FeedClient(request, peer, writer, stream.info.fps)
        variant = self._join(stream, request, client)
        sender = asyncio.create_task(client.send_forever(), name=f"tcp {peer}")
        self._clients.add(client)
        log.info(
            "tcp: %s reads %s at %dx%d, quality %d, %g fps",
            *(peer, stream.id, request.width, request.height, request.quality, request.fps),
        )
        reading = asyncio.create_task(_read_until_eof(reader), name=f"tcp {peer} reader")
        try:
            # Until the client hangs up (reading ends) or its socket fails (sending ends).
            await asyncio.wait((sender, reading), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sender.cancel()
            reading.cancel()
            await asyncio.gather(sender, reading, return_exceptions=True)
            self._clients.discard(client)
            await self._leave(variant, client)
            log.info("%s: %s left after %d frames (%d dropped)", self.name, peer, client.frames, client.drops)

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str, reason: str, logged: bool = False
    ) -> None:
        self.refused += 1
        if not logged:
            log.info("%s: refused %s: %s", self.name, peer, reason)
        writer.write(self._wire.refusal(reason))
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            async with asyncio.timeout(REFUSAL_LINGER_S):
                await writer.drain()
                writer.write_eof()
                await _read_until_eof(reader)

    def _check_viewer(self, token: str | None, writer: asyncio.StreamWriter) -> None:
        """Frames are for viewers: a `token` in the handshake, or the anonymous role of [auth] (by default, with no
        tokens or users set, anyone who reaches the port; with them, nobody without a token)."""
        peer = writer.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else ""
        try:
            if token is not None:
                principal = self._auth.by_token(token, address)
            else:
                principal = self._auth.anonymous(address, None)
        except Refused as err:
            raise HandshakeError(str(err), err.logged) from None
        if principal.role < Role.VIEWER:
            raise HandshakeError('a token is needed: add "token" to the handshake ([auth] is on)')

    def _shapes(self) -> dict[str, StreamShape]:
        return {sid: StreamShape(s.info.width, s.info.height, s.info.fps) for sid, s in self._streams.items()}

    def _join(self, stream: Stream, request: FeedRequest, client: FeedClient) -> Variant:
        key = (stream.id, *self._wire.variant(request))
        variant = self._variants.get(key)
        if variant is None:
            own = (request.width, request.height, request.quality) == (
                stream.info.width,
                stream.info.height,
                self._server_settings.jpeg.quality,
            )
            variant = self._variants[key] = Variant(stream, request, asyncio.get_running_loop(), own, self._wire)
            variant.start()
        variant.clients.add(client)
        return variant

    async def _leave(self, variant: Variant, client: FeedClient) -> None:
        variant.clients.discard(client)
        if not variant.clients and self._variants.get(variant.key) is variant:
            del self._variants[variant.key]
            await variant.stop()


async def _read_until_eof(reader: asyncio.StreamReader) -> None:
    """Read and discard until the peer closes: a client says nothing after its handshake."""
    while await reader.read(4096):
        pass


def create_service(parts: Parts) -> TcpFeed:
    """The `[tcp]` service (the composition root finds this by the section's name)."""
    return TcpFeed(parts.settings.tcp, parts.streams, parts.settings, parts.auth)
