"""UdpOutput on a real hub channel fed with H.264 made in memory, sending to sockets of the test on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.aio import run
from tests.media import encode_h264
from tests.support.udp_receiver import free_udp_port
from vergence.config import UdpOutputSettings
from vergence.errors import CommandError
from vergence.hub import Channel
from vergence.media import sdp
from vergence.media.frame import EncodedPacket
from vergence.media.rtp import is_rtcp, rtp_fields
from vergence.outputs.udp import UdpOutput

GOP = 4
UNITS = encode_h264(frames=4 * GOP, width=320, height=240, gop=GOP)
STALE = encode_h264(frames=GOP, width=160, height=120, gop=GOP)  # another size: its SPS tells it apart
TOO_LONG = "a" * 64 + ".example"  # a DNS label over 63 bytes: refused before any lookup leaves the machine


class FakeProducer:
    def __init__(self) -> None:
        self.keyframes_requested = 0

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def request_keyframe(self) -> None:
        self.keyframes_requested += 1


@dataclass
class FakeInfo:
    width: int = 320
    height: int = 240
    fps: float = 30.0


@dataclass
class FakeStream:
    producer: FakeProducer = field(default_factory=FakeProducer)
    info: FakeInfo = field(default_factory=FakeInfo)

    def __post_init__(self) -> None:
        self.h264 = Channel("cam0", "h264", self.producer, cache_gop=True)


class FakeVergence:
    def __init__(self) -> None:
        self.streams = {"cam0": FakeStream()}


class Feed:
    """Publishes the in-memory H.264 on the channel, one frame at a time, looping over the GOPs."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.n = 0

    def frame(self) -> EncodedPacket:
        data = UNITS[self.n % len(UNITS)]
        keyframe = self.n % GOP == 0
        packet = EncodedPacket(
            data=data,
            keyframe=keyframe,
            config=keyframe,
            seq=self.n,
            pts=self.n * 3000,
            capture_ns=time.time_ns(),
        )
        self.n += 1
        self.channel.publish(packet)
        return packet

    async def until(self, condition, timeout_s: float = 20.0) -> None:
        """Publish a frame every 10 ms until `condition()` holds."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "condition not met before the deadline"
            self.frame()
            await asyncio.sleep(0.01)  # the frame interval of this feed, not a wait for the output


def receiver(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> list[bytes]:
    datagrams = []
    while True:
        try:
            datagrams.append(sock.recv(65536))
        except BlockingIOError:
            return datagrams


def settings(port: int, sdp_path: Path | None = None, **extra) -> UdpOutputSettings:
    return UdpOutputSettings(id="udp0", stream="cam0", host="127.0.0.1", port=port, sdp_path=sdp_path, **extra)


def test_start_sends_rtp_from_a_fresh_keyframe_and_writes_the_sdp(tmp_path):
    port = free_udp_port()
    sdp_path = tmp_path / "out" / "cam0.sdp"

    async def scenario():
        vergence = FakeVergence()
        stream = vergence.streams["cam0"]
        feed = Feed(stream.h264)
        for n, data in enumerate(STALE):  # a cached GOP from before the start: it must not be replayed
            keyframe = n == 0
            stream.h264.publish(
                EncodedPacket(data=data, keyframe=keyframe, config=keyframe, seq=n, pts=n, capture_ns=1)
            )
        output = UdpOutput(settings(port, sdp_path, pace_mbps=0), vergence.streams)
        assert output.sdp() is None and output.describe()["running"] is False
        with receiver(port) as rtp, receiver(port + 1) as rtcp:
            await output.start()
            assert stream.producer.keyframes_requested >= 1
            received: list[bytes] = []
            await feed.until(lambda: len(received.extend(drain(rtp)) or received) >= 20)
            reports = drain(rtcp)
            description = output.describe()
            await output.stop()
            drain(rtp)  # sent before stop returned (loopback delivers at once)
            assert not stream.h264.subscribers  # stopped: nothing left to hand the output a frame
            feed.frame()
            assert drain(rtp) == []
        assert all(not is_rtcp(data) for data in received) and reports and all(is_rtcp(data) for data in reports)
        fresh_sps, stale_sps = sdp.parameter_set_nals(UNITS[0])[0], sdp.parameter_set_nals(STALE[0])[0]
        assert fresh_sps in received[0]  # the stream starts with SPS/PPS of a keyframe published after the start
        assert not any(stale_sps in data for data in received)
        seqs = [rtp_fields(data)[0] for data in received]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]
        assert description["running"] and description["frames"] >= 1 and description["packets"] >= 20
        assert description["datagram_max_bytes"] <= 1200 and description["sdp_url"] == "/api/outputs/udp0.sdp"
        assert output.describe()["running"] is False and output.enabled is False
        text = sdp_path.read_bytes().decode()  # CRLF line ends, as RFC 4566 asks
        assert text == output.sdp()
        assert f"m=video {port} RTP/AVP 96\r\n" in text and "c=IN IP4 127.0.0.1\r\n" in text
        assert f"a=ssrc:{rtp_fields(received[0])[2]} " in text  # the SSRC the packets carry

    run(scenario())


def test_destination_change_moves_datagrams_and_rewrites_the_sdp(tmp_path):
    old_port, new_port = free_udp_port(), free_udp_port()
    sdp_path = tmp_path / "cam0.sdp"

    async def scenario():
        vergence = FakeVergence()
        stream = vergence.streams["cam0"]
        feed = Feed(stream.h264)
        output = UdpOutput(settings(old_port, sdp_path), vergence.streams)
        with receiver(old_port) as old, receiver(new_port) as new:
            await output.start()
            await feed.until(lambda: bool(drain(old)))
            version_before = sdp_path.read_text().splitlines()[1]
            requested = stream.producer.keyframes_requested
            reply = await output.set_destination(None, new_port)
            assert reply["port"] == new_port and reply["host"] == "127.0.0.1"
            assert stream.producer.keyframes_requested > requested  # the new receiver gets a picture at once
            moved: list[bytes] = []
            await feed.until(lambda: len(moved.extend(drain(new)) or moved) >= 5)
            drain(old)  # anything sent before the change
            for _ in range(5):
                feed.frame()
            await feed.until(lambda: len(moved.extend(drain(new)) or moved) >= 30)
            assert drain(old) == []
            await output.stop()
        text = sdp_path.read_text()
        assert f"m=video {new_port} RTP/AVP 96" in text
        assert text.splitlines()[1] != version_before  # a changed session has a new o= version

    run(scenario())


def test_protocol_switch_restarts_only_the_muxer_and_rtp_continues_its_numbering():
    port = free_udp_port()

    async def scenario():
        vergence = FakeVergence()
        stream = vergence.streams["cam0"]
        feed = Feed(stream.h264)
        output = UdpOutput(settings(port), vergence.streams)
        with receiver(port) as sock:
            await output.start()
            first: list[bytes] = []
            await feed.until(lambda: len(first.extend(drain(sock)) or first) >= 10)
            output.set_protocol("mpegts")
            assert output.describe()["protocol"] == "mpegts" and output.sdp() is None
            ts: list[bytes] = []
            await feed.until(lambda: any(data[0] == 0x47 for data in ts.extend(drain(sock)) or ts))
            ts = [data for data in ts if data[0] == 0x47]
            await feed.until(lambda: len(ts.extend(drain(sock)) or ts) >= 20)
            assert all(len(data) % 188 == 0 and len(data) <= 1316 for data in ts)
            last_rtp = [data for data in first if data[0] >> 6 == 2 and not is_rtcp(data)][-1]
            output.set_protocol("rtp")
            again: list[bytes] = []

            def rtp_again() -> bool:
                again.extend(data for data in drain(sock) if data[0] != 0x47 and not is_rtcp(data))
                return len(again) >= 5

            await feed.until(rtp_again)
            await output.stop()
        # RTP resumed where it stopped: the same SSRC, the next sequence number, a later timestamp.
        seq, ts_before, ssrc = rtp_fields(last_rtp)
        # Frames muxed after the last one the test read may have gone out too; the numbering has no gap or restart.
        resumed = rtp_fields(again[0])
        assert resumed[2] == ssrc
        assert 0 < (resumed[0] - seq) & 0xFFFF < 1000
        assert 0 < (resumed[1] - ts_before) & 0xFFFFFFFF < 90_000 * 30
        with pytest.raises(CommandError, match="protocol"):
            output.set_protocol("rtmp")

    run(scenario())


def test_host_names_resolve_and_one_that_does_not_is_refused_with_the_destination_kept():
    port = free_udp_port()

    async def scenario():
        output = UdpOutput(settings(port), FakeVergence().streams)
        described = await output.set_destination("localhost", None)  # from /etc/hosts, IPv4 preferred
        assert (described["host"], described["address"], described["port"]) == ("localhost", "127.0.0.1", port)
        with pytest.raises(CommandError, match="does not resolve"):
            await output.set_destination(TOO_LONG, port + 2)
        assert (output.describe()["host"], output.describe()["port"]) == ("localhost", port)
        bad = UdpOutput(settings(port).model_copy(update={"host": TOO_LONG}), FakeVergence().streams)
        with pytest.raises(CommandError, match="does not resolve"):
            await bad.start()
        assert not bad.running and "does not resolve" in bad.describe()["last_error"]

    run(scenario())
