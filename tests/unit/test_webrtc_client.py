"""WebRtcClient pairs decoded frames with the data channel's frame times, whatever the RTP timestamp origin."""

from __future__ import annotations

import json
from dataclasses import dataclass

from tests.aio import run
from vergence.client.webrtc import RTP_WRAP, VOTES_TO_LOCK, WebRtcClient


@dataclass
class FakeFrame:
    pts: int


def test_capture_times_pair_with_frames_once_the_rtp_origin_is_agreed() -> None:
    async def main() -> None:
        client = WebRtcClient("http://127.0.0.1:1", "cam0")
        try:
            ice = client.pc.getTransceivers()[0].sender.transport.transport.iceGatherer._connection
            assert (ice.stun_server, ice.turn_server) == (None, None)  # no STUN server unless asked
            # The server's pts follow send time (uneven steps); the receiver counts from its first frame, and the
            # sender's pts may wrap around 2^32 on the way.
            sender_pts = [RTP_WRAP - 4500 + sum(3000 + (k * 37) % 400 for k in range(n)) for n in range(12)]
            for seq, pts in enumerate(sender_pts):
                message = {"type": "frame", "pts": pts, "seq": seq, "capture_ns": 10_000 + seq, "send_ns": 20_000}
                client._on_message(json.dumps(message))
            client._on_message(json.dumps({"type": "pong", "t": 1}))
            frames = [FakeFrame((pts - sender_pts[0]) % RTP_WRAP) for pts in sender_pts]
            found = [client.capture_ns(frame) for frame in frames]
            assert found[: VOTES_TO_LOCK - 1] == [None] * (VOTES_TO_LOCK - 1)  # not trusted on one or two frames
            assert found[VOTES_TO_LOCK - 1 :] == [10_000 + seq for seq in range(VOTES_TO_LOCK - 1, 12)]
            assert client.capture_ns(frames[0]) == 10_000  # once agreed, earlier frames pair too
            assert client.capture_ns(FakeFrame(frames[-1].pts + 1)) is None
            assert client.messages.get_nowait() == {"type": "pong", "t": 1}
        finally:
            await client.pc.close()

    run(main())
