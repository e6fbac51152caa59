"""PassthroughTrack: the stream's access units handed to aiortc as packets, in order, on RTP's clock."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import pytest
from aiortc.mediastreams import MediaStreamError

from tests.aio import run
from vergence.hub import Channel
from vergence.media.frame import EncodedPacket
from vergence.outputs.webrtc import MAX_QUEUED_PACKETS, PassthroughTrack


class FakeProducer:
    def __init__(self) -> None:
        self.keyframes_requested = 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def request_keyframe(self) -> None:
        self.keyframes_requested += 1


def packet(seq: int, keyframe: bool = False, init: bool = False) -> EncodedPacket:
    return EncodedPacket(
        data=bytes([0, 0, 0, 1, 0x65 if keyframe else 0x41, seq % 256]),
        keyframe=keyframe,
        config=keyframe,
        seq=seq,
        pts=seq * 3000,
        capture_ns=1_000_000 + seq,
        init=init,
    )


def h264_channel(max_cached_packets: int = 90) -> Channel:
    return Channel("cam0", "h264", FakeProducer(), cache_gop=True, max_cached_packets=max_cached_packets)


def test_packets_pass_through_in_order_with_rising_pts_and_init_packets_skipped() -> None:
    async def main() -> None:
        channel = h264_channel()
        sent: list[tuple[int, int]] = []
        track = PassthroughTrack(channel, "test", lambda pts, item: sent.append((pts, item.seq)))
        first = await _recv_after(track, channel, [packet(0, keyframe=True)])
        channel.publish(packet(0, init=True))  # an init segment is no picture: never handed to aiortc
        for seq in range(1, 6):
            channel.publish(packet(seq))
        received = [first] + [await track.recv() for _ in range(5)]
        assert [bytes(p)[-1] for p in received] == [0, 1, 2, 3, 4, 5]
        assert all(p.time_base == Fraction(1, 90_000) for p in received)
        pts = [p.pts for p in received]
        # A burst that arrives at once (a joiner's catch-up) still gets strictly rising timestamps.
        assert all(b > a for a, b in zip(pts, pts[1:], strict=False))
        assert sent == list(zip(pts, range(6), strict=True))
        assert track.frames == 6
        track.stop()
        with pytest.raises(MediaStreamError):
            await track.recv()
        assert not channel.subscribers

    run(main())


def test_a_joiner_gets_the_whole_cached_gop_even_when_it_is_longer_than_the_peer_queue() -> None:
    async def main() -> None:
        channel = h264_channel(max_cached_packets=90)
        gop = MAX_QUEUED_PACKETS + 15
        for seq in range(gop):
            channel.publish(packet(seq, keyframe=seq == 0))
        track = PassthroughTrack(channel, "late joiner", lambda pts, item: None)
        first = await asyncio.wait_for(track.recv(), 2)  # a cut replay would wait for the next keyframe
        rest = [await track.recv() for _ in range(gop - 1)]
        assert bytes(first)[4] == 0x65, "the first packet a joiner sends is the cached keyframe"
        assert [bytes(p)[-1] for p in rest] == list(range(1, gop))
        assert track.drops == 0
        track.stop()

    run(main())


async def _recv_after(track: PassthroughTrack, channel: Channel, packets: list[EncodedPacket]) -> object:
    """Start `track.recv()` (which subscribes), then publish `packets`, and return what it received."""
    receiving = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)  # let recv() subscribe before anything is published
    assert channel.subscribers
    for item in packets:
        channel.publish(item)
    return await receiving


def test_the_playout_delay_writer_adds_zero_delay_beside_aiortcs_extensions():
    from aiortc import rtp
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

    from vergence.outputs.webrtc import PLAYOUT_DELAY, _PlayoutDelayMap

    writer = _PlayoutDelayMap(14)
    writer.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid")]
        )
    )
    profile, packed = writer.set(rtp.HeaderExtensions(mid="0"))
    assert list(rtp.unpack_header_extensions(profile, packed)) == [(1, b"0"), (14, b"\x00\x00\x00")]
    assert PLAYOUT_DELAY.endswith("/playout-delay")
