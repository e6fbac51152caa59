"""One viewer that stops reading must cost the others nothing, stay within its bound and resume at a keyframe."""

import itertools
import socket
import threading
import time

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.integration.wsclient import VideoClient
from tests.media import H264Decoder
from vergence.media.frame import parse_header

STALL_S = 5.0
BUFFER_PACKETS = 30


def subscriber(stream: dict, port: int) -> dict:
    return next(sub for sub in stream["channels"]["h264"]["subscribers"] if sub["name"].endswith(f":{port}"))


class HealthyViewer:
    """Reads every packet in a thread of its own for the whole test, so what it got covers any gap the stalled viewer
    sees later, however busy the machine (read in the test's own loop it fell seconds behind under load)."""

    def __init__(self, client: VideoClient) -> None:
        self.client = client
        self.seqs: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> "HealthyViewer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                self.seqs.append(self.client.next().header.seq)
        except (ConnectionClosed, TimeoutError):
            pass

    def wait_past(self, seq: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not (self.seqs and self.seqs[-1] >= seq):
            assert time.monotonic() < deadline, f"the healthy viewer never reached seq {seq}: {self.seqs[-5:]}"
            time.sleep(0.01)  # polling a list another thread appends to


def test_a_stalled_viewer_costs_the_others_no_frame_and_resumes_at_a_keyframe(vergence_server):
    # A stall it comes back from: well within [hub] viewer_stall_s, however long the machine makes the test take.
    env = {"VERGENCE_HUB__H264_BUFFER_PACKETS": str(BUFFER_PACKETS), "VERGENCE_HUB__VIEWER_STALL_S": "300"}
    server = vergence_server("--size", "1280x720", env=env)
    # A tiny receive window and a one-message client queue: once both are full this client reads nothing more.
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow = connect(
        f"{server.ws_url}/ws/video/cam0", sock=sock, max_size=None, max_queue=1, close_timeout=2, legacy=True
    )
    slow_port = sock.getsockname()[1]
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as client, HealthyViewer(client) as fast:
        fast.wait_past(0)
        peak_queued = 0
        keyframe_requests = []
        deadline = time.monotonic() + STALL_S
        while time.monotonic() < deadline:
            stats = httpx.get(f"{server.url}/api/stats").json()
            keyframe_requests.append(stats["streams"]["cam0"]["channels"]["h264"]["keyframe_requests"])
            subs = stats["streams"]["cam0"]["channels"]["h264"]["subscribers"]
            assert all(sub["queued"] <= sub["max_packets"] == BUFFER_PACKETS for sub in subs), subs
            peak_queued = max([peak_queued, *(sub["peak"] for sub in subs)])
        seqs = list(fast.seqs)
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
        # Both joined (and asked for their first keyframe) before the loop; a viewer that stopped reading asks for
        # none however often it overflows: everyone would receive them.
        assert keyframe_requests[-1] == keyframe_requests[0], keyframe_requests

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
            if len(received) > 1 and header.seq > received[-2][0] + 1:
                # A hub drop, not frames the busy encoder skipped (which nobody got): the healthy viewer had some.
                fast.wait_past(header.seq)
                if set(range(received[-2][0] + 1, header.seq)) & set(fast.seqs):
                    break
        assert received[-1][1], f"after the gap the stream resumed at seq {received[-1][0]} without a keyframe"
        for _ in range(10):
            header, payload = parse_header(slow.recv(timeout=5))
            assert len(decoder.decode(payload)) == 1
    slow.close()


def test_a_viewer_that_takes_nothing_for_viewer_stall_s_is_cut_and_the_encoder_stops(vergence_server):
    """A client that keeps its connection but never reads again (a frozen tab; here a socket nobody reads, with a tiny
    window) would hold a task, a file descriptor and the running encoder for good: it is cut after [hub]
    viewer_stall_s, and with nobody else watching the encoder stops."""
    server = vergence_server(
        "--size", "1280x720", env={"VERGENCE_HUB__VIEWER_STALL_S": "2", "VERGENCE_HUB__ENCODER_LINGER_S": "0"}
    )
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled = connect(f"{server.ws_url}/ws/video/cam0", sock=sock, max_size=None, max_queue=1, legacy=True)
    port = sock.getsockname()[1]
    try:

        def h264() -> dict:
            return httpx.get(f"{server.url}/api/stats").json()["streams"]["cam0"]["channels"]["h264"]

        joined_at = time.monotonic()
        while not any(sub["name"].endswith(f":{port}") for sub in h264()["subscribers"]):
            assert time.monotonic() < joined_at + 20, f"the viewer never joined: {h264()}"
            time.sleep(0.05)  # poll interval of a deadline loop
        while h264()["subscribers"] or h264()["running"]:
            assert time.monotonic() < joined_at + 20, f"the stalled viewer was never cut: {h264()}"
            time.sleep(0.05)  # poll interval of a deadline loop
        # Not before its connection had taken nothing for 2 s (it took the first frames until its window filled).
        assert time.monotonic() - joined_at >= 2
        assert f"ws 127.0.0.1:{port} took nothing for 2 s: cut" in server.log()
        assert httpx.get(f"{server.url}/api/stats").json()["connections"]["open"] == 1  # this request's own
    finally:
        stalled.close()
        sock.close()
