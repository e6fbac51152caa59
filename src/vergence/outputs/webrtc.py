"""WebRTC viewing, WHEP-style: every peer gets the stream's own H.264 access units, packetized by aiortc (no encode per peer).

Signalling is one request: an SDP offer in, the answer with every candidate of ours out (no trickle ICE). Our ICE agent
gathers host candidates only unless `[webrtc] ice_servers` names STUN/TURN servers: aiortc would otherwise ask a public
STUN server. A peer may open a data channel: it speaks the control protocol of /ws/control, and it carries each frame's
capture time, so a player can show its latency for any camera.

aiortc is imported here only, so the rest of vergence runs without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from vergence.auth import Principal
from vergence.config import WebRtcSettings
from vergence.errors import ConfigError, VergenceError
from vergence.hub import Channel, Subscription, SubscriptionClosed
from vergence.media.frame import EncodedPacket
from vergence.stream import Stream

try:
    import av
    from aioice.ice import ICE_FAILED
    from aiortc import (
        RTCConfiguration,
        RTCDataChannel,
        RTCIceServer,
        RTCPeerConnection,
        RTCRtpSender,
        RTCSessionDescription,
        rtp,
    )
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters
except ImportError as err:  # pragma: no cover - exercised only where aiortc is missing
    raise ConfigError(f"WebRTC needs the aiortc package ({err}); install it: pip install aiortc") from err

log = logging.getLogger(__name__)

# A peer's data channel given to whoever speaks control on it; returns what to call when the peer closes.
ControlChannel = Callable[["Peer", "RTCDataChannel"], Callable[[], None]]

VIDEO_CLOCK = Fraction(1, 90_000)  # RTP's clock for video
MAX_QUEUED_PACKETS = 60  # per peer: a peer whose sender falls this far behind resumes at the next keyframe
DATA_CHANNEL_HIGH_WATER = 64 * 1024  # frame times are skipped while this much is waiting to be sent to a peer
STATS_EVERY_S = 1.0
ENDED_KEPT = 1024  # URLs of ended peers remembered, so a late DELETE of one is a success
_H264_IN_OFFER = re.compile(r"^a=rtpmap:\d+ H264/90000", re.IGNORECASE | re.MULTILINE)
PLAYOUT_DELAY = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
_PLAYOUT_DELAY_IN_OFFER = re.compile(rf"^a=extmap:(\d+)(?:/\w+)? {re.escape(PLAYOUT_DELAY)}\s*$", re.MULTILINE)
ZERO_PLAYOUT_DELAY = b"\x00\x00\x00"  # min 0, max 0 (12 bits each, 10 ms units): show each frame once decoded


class WebRtcError(VergenceError):
    """An offer that cannot be answered; `status` is the HTTP status to answer with."""

    code = "webrtc_error"

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class PassthroughTrack(MediaStreamTrack):
    """A video track that hands aiortc the stream's encoded access units (`av.Packet`s): aiortc packs them, never encodes.

    It joins the H.264 channel when aiortc asks for the first packet, that is once the peer is connected, and gets the
    current GOP from the keyframe on, so its first picture decodes. Timestamps follow the send time on RTP's 90 kHz clock:
    a joiner's catch-up burst then plays at once instead of at its capture pace.
    """

    kind = "video"

    def __init__(self, channel: Channel, name: str, on_sent: Callable[[int, EncodedPacket], None]) -> None:
        super().__init__()
        self.channel = channel
        self.name = name
        self.on_sent = on_sent
        self.subscription: Subscription | None = None
        self.frames = 0
        self._origin_ns = time.monotonic_ns()
        self._last_pts = -1

    async def recv(self) -> av.Packet:  # type: ignore[override]  # aiortc accepts packets as well as frames
        if self.readyState != "live":
            raise MediaStreamError
        if self.subscription is None:
            # Room for the whole cached GOP, so the joiner's first picture comes from the replay at once; with less
            # room the hub would have to ask the encoder for a fresh keyframe.
            queued = max(MAX_QUEUED_PACKETS, self.channel.max_cached_packets)
            self.subscription = self.channel.subscribe("gop", queued, name=self.name, kind="webrtc")
        while True:
            try:
                item = await self.subscription.get()
            except SubscriptionClosed:
                self.stop()
                raise MediaStreamError from None
            if isinstance(item, EncodedPacket) and not item.init:
                break
        pts = max(self._last_pts + 1, (time.monotonic_ns() - self._origin_ns) * 9 // 100_000)
        self._last_pts = pts
        packet = av.Packet(item.data)
        packet.pts = pts
        packet.time_base = VIDEO_CLOCK
        self.frames += 1
        self.on_sent(pts, item)
        return packet

    def stop(self) -> None:
        super().stop()
        if self.subscription is not None:
            self.subscription.close()

    @property
    def drops(self) -> int:
        return self.subscription.drops if self.subscription is not None else 0


@dataclass(eq=False)
class Peer:
    """One WebRTC viewer of one stream.

    `id` names it in listings (operators see them); `resource` is the secret last part of its URL (`Location`), which
    only whoever made the offer learns: a DELETE there hangs it up. `address` is the client it counts against.
    """

    id: str
    resource: str
    stream_id: str
    address: str
    client: str
    pc: RTCPeerConnection
    track: PassthroughTrack
    principal: Principal
    created: float = field(default_factory=time.monotonic)
    connected_at: float | None = None
    control: RTCDataChannel | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)  # what the data channel's controller ends
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    closing: bool = False

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stream": self.stream_id,
            "client": self.client,
            "state": self.pc.connectionState,
            "age_s": round(time.monotonic() - self.created, 1),
            "frames": self.track.frames,
            "drops": self.track.drops,
            "data_channel": self.control is not None and self.control.readyState == "open",
        }


class WebRtcPeers:
    """Answers offers and keeps the peers: each one's track, data channel, and a watchdog that drops the dead.

    `on_control` serves a peer's data channel (control.transports.datachannel) and returns what ends it; None: no
    data channel is taken."""

    def __init__(self, settings: WebRtcSettings, on_control: ControlChannel | None = None) -> None:
        self.settings = settings
        self._on_control = on_control
        self.peers: dict[str, Peer] = {}
        self._by_resource: dict[str, Peer] = {}
        # The URLs of peers that ended (their client closed, a watchdog dropped them), newest last: a WHEP client that
        # closes its peer before its DELETE (whip-whep's stop() does) gets success for a session already gone.
        self._ended: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self.answered = 0
        self.closed_reasons: dict[str, int] = {}

    def _configuration(self) -> RTCConfiguration:
        # An explicit list, empty by default: None would make aiortc fall back to a public STUN server.
        servers = [
            RTCIceServer(
                urls=server.urls,
                username=server.username,
                credential=server.credential.get_secret_value() if server.credential is not None else None,
            )
            for server in self.settings.ice_servers
        ]
        return RTCConfiguration(iceServers=servers)

    async def answer(self, stream: Stream, offer_sdp: str, address: str, port: int, principal: Principal) -> Peer:
        """Answer an SDP offer from `address` with a peer sending `stream`; raise WebRtcError (with an HTTP status)
        when it cannot. One client holds at most `max_peers_per_client` of the `max_peers` slots (429 past it), so a
        single viewer cannot keep everyone else out until its offers time out."""
        if not self.settings.enabled:
            raise WebRtcError("WebRTC is disabled ([webrtc] enabled = false)", 404)
        held = sum(1 for peer in self.peers.values() if peer.address == address)
        if held >= self.settings.max_peers_per_client:
            raise WebRtcError(f"{held} WebRTC peers from {address} already ([webrtc] max_peers_per_client)", 429)
        if len(self.peers) >= self.settings.max_peers:
            raise WebRtcError(f"{len(self.peers)} WebRTC peers already ([webrtc] max_peers); try later", 503)
        if "m=video" not in offer_sdp:
            raise WebRtcError("the offer has no video m-line: offer to receive video (recvonly)")
        if not _H264_IN_OFFER.search(offer_sdp):
            raise WebRtcError("the offer has no H.264 codec; vergence sends the camera's H.264 as it is", 415)
        peer_id, resource = secrets.token_urlsafe(6), secrets.token_urlsafe(24)
        client = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        pc = RTCPeerConnection(self._configuration())
        track = PassthroughTrack(stream.h264, f"webrtc {client} {peer_id}", lambda pts, item: None)
        peer = Peer(peer_id, resource, stream.id, address, client, pc, track, principal)
        track.on_sent = lambda pts, item: self._send_frame_time(peer, pts, item)
        try:
            sender = add_video(pc, track)  # before the offer: aiortc picks the codecs while it reads the offer
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            if sender.transport is None or sender.transport.state == "closed":
                raise WebRtcError("the offer's video m-line could not be used")
            _ask_for_zero_playout_delay(pc, sender, offer_sdp)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except WebRtcError:
            await pc.close()
            raise
        except Exception as err:  # aiortc's SDP parser raises whatever the text trips it on
            await pc.close()
            raise WebRtcError(f"cannot use this offer: {type(err).__name__}: {err}") from None
        # aiortc's sender turns a receiver's PLI/FIR into a flag for an encoder of its own; ours is the stream's.
        sender._send_keyframe = stream.h264.request_keyframe  # type: ignore[method-assign]
        self._watch_state(peer)
        pc.on("datachannel", lambda channel: self._open_control(peer, channel))
        self.peers[peer.id] = peer
        self._by_resource[peer.resource] = peer
        self.answered += 1
        peer.spawn(self._watchdog(peer))
        log.info("WebRTC peer %s (%s) for %s", peer.id, client, stream.id)
        return peer

    def _watch_state(self, peer: Peer) -> None:
        @peer.pc.on("connectionstatechange")
        def changed() -> None:
            state = peer.pc.connectionState
            if state == "connected" and peer.connected_at is None:
                peer.connected_at = time.monotonic()
                log.info("WebRTC peer %s connected after %.0f ms", peer.id, (peer.connected_at - peer.created) * 1e3)
            elif state in ("failed", "closed"):
                peer.spawn(self.hang_up(peer.id, reason=state))

    async def _watchdog(self, peer: Peer) -> None:
        """Drop a peer that does not connect in time, or that stops sending RTCP reports (gone without a goodbye)."""
        deadline = peer.created + self.settings.connect_timeout_s
        while peer.connected_at is None:
            if time.monotonic() >= deadline:
                await self.hang_up(peer.id, reason="never connected")
                return
            await asyncio.sleep(min(STATS_EVERY_S, deadline - time.monotonic()))
        heard_at, last_report = time.monotonic(), None
        while not peer.closing:
            await asyncio.sleep(STATS_EVERY_S)
            report = await last_receiver_report(peer.pc)
            if report is not None and report != last_report:
                heard_at, last_report = time.monotonic(), report
            elif time.monotonic() - heard_at > self.settings.stall_timeout_s:
                await self.hang_up(peer.id, reason="stalled")
                return

    def _open_control(self, peer: Peer, channel: RTCDataChannel) -> None:
        """A data channel from the peer: the control protocol (served by `on_control`) and frame capture times."""
        if peer.control is not None or self._on_control is None:
            channel.close()
            return
        peer.control = channel
        peer.closers.append(self._on_control(peer, channel))

    def _send_frame_time(self, peer: Peer, pts: int, packet: EncodedPacket) -> None:
        channel = peer.control
        if channel is None or channel.readyState != "open" or channel.bufferedAmount > DATA_CHANNEL_HIGH_WATER:
            return
        _send_json(
            channel,
            {
                "type": "frame",
                "pts": pts,
                "seq": packet.seq,
                "capture_ns": packet.capture_ns,
                "send_ns": time.time_ns(),
            },
        )

    def by_resource(self, resource: str) -> Peer | None:
        """The peer whose URL ends in `resource` (its secret), or None."""
        return self._by_resource.get(resource)

    def ended(self, resource: str) -> tuple[str, str] | None:
        """(stream id, peer id) of a peer that ended lately, whose URL ends in `resource`; None if none did."""
        return self._ended.get(resource)

    async def hang_up(self, peer_id: str, reason: str = "hung up") -> bool:
        """Close one peer and forget it; False when there is no such peer."""
        peer = self.peers.pop(peer_id, None)
        if peer is None or peer.closing:
            return False
        self._by_resource.pop(peer.resource, None)
        self._ended[peer.resource] = (peer.stream_id, peer.id)
        while len(self._ended) > ENDED_KEPT:
            self._ended.popitem(last=False)
        peer.closing = True
        self.closed_reasons[reason] = self.closed_reasons.get(reason, 0) + 1
        log.info("WebRTC peer %s closed: %s", peer.id, reason)
        for close in peer.closers:
            close()
        peer.track.stop()
        await peer.pc.close()
        fail_pending_ice(peer.pc)
        current = asyncio.current_task()
        for task in list(peer.tasks):
            if task is not current:
                task.cancel()
        return True

    async def close(self) -> None:
        """Hang up on everyone (server stop)."""
        for peer_id in list(self.peers):
            await self.hang_up(peer_id, reason="server stopping")

    def describe(self, peers: bool = True) -> dict[str, Any]:
        """Counts, and with `peers` each peer (its id and client address: for operators, not for other viewers)."""
        described = {
            "enabled": self.settings.enabled,
            "peers": len(self.peers),
            "answered": self.answered,
            "closed": dict(self.closed_reasons),
        }
        if peers:
            described["list"] = [peer.describe() for peer in self.peers.values()]
        return described


def add_video(pc: RTCPeerConnection, track: PassthroughTrack) -> RTCRtpSender:
    """Our one video transceiver, H.264 only: the stream's encoder decides the profile, not the peer."""
    transceiver = pc.addTransceiver(track, direction="sendonly")
    codecs = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences([c for c in codecs if c.mimeType in ("video/H264", "video/rtx")])
    return transceiver.sender


async def last_receiver_report(pc: RTCPeerConnection) -> Any:
    """The newest receiver report about our video (packets received, jitter), or None before the first one."""
    for sender in pc.getSenders():
        with contextlib.suppress(Exception):  # a transport closing under us
            stats = await sender.getStats()
            for entry in stats.values():
                if entry.type == "remote-inbound-rtp":
                    return (entry.timestamp, entry.packetsReceived)
    return None


def fail_pending_ice(pc: RTCPeerConnection) -> None:
    """Turn an ICE verdict that a closed connection has not read yet into a failure.

    aioice 0.13: when the check list completes just before close(), connect() reads the verdict afterwards and starts
    consent checks on the closed connection; close() cleared the pairs they would fail on, so that task wakes every 5 s
    forever (measured: one leaked task per peer hung up while ICE was completing).
    """
    transports: list[Any] = [transceiver.sender.transport for transceiver in pc.getTransceivers()]
    transports.append(pc.sctp.transport if pc.sctp is not None else None)
    for dtls in transports:
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        verdicts = getattr(connection, "_check_list_state", None)
        if isinstance(verdicts, asyncio.Queue):
            while not verdicts.empty():
                verdicts.get_nowait()
            verdicts.put_nowait(ICE_FAILED)


class _PlayoutDelayMap(rtp.HeaderExtensionsMap):
    """aiortc's header extension writer, plus a zero playout-delay extension on every packet once negotiated."""

    def __init__(self, extension_id: int) -> None:
        super().__init__()
        self.extension_id = extension_id

    def set(self, values: rtp.HeaderExtensions) -> tuple[int, bytes]:
        profile, packed = super().set(values)
        extensions = list(rtp.unpack_header_extensions(profile, packed)) if packed else []
        return rtp.pack_header_extensions([*extensions, (self.extension_id, ZERO_PLAYOUT_DELAY)])


def _ask_for_zero_playout_delay(pc: RTCPeerConnection, sender: RTCRtpSender, offer_sdp: str) -> None:
    """Tell a browser that offers the playout-delay extension to show frames as soon as they are decoded.

    Without it Chrome holds each frame for its smoothing delay and the display's next refresh: measured 20–53 ms
    capture → presented at 720p30 where the frame had arrived 4–10 ms after capture. aiortc does not know the
    extension, so it is added to the negotiated list (answered with the offer's id) and to the sender's writer; both
    are private to aiortc, and when they are missing the peer just plays with the browser's default delay.
    """
    match = _PLAYOUT_DELAY_IN_OFFER.search(offer_sdp)
    transceiver = next((t for t in pc.getTransceivers() if t.sender is sender), None)
    slot = "_RTCRtpSender__rtp_header_extensions_map"
    if (
        match is None
        or transceiver is None
        or not hasattr(transceiver, "_headerExtensions")
        or not hasattr(sender, slot)
    ):
        return
    extension_id = int(match[1])
    transceiver._headerExtensions.append(RTCRtpHeaderExtensionParameters(id=extension_id, uri=PLAYOUT_DELAY))
    setattr(sender, slot, _PlayoutDelayMap(extension_id))


def _send_json(channel: RTCDataChannel, message: dict[str, Any]) -> None:
    if channel.readyState == "open":
        channel.send(json.dumps(message, separators=(",", ":")))
