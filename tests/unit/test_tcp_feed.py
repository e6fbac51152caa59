"""The TCP JPEG feed's pure parts and its per-client mailbox: handshake validation, frame header packing, scaling, the
rate limit, and a client that stops reading keeping only the newest frame."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.aio import run
from vergence.client.tcp import HEADER, MAGIC, TcpFeedError, decode, pack_header, parse_header, request_line
from vergence.encoders.jpeg import ScaledJpegEncoder
from vergence.media.frame import EncodedPacket, Frame
from vergence.media.i420 import scale_frame
from vergence.outputs.tcp import (
    FeedClient,
    FeedRequest,
    HandshakeError,
    StreamShape,
    Variant,
    VergenceWire,
    parse_request,
)

STREAMS = {"cam0": StreamShape(640, 360, 30.0), "cam1": StreamShape(320, 240, 15.0)}


def parse(line: bytes | dict[str, Any]) -> FeedRequest:
    raw = line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n"
    return parse_request(raw, STREAMS, default_quality=80)


# --- handshake -------------------------------------------------------------------------------------------------------


def test_defaults_are_the_first_streams_size_and_rate_at_the_configured_quality():
    assert parse({"version": 1}) == FeedRequest("cam0", 640, 360, 80, 30.0)
    assert parse({"version": 1, "stream": "cam1"}) == FeedRequest("cam1", 320, 240, 80, 15.0)


def test_every_field_is_taken_as_asked():
    request = parse({"version": 1, "stream": "cam0", "quality": 70, "width": 320, "height": 240, "fps": 7.5})
    assert request == FeedRequest("cam0", 320, 240, 70, 7.5)
    assert request.reply() == {
        "ok": True,
        "version": 1,
        "stream": "cam0",
        "width": 320,
        "height": 240,
        "quality": 70,
        "fps": 7.5,
    }


def test_one_side_keeps_the_streams_aspect_rounded_to_even():
    assert (parse({"version": 1, "width": 320}).width, parse({"version": 1, "width": 320}).height) == (320, 180)
    assert parse({"version": 1, "width": 100}).height == 56  # 56.25
    assert parse({"version": 1, "height": 90}).width == 160
    assert parse({"version": 1, "width": 16}).height == 16  # 9 would be under the minimum


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"\xff\xfe\n", "not JSON"),
        (b"hello\n", "not JSON"),
        (b'"cam0"\n', "must be a JSON object"),
        ({}, "version must be 1, got null"),
        ({"version": 2}, "version must be 1, got 2"),
        ({"version": "1"}, 'version must be an integer, got "1"'),
        ({"version": 1, "stream": "cam9"}, 'unknown stream "cam9"; streams: cam0, cam1'),
        ({"version": 1, "stream": None}, "unknown stream null"),
        ({"version": 1, "stream": 0}, "unknown stream 0"),
        ({"version": 1, "quality": 0}, "quality = 0 must be within 1 … 100"),
        ({"version": 1, "quality": 101}, "quality = 101 must be within 1 … 100"),
        ({"version": 1, "quality": 50.0}, "quality must be an integer, got 50.0"),
        ({"version": 1, "quality": True}, "quality must be an integer, got true"),
        ({"version": 1, "quality": None}, "quality must be an integer, got null"),
        ({"version": 1, "width": 641}, "width = 641 must be even and within 16 … 640"),
        ({"version": 1, "width": 642}, "width = 642 must be even and within 16 … 640"),
        ({"version": 1, "width": 14}, "width = 14 must be even and within 16 … 640"),
        ({"version": 1, "height": 362}, "height = 362 must be even and within 16 … 360"),
        ({"version": 1, "width": "320"}, 'width must be an integer, got "320"'),
        ({"version": 1, "fps": 0}, "fps = 0 must be a number within 0 (excluded) … 30"),
        ({"version": 1, "fps": -5}, "fps = -5 must be a number"),
        ({"version": 1, "fps": 31}, "fps = 31 must be a number"),
        ({"version": 1, "stream": "cam1", "fps": 20}, "fps = 20 must be a number within 0 (excluded) … 15"),
        ({"version": 1, "fps": "5"}, 'fps = "5" must be a number'),
        ({"version": 1, "fps": False}, "fps = false must be a number"),
        (b'{"version": 1, "fps": NaN}\n', "fps = NaN must be a number"),
        (
            {"version": 1, "size": "640x360"},
            "unknown key 'size'; keys: fps, height, quality, stream, token, version, width",
        ),
    ],
)
def test_a_bad_request_is_refused_with_a_reason(line, reason):
    with pytest.raises(HandshakeError) as refused:
        parse(line)
    assert reason in str(refused.value)


# --- frame header ----------------------------------------------------------------------------------------------------


def test_header_is_28_big_endian_bytes_in_protocol_order():
    header = pack_header(seq=7, capture_ns=0x0102030405060708, width=320, height=180, length=0xA0B0C0D)
    assert HEADER.size == len(header) == 28
    assert header[:4] == MAGIC == b"VRGJ"
    assert header[4:8] == bytes([1, 0, 0, 28])  # version, flags, header length
    assert header[8:12] == (7).to_bytes(4, "big")
    assert header[12:20] == bytes.fromhex("0102030405060708")
    assert header[20:24] == (320).to_bytes(2, "big") + (180).to_bytes(2, "big")
    assert header[24:28] == bytes.fromhex("0A0B0C0D")


def test_header_round_trips_and_seq_wraps_at_32_bits():
    parsed = parse_header(pack_header(2**32 + 5, 123, 640, 360, 99))
    assert parsed == {
        "version": 1,
        "flags": 0,
        "header_len": 28,
        "seq": 5,
        "capture_ns": 123,
        "width": 640,
        "height": 360,
        "length": 99,
    }


@pytest.mark.parametrize(
    "data",
    [b"VRGJ" + bytes(10), b"XXXX" + bytes(24), b"VRGJ" + bytes([2, 0, 0, 28]) + bytes(20)],
    ids=["short", "magic", "version"],
)
def test_a_header_this_client_cannot_read_raises(data):
    with pytest.raises(TcpFeedError):
        parse_header(data)


def test_request_line_is_one_json_line_without_unset_fields():
    line = request_line(stream="cam0", quality=None, width=320)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"version": 1, "stream": "cam0", "width": 320}
    assert parse(line) == FeedRequest("cam0", 320, 180, 80, 30.0)


# --- scaling ---------------------------------------------------------------------------------------------------------


def i420_frame(width: int, height: int) -> Frame:
    luma = np.tile(np.linspace(16, 235, width, dtype=np.uint8), (height, 1))
    chroma = np.full((height // 2) * (width // 2) * 2, 90, np.uint8)
    image = np.concatenate([luma.reshape(-1), chroma]).reshape(height * 3 // 2, width)
    return Frame(image, "yuv420p", width, height, seq=3, pts=9000, capture_ns=42)


def test_scaling_an_i420_frame_keeps_its_planes_and_its_picture():
    frame = i420_frame(640, 360)
    scaled = scale_frame(frame, 320, 180)
    assert (scaled.width, scaled.height, scaled.pix_fmt, scaled.image.shape) == (320, 180, "yuv420p", (270, 320))
    assert (scaled.seq, scaled.pts, scaled.capture_ns) == (3, 9000, 42)
    assert abs(float(scaled.image[:180].mean()) - float(frame.image[:360].mean())) < 1
    assert np.all(scaled.image[180:] == 90)
    assert scale_frame(frame, 640, 360) is frame


def test_scaling_a_bgr_frame():
    frame = Frame(np.full((240, 320, 3), 200, np.uint8), "bgr24", 320, 240, seq=1, pts=0, capture_ns=1)
    scaled = scale_frame(frame, 160, 120)
    assert scaled.image.shape == (120, 160, 3) and np.all(scaled.image == 200)


def test_scaled_encoder_makes_a_jpeg_of_its_size_and_quality():
    encoder = ScaledJpegEncoder("cam0", 320, 180, 50, sink=lambda packet: None)
    (packet,) = encoder.encode(i420_frame(640, 360))
    assert (packet.width, packet.height, packet.seq, packet.capture_ns, packet.keyframe) == (320, 180, 3, 42, True)
    assert decode(packet.data).shape == (180, 320, 3)
    assert encoder.format == "jpeg-320x180-q50"


# --- clients and variants --------------------------------------------------------------------------------------------


class StalledWriter:
    """A StreamWriter whose peer stopped reading: drain() waits until released."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.release = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.written.append(data)

    async def drain(self) -> None:
        await self.release.wait()


def client(fps: float = 30.0, stream_fps: float = 30.0, writer: Any = None) -> FeedClient:
    request = FeedRequest("cam0", 640, 360, 80, fps)
    return FeedClient(request, "127.0.0.1:1", writer or StalledWriter(), stream_fps)


def test_rate_limit_sends_the_asked_rate_from_a_jittery_camera():
    feed = client(fps=5)
    rng = np.random.default_rng(7)
    # 30 fps for 10 s, each capture up to 3 ms early or late
    captures = [round((i / 30 + rng.uniform(-0.003, 0.003)) * 1e9) + 10**18 for i in range(300)]
    sent = 0
    for capture_ns in captures:
        before = feed.drops
        feed.offer(b"frame", capture_ns)
        sent += feed._pending is not None
        feed._pending = None  # as if written at once
        assert feed.drops == before
    assert sent == 50


def test_a_client_that_stops_reading_keeps_only_the_newest_frame():
    async def scenario() -> tuple[list[bytes], int, int]:
        writer = StalledWriter()
        feed = client(writer=writer)
        sender = asyncio.create_task(feed.send_forever())
        feed.offer(b"frame 0", 10**18)
        await asyncio.sleep(0)  # the sender writes frame 0 and waits in drain()
        for n in range(1, 10):
            feed.offer(f"frame {n}".encode(), 10**18 + n * 33_333_333)
        writer.release.set()
        while feed.frames < 2:
            await asyncio.sleep(0)
        sender.cancel()
        return writer.written, feed.frames, feed.drops

    written, frames, drops = run(scenario())
    assert written == [b"frame 0", b"frame 9"]
    assert (frames, drops) == (2, 8)


def test_a_variant_frames_each_jpeg_once_for_all_its_clients():
    stream = SimpleNamespace(id="cam0")
    request = FeedRequest("cam0", 320, 180, 50, 30.0)
    variant = Variant(stream, request, loop=None, own=False, wire=VergenceWire(80))  # type: ignore[arg-type]
    clients = [client() for _ in range(3)]
    variant.clients.update(clients)
    packet = EncodedPacket(data=b"\xff\xd8jpeg", keyframe=True, seq=11, pts=0, capture_ns=10**18, width=320, height=180)
    variant.publish(packet)
    framed = {id(feed._pending) for feed in clients}
    assert len(framed) == 1, "the same bytes object for every client"
    message = clients[0]._pending
    assert message is not None
    header = parse_header(message)
    assert (header["seq"], header["width"], header["height"], header["length"]) == (11, 320, 180, len(packet.data))
    assert message[HEADER.size :] == packet.data
    assert variant.describe()["frames"] == 1
