"""The video WebSocket end to end: a real server, real H.264, decoded by PyAV as an independent client."""

import time

import av
import av.logging
import httpx
import pytest

from tests.integration.wsclient import VideoClient
from tests.media import H264Decoder, read_timecode
from vergence.media import h264


@pytest.fixture
def server(shared_server):
    return shared_server


def test_init_then_header_framed_access_units_that_decode(server):
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as client:
        first = client.next()
        assert client.init["type"] == "init" and client.init["version"] == 1
        assert (client.init["width"], client.init["height"], client.init["fps"]) == (640, 360, 30.0)
        assert client.init["codec"] == h264.codec_string(first.payload)
        assert client.init["codec"].startswith("avc1.42")  # constrained baseline: decodable by every browser
        assert first.header.keyframe and h264.NAL_SPS in h264.nal_types(first.payload)
        decoder = H264Decoder()
        decoded = 0
        for _ in range(30):
            message = client.next() if decoded else first
            decoded += len(decoder.decode(message.payload))
        assert decoded == 30
    listed = httpx.get(f"{server.url}/api/streams").json()
    assert listed[0]["id"] == "cam0" and listed[0]["codec"] == client.init["codec"]


def test_a_client_joining_mid_stream_decodes_its_very_first_message(server):
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as early:
        for _ in range(20):  # well into the GOP
            early.next()
        with VideoClient.open(server.ws_url, "/ws/video/cam0") as late, av.logging.Capture() as logs:
            first = late.next()
            frames = H264Decoder().decode(first.payload)
            assert len(frames) == 1, "the first message must decode to a picture on its own"
            assert first.header.keyframe
        problems = [line for line in logs if line[0] <= av.logging.WARNING]
        assert not problems, problems


def test_raw_messages_are_whole_access_units(server):
    with VideoClient.open(server.ws_url, "/ws/video/cam0?raw=1") as client:
        decoder = H264Decoder()
        first = client.next(raw=True)
        assert client.init is None  # bare Annex-B: no JSON at all
        assert first.payload.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))
        assert h264.is_keyframe(first.payload)
        for index in range(40):
            message = first if index == 0 else client.next(raw=True)
            assert len(decoder.decode(message.payload)) == 1, f"message {index} is not exactly one access unit"


def test_time_code_in_decoded_frames_matches_the_header_within_a_millisecond(server):
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as client:
        decoder = H264Decoder()
        checked = 0
        for _ in range(30):
            message = client.next()
            for frame in decoder.decode(message.payload):
                code = read_timecode(frame)
                assert code is not None
                assert abs(code - message.header.capture_ns) < 1_000_000
                checked += 1
        assert checked == 30


def test_header_times_are_ordered_and_recent(server):
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as client:
        seqs = []
        for _ in range(20):
            message = client.next()
            now = time.time_ns()
            assert message.header.capture_ns <= message.header.send_ns <= now
            seqs.append(message.header.seq)
        assert seqs == sorted(seqs)


def test_unknown_stream_is_refused(server):
    from websockets.exceptions import ConnectionClosed

    with VideoClient.open(server.ws_url, "/ws/video/nope") as client, pytest.raises(ConnectionClosed) as closed:
        client.next(timeout=5)
    assert closed.value.rcvd.code == 4404
    assert httpx.get(f"{server.url}/snapshot/nope.jpg").status_code == 404
