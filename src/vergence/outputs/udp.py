"""H.264 to one UDP destination, as RTP (RFC 6184, with an SDP) or MPEG-TS: remuxed by FFmpeg (PyAV) into memory, sent
from a socket of our own on the output's own thread, paced so a keyframe does not leave as one burst."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import av
import av.error

from vergence.config import UdpOutputSettings
from vergence.errors import CommandError
from vergence.files import write_atomically
from vergence.hub import Item
from vergence.media import sdp
from vergence.media.frame import TIME_BASE, EncodedPacket
from vergence.media.rtp import U32, is_rtcp, pacing_offsets, rtp_fields, shift_timestamp, ts_datagrams
from vergence.media.writes import Writes
from vergence.metrics import RateLimitedLog, WindowedMean, WindowedRate
from vergence.outputs.base import ThreadedConsumer, find_stream

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vergence.stream import Stream

log = logging.getLogger(__name__)

PROTOCOLS = ("rtp", "mpegts")
RESOLVE_TIMEOUT_S = 5.0
SEND_BUFFER_BYTES = 1 << 20  # room for a keyframe sent unpaced; the kernel caps it at net.core.wmem_max
PACE_BUDGET = 0.5  # spread a frame over at most this fraction of a frame interval, so it is out before the next


@dataclass(frozen=True, slots=True)
class Destination:
    """Where datagrams go: the host as given, its address, and the socket family to send with."""

    host: str
    address: str
    port: int
    family: int


async def resolve(host: str, port: int) -> Destination:
    """Resolve `host` off the event loop (IPv4 preferred); CommandError when it does not resolve."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM), RESOLVE_TIMEOUT_S)
    except TimeoutError:
        raise CommandError(f"UDP destination {host!r} did not resolve within {RESOLVE_TIMEOUT_S:g} s") from None
    except (OSError, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise CommandError(f"UDP destination {host!r} does not resolve: {reason}") from None
    infos = [info for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
    if not infos:
        raise CommandError(f"UDP destination {host!r} has no IPv4 or IPv6 address")
    family, _, _, _, sockaddr = min(infos, key=lambda info: info[0] != socket.AF_INET)
    return Destination(host, str(sockaddr[0]), port, family)


# --- muxing ----------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RtpSession:
    """What a receiver sees as one RTP stream, kept across muxer restarts: SSRC, next sequence number, media clock."""

    ssrc: int
    next_seq: int
    timestamp: int  # RTP time of the last frame sent (or the random origin before the first)
    capture_ns: int = 0  # capture time of that frame; 0 before the first

    def timestamp_at(self, capture_ns: int) -> int:
        """The RTP time of a frame captured at `capture_ns`, continuing the media clock of the frames before."""
        if not self.capture_ns or not capture_ns:
            return self.timestamp
        ticks = ((capture_ns - self.capture_ns) * sdp.CLOCK_RATE + 500_000_000) // 1_000_000_000  # rounded
        return (self.timestamp + ticks) & U32


class Muxer:
    """One FFmpeg container, `rtp` or `mpegts`, writing into memory: `mux(packet)` returns that frame's datagrams."""

    def __init__(self, protocol: str, size: tuple[int, int], packet_size: int, payload_type: int, rtp: RtpSession):
        self.protocol = protocol
        self._rtp = rtp
        self._file = Writes()
        self._ts_rest = b""
        self._first_pts: int | None = None
        self._delta: int | None = None  # added to FFmpeg's RTP time (random origin) to continue ours
        if protocol == "rtp":
            # Our SSRC and the next sequence number make a restarted muxer continue the stream a receiver follows.
            options = {
                "packetsize": str(packet_size),
                "payload_type": str(payload_type),
                "ssrc": str(rtp.ssrc),
                "seq": str(rtp.next_seq),
                "cname": "vergence",
            }
        else:
            # flush_packets: whole TS packets out after every frame, none held for the next. A PES length (for frames
            # under 64 KiB) lets a demuxer hand the frame on at its last byte instead of at the next frame's first.
            options = {"flush_packets": "1", "omit_video_pes_length": "0"}
        self._container = av.open(self._file, "w", format=protocol, options=options)
        width, height = size
        self._stream = self._container.add_mux_stream("h264", width=width, height=height, time_base=TIME_BASE)

    def mux(self, packet: EncodedPacket) -> list[tuple[bytes, bool]]:
        """Mux one access unit; return its datagrams as (bytes, is RTCP)."""
        if self._first_pts is None:
            self._first_pts = packet.pts
        av_packet = av.Packet(packet.data)
        av_packet.stream = self._stream
        av_packet.time_base = TIME_BASE
        av_packet.pts = av_packet.dts = packet.pts - self._first_pts  # each container's clock starts at 0
        av_packet.is_keyframe = packet.keyframe
        self._container.mux(av_packet)
        writes = self._file.take()
        if self.protocol == "mpegts":
            datagrams, self._ts_rest = ts_datagrams(self._ts_rest + b"".join(writes))
            return [(datagram, False) for datagram in datagrams]
        return self._restamp(writes, packet)

    def _restamp(self, writes: list[bytes], packet: EncodedPacket) -> list[tuple[bytes, bool]]:
        rtp = [write for write in writes if not is_rtcp(write)]
        if self._delta is None and rtp:
            self._delta = (self._rtp.timestamp_at(packet.capture_ns) - rtp_fields(rtp[0])[1]) & U32
        delta = self._delta or 0
        datagrams = [(shift_timestamp(write, delta), is_rtcp(write)) for write in writes]
        if rtp:
            seq, timestamp, _ = rtp_fields(shift_timestamp(rtp[-1], delta))
            self._rtp.next_seq = (seq + 1) & 0xFFFF
            self._rtp.timestamp, self._rtp.capture_ns = timestamp, packet.capture_ns
        return datagrams

    def close(self) -> None:
        try:
            self._container.close()  # what a trailer writes is not sent: the next container starts afresh
        except av.error.FFmpegError:
            pass


# --- the output ------------------------------------------------------------------------------------------------------


class UdpOutput:
    """A `[[udp]]` output: the stream's H.264 channel → RTP or MPEG-TS datagrams → one destination (RTCP to port + 1).

    Muxing, pacing and sending run on the output's own thread (a ThreadedConsumer under the hub's `gop` policy), with a
    non-blocking socket, so a slow output never holds up the encoder or another consumer. Commands run on the loop:
    a destination change swaps the address the next datagram goes to; a protocol change restarts only this muxer.
    """

    kind = "udp"

    def __init__(self, settings: UdpOutputSettings, streams: Mapping[str, Stream]) -> None:
        self.id = settings.id
        self.stream_id = settings.stream
        self.settings = settings
        self._streams = streams
        self._protocol: str = settings.protocol
        self._host, self._port = settings.host, settings.port
        self._destination: Destination | None = None
        self._sockets: dict[int, socket.socket] = {}
        self._enabled = settings.enabled
        self._consumer: ThreadedConsumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commands = asyncio.Lock()  # start, stop and destination changes one at a time
        self._lock = threading.Lock()  # the thread muxes and sends, stop() closes: never at once
        self._generation = 0  # bumped by start/stop, so a thread still finishing an item of an old run sends nothing
        self._started_ns = 0
        self._muxer: Muxer | None = None
        # Random SSRC, first sequence number and RTP time, as RFC 3550 asks; kept for the life of the output. The SSRC
        # stays below 2³¹: FFmpeg 5 reads the option as a signed int, FFmpeg 8 as an unsigned one.
        self._rtp = RtpSession(random.randint(1, 2**31 - 1), random.randint(0, 0xFFFF), random.randint(0, U32))
        self._parameter_sets: list[bytes] = []
        self._sdp_lock = threading.Lock()
        self._sdp: str | None = None
        self._sdp_version = 0
        self._session_id = int(time.time())
        self._error_log = RateLimitedLog()
        self._rate = WindowedRate()
        self._capture_to_wire_ms = WindowedMean(2.0)
        self.packets = self.bytes = self.frames = self.datagrams_dropped = self.datagram_max_bytes = 0
        self._past_drops = 0  # hub drops of earlier runs
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether the output is meant to send (as configured, then as started or stopped)."""
        return self._enabled

    @property
    def running(self) -> bool:
        return self._consumer is not None and self._consumer.running

    @property
    def protocol(self) -> str:
        return self._protocol

    def _stream(self) -> Stream:
        return find_stream(self._streams, self.id, self.stream_id)

    async def start(self) -> None:
        """Resolve the destination and start sending from the next keyframe; CommandError when the host is bad."""
        async with self._commands:
            if self._consumer is not None:
                return
            stream = self._stream()
            try:
                destination = await resolve(self._host, self._port)
            except CommandError as err:
                self.last_error = str(err)
                raise
            self._use(destination)
            self._generation += 1
            self._started_ns = time.time_ns()
            self._loop = asyncio.get_running_loop()
            handle = partial(self._on_item, generation=self._generation)
            self._consumer = ThreadedConsumer(stream.h264, f"udp-{self.id}", handle, self._loop, kind="udp")
            self._consumer.start()
            # Not the cached GOP (up to seconds old, sent in a burst it would sit in the receiver's buffer): a fresh
            # keyframe, now.
            stream.h264.request_keyframe(force=True)
            self._enabled = True
            log.info("udp %s: %s of %s to %s:%d", self.id, self._protocol, self.stream_id, self._host, self._port)
        await asyncio.to_thread(self._refresh_sdp)

    async def stop(self) -> None:
        """Stop sending and close the muxer and sockets; a no-op when stopped."""
        async with self._commands:
            self._enabled = False
            consumer, self._consumer = self._consumer, None
            if consumer is None:
                return
            self._generation += 1
            if consumer.subscription is not None:
                self._past_drops += consumer.subscription.drops
            consumer.stop()
            await asyncio.to_thread(self._close)
            log.info("udp %s: stopped after %d frames", self.id, self.frames)

    async def set_destination(self, host: str | None, port: int | None) -> dict[str, Any]:
        """Send to `host`:`port` (either may be None: unchanged) from the next datagram on; CommandError for a bad host."""
        async with self._commands:
            host, port = host or self._host, port or self._port
            destination = await resolve(host, port)
            self._host, self._port = host, port
            if self._consumer is not None:
                self._use(destination)
                # A receiver that starts listening now decodes from the next keyframe: make it come at once.
                self._stream().h264.request_keyframe(force=True)
            else:
                self._destination = destination
            log.info("udp %s: destination %s:%d (%s)", self.id, host, port, destination.address)
        await asyncio.to_thread(self._refresh_sdp)
        return self.describe()

    def set_protocol(self, protocol: str) -> dict[str, Any]:
        """Switch between `rtp` and `mpegts`: this output's muxer restarts at the next keyframe, nothing else does."""
        if protocol not in PROTOCOLS:
            raise CommandError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if protocol != self._protocol:
            self._protocol = protocol  # the thread sees it at its next packet
            if self._consumer is not None:
                self._stream().h264.request_keyframe(force=True)
            log.info("udp %s: now %s", self.id, protocol)
        return self.describe()

    def sdp(self) -> str | None:
        """The session description of the RTP stream; None before the first keyframe or while sending MPEG-TS."""
        return self._sdp if self._protocol == "rtp" else None

    def describe(self) -> dict[str, Any]:
        """The output as listed by GET /api/outputs."""
        subscription = self._consumer.subscription if self._consumer is not None else None
        destination = self._destination
        return {
            "id": self.id,
            "kind": self.kind,
            "stream": self.stream_id,
            "protocol": self._protocol,
            "host": self._host,
            "port": self._port,
            "address": destination.address if destination is not None else None,
            "enabled": self._enabled,
            "running": self.running,
            "packets": self.packets,
            "bytes": self.bytes,
            "bitrate_bps": round(self._rate.amount_per_second() * 8),
            "datagram_max_bytes": self.datagram_max_bytes,
            "frames": self.frames,
            "drops": self._past_drops + (subscription.drops if subscription is not None else 0),
            "datagrams_dropped": self.datagrams_dropped,
            "capture_to_wire_ms": round(self._capture_to_wire_ms.mean(), 3),
            "last_error": self.last_error,
            "packet_size": self.settings.packet_size,
            "pace_mbps": self.settings.pace_mbps,
            "payload_type": self.settings.payload_type,
            "ssrc": self._rtp.ssrc,
            "sdp_url": f"/api/outputs/{self.id}.sdp" if self._protocol == "rtp" else None,
        }

    # --- on the loop -------------------------------------------------------------------------------------------------

    def _use(self, destination: Destination) -> None:
        """Make `destination` the one the thread sends to, with a socket of its family ready first."""
        if destination.family not in self._sockets:
            sock = socket.socket(destination.family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            except OSError:
                pass
            self._sockets = {**self._sockets, destination.family: sock}  # swapped whole: the thread reads it unlocked
        self._destination = destination

    # --- off the loop ------------------------------------------------------------------------------------------------

    def _close(self) -> None:
        with self._lock:
            if self._muxer is not None:
                self._muxer.close()
                self._muxer = None
            sockets, self._sockets = self._sockets, {}
            for sock in sockets.values():
                sock.close()

    def _on_item(self, item: Item, generation: int) -> None:
        """Output thread: mux one access unit and send its datagrams."""
        if not isinstance(item, EncodedPacket):
            return
        with self._lock:
            if generation != self._generation:
                return
            if self._muxer is not None and self._muxer.protocol != self._protocol:
                self._muxer.close()
                self._muxer = None
            # A container starts at a keyframe carrying SPS/PPS, and not at one replayed from before the start.
            if self._muxer is None and (not (item.keyframe and item.config) or item.send_ns < self._started_ns):
                return
            if item.config:
                self._note_parameter_sets(item)
            if self._muxer is None:
                self._muxer = self._open()
                if self._muxer is None:
                    return
            try:
                datagrams = self._muxer.mux(item)
            except (av.error.FFmpegError, ValueError) as err:
                self._fail(f"{self._muxer.protocol} mux failed: {err}; restarting at the next keyframe")
                self._muxer.close()
                self._muxer = None
                if self._loop is not None:
                    self._loop.call_soon_threadsafe(self._streams[self.stream_id].h264.request_keyframe)
                return
            self._send(datagrams)
            self.frames += 1
            if item.capture_ns:
                self._capture_to_wire_ms.add((time.time_ns() - item.capture_ns) / 1e6)

    def _open(self) -> Muxer | None:
        stream = self._streams[self.stream_id]
        size = (stream.info.width, stream.info.height)
        try:
            return Muxer(self._protocol, size, self.settings.packet_size, self.settings.payload_type, self._rtp)
        except (av.error.FFmpegError, ValueError) as err:
            self._fail(f"cannot open the {self._protocol} muxer: {err}")
            return None

    def _send(self, datagrams: list[tuple[bytes, bool]]) -> None:
        fps = self._streams[self.stream_id].info.fps or 30.0
        offsets = pacing_offsets([len(data) for data, _ in datagrams], self.settings.pace_mbps * 1e6, PACE_BUDGET / fps)
        started = time.perf_counter()
        sent = 0
        for (data, rtcp), offset in zip(datagrams, offsets, strict=True):
            wait = started + offset - time.perf_counter()
            if wait > 0.0002:  # below this the sleep's own overhead is the larger error
                time.sleep(wait)
            destination, sockets = self._destination, self._sockets  # read per datagram: a new address takes at once
            sock = sockets.get(destination.family) if destination is not None else None
            if sock is None or destination is None:
                return
            port = destination.port + 1 if rtcp else destination.port
            if port > 65535:
                continue  # no room for RTCP above the last port
            try:
                sock.sendto(data, (destination.address, port))
            except BlockingIOError:
                self.datagrams_dropped += 1  # the send buffer is full: UDP would lose it on the way anyway
                continue
            except OSError as err:
                self._fail(f"send to {destination.address}:{port} failed: {err}")
                continue
            self.packets += 1
            self.bytes += len(data)
            sent += len(data)
            self.datagram_max_bytes = max(self.datagram_max_bytes, len(data))
        self._rate.add(sent)

    def _fail(self, message: str) -> None:
        self.last_error = message
        if self._error_log.ready():
            log.warning("udp %s: %s (%d times)", self.id, message, self._error_log.take())

    def _note_parameter_sets(self, packet: EncodedPacket) -> None:
        nals = sdp.parameter_set_nals(packet.data)
        if nals and nals != self._parameter_sets:
            self._parameter_sets = nals
            self._refresh_sdp()

    def _refresh_sdp(self) -> None:
        """Rebuild the SDP; when it changed, give it a new version and write it to `sdp_path` (atomically)."""
        with self._sdp_lock:
            destination, nals = self._destination, self._parameter_sets
            if destination is None or not nals:
                return
            stream = self._streams.get(self.stream_id)

            def build(version: int) -> str:
                return sdp.h264_sdp(
                    nals,
                    destination.address,
                    destination.port,
                    self.settings.payload_type,
                    session_id=self._session_id,
                    session_version=version,
                    session_name=f"vergence {self.stream_id}",
                    ssrc=self._rtp.ssrc,
                    cname="vergence",
                    framerate=stream.info.fps if stream is not None else None,
                )

            if self._sdp == build(self._sdp_version):
                return
            self._sdp_version += 1
            self._sdp = text = build(self._sdp_version)
            if self.settings.sdp_path is not None:
                try:
                    # 0644: mkstemp's 0600 would hide the SDP from a receiver run as another user.
                    write_atomically(self.settings.sdp_path.expanduser(), text, 0o644)
                except OSError as err:
                    self._fail(f"cannot write {self.settings.sdp_path}: {err}")


def create_output(settings: UdpOutputSettings, streams: Mapping[str, Stream]) -> UdpOutput:
    """The output a `[[udp]]` entry makes (the composition root finds this by the section's name)."""
    return UdpOutput(settings, streams)
