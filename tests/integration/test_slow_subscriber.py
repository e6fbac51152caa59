"""One viewer that stops reading must cost the others nothing, stay within its bound and resume at a keyframe."""

import itertools
import time

import httpx
from websockets.sync.client import connect

from tests.integration.wsclient import VideoClient
from tests.media import H264Decoder
from vergence.media.frame import parse_header

STALL_S = 5.0
BUFFER_PACKETS = 30


def subscriber(stream: dict, port: int) -> dict:
    return next(sub for sub in stream["channels"]["h264"]["subscribers"] if sub["name"].endswith(f":{port}"))


def test_a_stalled_viewer_costs_the_others_no_frame_and_resumes_at_a_keyframe(vergence_server):
    server = vergence_server("--size", "1280x720", env={"VERGENCE_HUB__H264_BUFFER_PACKETS": str(BUFFER_PACKETS)})
    # A tiny receive window and a one-message client queue: once both are full this client reads nothing more.
    import socket

    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow = connect(
        f"{server.ws_url}/ws/video/cam0", sock=sock, max_size=None, max_queue=1, close_timeout=2, legacy=True
    )
    slow_port = sock.getsockname()[1]
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as fast:
        seqs = [fast.next().header.seq]
        peak_queued = 0
        deadline = time.monotonic() + STALL_S
        while time.monotonic() < deadline:
            seqs.append(fast.next().header.seq)
            stats = httpx.get(f"{server.url}/api/stats").json()
            subs = stats["streams"]["cam0"]["channels"]["h264"]["subscribers"]
            assert all(sub["queued"] <= sub["max_packets"] == BUFFER_PACKETS for sub in subs), subs
            peak_queued = max([peak_queued, *(sub["peak"] for sub in subs)])
        stream = httpx.get(f"{server.url}/api/stats").json()["streams"]["cam0"]
        channel = stream["channels"]["h264"]
        fast_drops = [sub["drops"] for sub in channel["subscribers"] if not sub["name"].endswith(f":{slow_port}")]
        assert fast_drops == [0], "the healthy viewer lost a frame in the hub"
        # Every frame the encoder produced reached the healthy viewer: a seq gap is only ever a frame the encoder
        # itself skipped because the machine was busy, never one taken away by the stalled viewer.
        gaps = sum(later - earlier - 1 for earlier, later in itertools.pairwise(seqs))
        assert gaps <= stream["encoder_skipped_frames"]["h264"], (gaps, stream["encoder_skipped_frames"])
        assert channel["drops"] > 0, "the stalled viewer's overflow must be counted"
        assert subscriber(stream, slow_port)["drops"] == channel["drops"]
        assert peak_queued <= BUFFER_PACKETS

        # The stalled viewer reads again: what it gets is contiguous up to a gap, and the first packet after the gap
        # is a keyframe, so everything decodes.
        decoder = H264Decoder()
        received = []
        while True:
            data = slow.recv(timeout=5)
            if isinstance(data, str):
                continue
            header, payload = parse_header(data)
            decoder.decode(payload)
            received.append((header.seq, header.keyframe))
            # A hub drop, not a frame the busy encoder skipped (which nobody got): the healthy viewer had what is missing.
            if len(received) > 1 and set(range(received[-2][0] + 1, received[-1][0])) & set(seqs):
                break
        assert received[-1][1], f"after the gap the stream resumed at seq {received[-1][0]} without a keyframe"
        for _ in range(10):
            header, payload = parse_header(slow.recv(timeout=5))
            assert len(decoder.decode(payload)) == 1
    slow.close()
