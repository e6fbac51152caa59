"""Both ways a video packet reaches a viewer: written straight to the connection (the default: websockets-sansio with
`[server] direct_send`) and through ASGI (`direct_send = false`, or any other `[server] ws`); and no compression,
whatever the client offers."""

import pytest
from websockets.sync.client import connect

from tests.integration.wsclient import VideoClient
from tests.media import H264Decoder
from vergence.media.frame import parse_header


@pytest.mark.parametrize(
    ("ws", "direct"), [("websockets-sansio", "true"), ("websockets-sansio", "false"), ("websockets", "true")]
)
def test_viewers_get_decodable_video_through_either_send_path(vergence_server, ws, direct):
    server = vergence_server(
        "--size", "320x180", env={"VERGENCE_SERVER__WS": ws, "VERGENCE_SERVER__DIRECT_SEND": direct}
    )
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as early:
        for _ in range(10):  # mid-GOP, so the next viewer starts with the cached GOP, then goes live
            early.next()
        with VideoClient.open(server.ws_url, "/ws/video/cam0") as late:
            decoder = H264Decoder()
            seqs = []
            for _ in range(60):
                message = late.next()
                seqs.append(message.header.seq)
                assert len(decoder.decode(message.payload)) == 1
            assert late.init is not None and late.init["codec"]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # in order, none twice


def test_permessage_deflate_offered_like_a_browser_is_declined(shared_server):
    # The websockets client offers permessage-deflate by default, as Chromium does.
    with connect(f"{shared_server.ws_url}/ws/video/cam0", max_size=None, open_timeout=10) as connection:
        assert connection.response.headers.get("Sec-WebSocket-Extensions") is None
        while isinstance(message := connection.recv(timeout=10), str):
            pass
        header, payload = parse_header(message)
        assert header.keyframe and len(H264Decoder().decode(payload)) == 1
