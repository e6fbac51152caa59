"""The ZeroMQ client helper against in-process sockets: decoding, newest-per-stream conflation, and a REQ socket that
recovers from a reply that never came."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import zmq

from vergence.client.zmq import ZmqControl, ZmqFrames, decode_image

TIMEOUT_S = 10.0


def test_decode_image_of_raw_and_jpeg_payloads():
    image = np.random.default_rng(1).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    raw = decode_image({"format": "raw", "shape": [4, 6, 3], "dtype": "uint8"}, image.tobytes())
    assert np.array_equal(raw, image)
    flat = np.full((16, 24, 3), (10, 120, 240), np.uint8)
    ok, jpeg = cv2.imencode(".jpg", flat)
    assert ok
    decoded = decode_image({"format": "jpeg"}, jpeg.tobytes())
    assert decoded.shape == (16, 24, 3) and np.abs(decoded.astype(int) - flat).max() <= 3
    with pytest.raises(ValueError, match="not a decodable JPEG"):
        decode_image({"format": "jpeg", "seq": 3, "stream": "cam0"}, b"nope")


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def message(stream: str, seq: int) -> list[bytes]:
    return [stream.encode(), json.dumps({"stream": stream, "seq": seq}).encode(), b"payload"]


def connected(pub: zmq.Socket, frames: ZmqFrames, streams: tuple[str, ...]) -> None:
    """Publish probes until the subscriber has one of each stream (PUB/SUB subscriptions take effect asynchronously)."""
    pending = set(streams)
    deadline = time.monotonic() + TIMEOUT_S
    while pending:
        assert time.monotonic() < deadline, "the subscription never took effect"
        for stream in pending:
            pub.send_multipart(message(stream, -1))
        try:
            pending.discard(frames.recv(timeout_s=0.05).metadata["stream"])
        except TimeoutError:
            pass


def test_conflating_keeps_the_newest_frame_of_each_stream(context):
    pub = context.socket(zmq.PUB)
    pub.bind("inproc://frames")
    with ZmqFrames("inproc://frames", streams=("cam0", "cam1"), conflate=True, context=context) as frames:
        connected(pub, frames, ("cam0", "cam1"))
        while True:  # drop what the probes left behind
            try:
                frames.recv(timeout_s=0.05)
            except TimeoutError:
                break
        for seq in range(10):
            pub.send_multipart(message("cam0", seq))
            if seq < 3:
                pub.send_multipart(message("cam1", seq))
        pub.send_multipart(message("cam10", 99))  # a prefix match libzmq lets through: dropped by the exact check
        pub.send_multipart([b"cam0", b"not json", b""])  # malformed: skipped
        skipped_before = frames.skipped
        got = [frames.recv(timeout_s=TIMEOUT_S).metadata for _ in range(2)]
        assert sorted((m["stream"], m["seq"]) for m in got) == [("cam0", 9), ("cam1", 2)]
        assert frames.skipped - skipped_before == 9 + 2
        with pytest.raises(TimeoutError):
            frames.recv(timeout_s=0.1)
    pub.close()


def test_without_conflation_every_frame_comes_in_order(context):
    pub = context.socket(zmq.PUB)
    pub.bind("inproc://every")
    with ZmqFrames("inproc://every", streams=("cam0",), conflate=False, context=context) as frames:
        connected(pub, frames, ("cam0",))
        while True:
            try:
                frames.recv(timeout_s=0.05)
            except TimeoutError:
                break
        for seq in range(5):
            pub.send_multipart(message("cam0", seq))
        assert [frames.recv(timeout_s=TIMEOUT_S).metadata["seq"] for _ in range(5)] == [0, 1, 2, 3, 4]
    pub.close()


def test_a_lost_reply_closes_the_req_socket_and_the_next_command_uses_a_new_one(context):
    # A ROUTER that ignores the first request and answers the rest: a REQ socket reused after the timeout could not
    # even send its second request (REQ must receive before it sends again).
    router = context.socket(zmq.ROUTER)
    router.bind("inproc://commands")
    requests: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if not router.poll(50):
                continue
            identity, empty, request = router.recv_multipart()
            requests.append(request)
            if len(requests) > 1:
                router.send_multipart([identity, empty, json.dumps({"ok": True, "echo": request.decode()}).encode()])

    server = threading.Thread(target=serve, name="test-router")
    server.start()
    try:
        with ZmqControl("inproc://commands", timeout_s=0.3, context=context) as control:
            with pytest.raises(TimeoutError, match="no reply"):
                control.send({"type": "status"})
            assert control.send("zoom 2", timeout_s=TIMEOUT_S) == {"ok": True, "echo": "zoom 2"}
            assert control.send(b"status", timeout_s=TIMEOUT_S) == {"ok": True, "echo": "status"}
        assert requests == [b'{"type": "status"}', b"zoom 2", b"status"]
    finally:
        stop.set()
        server.join()
        router.close()
