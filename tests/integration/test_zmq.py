"""ZeroMQ against a real server: frames with metadata on PUB (JPEG and raw, filtered by camera, rate-limited, newest first
when conflating) and commands on REP that keep answering whatever they are sent."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zmq

from tests.conftest import ServerProcess, free_port, start_server
from vergence.client.zmq import ZmqControl, ZmqFrames, zmq_command

TIMEOUT_S = 15.0  # generous: the machine is shared with other test runs


def endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def serve(directory: Path, cameras: str, zmq_section: str, commands: bool = True) -> tuple[ServerProcess, str, str]:
    pub, rep = endpoint(), endpoint() if commands else ""
    config = directory / "vergence.toml"
    config.write_text(f'{cameras}\n[zmq]\nenabled = true\npub = "{pub}"\nrep = "{rep}"\n{zmq_section}\n')
    return start_server(("--config", str(config)), directory / "server.log"), pub, rep


@pytest.fixture(scope="module")
def two_cameras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str, str]]:
    """cam0 320x240 and cam1 160x120 at 30 fps; JPEG frames of both, every frame."""
    cameras = (
        '[[cameras]]\nid = "cam0"\nsize = "320x240"\nfps = 30\n[[cameras]]\nid = "cam1"\nsize = "160x120"\nfps = 30\n'
    )
    server, pub, rep = serve(tmp_path_factory.mktemp("zmq"), cameras, "")
    yield server, pub, rep
    server.stop()


def ptz_zoom(server: ServerProcess) -> float:
    return httpx.get(f"{server.url}/api/cameras/cam0/ptz").json()["zoom"]


def test_frames_carry_their_metadata_and_decode_to_the_configured_size(two_cameras):
    server, pub, _ = two_cameras
    with ZmqFrames(pub, streams=("cam0",), conflate=False, timeout_s=TIMEOUT_S) as frames:
        received = [next(frames) for _ in range(15)]
    now_ns = time.time_ns()
    seqs = [frame.metadata["seq"] for frame in received]
    captures = [frame.metadata["capture_ns"] for frame in received]
    assert seqs == sorted(set(seqs)), f"seq must increase: {seqs}"
    assert captures == sorted(set(captures)), "capture_ns must increase"
    for frame in received:
        meta = frame.metadata
        assert {k: meta[k] for k in ("v", "stream", "format", "width", "height")} == {
            "v": 1,
            "stream": "cam0",
            "format": "jpeg",
            "width": 320,
            "height": 240,
        }
        assert meta["capture_ns"] <= meta["send_ns"] <= now_ns
        assert now_ns - meta["capture_ns"] < TIMEOUT_S * 1e9
        assert frame.payload[:2] == b"\xff\xd8", "payload is a JPEG"
        assert frame.image().shape == (240, 320, 3)


def test_the_topic_filter_gives_only_the_camera_asked_for(two_cameras):
    _, pub, _ = two_cameras
    # A bare SUB socket: the filtering is libzmq's, on the topic part the server sends.
    context = zmq.Context.instance()
    with context.socket(zmq.SUB) as sub:
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"cam1")
        sub.connect(pub)
        messages = []
        for _ in range(20):
            assert sub.poll(TIMEOUT_S * 1000), "no frame from cam1"
            messages.append(sub.recv_multipart())
    assert {len(parts) for parts in messages} == {3}
    assert {parts[0] for parts in messages} == {b"cam1"}
    metadata = [json.loads(parts[1]) for parts in messages]
    assert {(m["stream"], m["width"], m["height"]) for m in metadata} == {("cam1", 160, 120)}

    with ZmqFrames(pub, streams=("cam0", "cam1"), conflate=False, timeout_s=TIMEOUT_S) as frames:
        seen: dict[str, tuple[int, int, int]] = {}
        deadline = time.monotonic() + TIMEOUT_S
        while len(seen) < 2 and time.monotonic() < deadline:
            frame = next(frames)
            seen[frame.metadata["stream"]] = frame.image().shape
    assert seen == {"cam0": (240, 320, 3), "cam1": (120, 160, 3)}


def test_conflating_reader_gets_the_newest_frame_not_a_backlog(two_cameras):
    _, pub, _ = two_cameras
    with (
        ZmqFrames(pub, streams=("cam0",), conflate=True, timeout_s=TIMEOUT_S) as newest,
        ZmqFrames(pub, streams=("cam0",), conflate=False, timeout_s=TIMEOUT_S) as every,
    ):
        first = newest.recv().metadata["seq"]
        # `newest` reads nothing while `every` waits for five more frames: they pile up on `newest`'s socket.
        target = first + 5
        while (seq := every.recv().metadata["seq"]) < target:
            pass
        later = newest.recv().metadata["seq"]
    assert later >= seq - 1, f"conflating reader got frame {later}, the newest was {seq}"
    assert newest.skipped >= 3, newest.skipped


def test_a_stalled_subscriber_costs_the_others_no_frame(two_cameras):
    server, pub, _ = two_cameras
    context = zmq.Context.instance()
    with context.socket(zmq.SUB) as stalled:
        # A one-message queue and a tiny receive window, and it never reads: its pipe on the server fills at SNDHWM.
        stalled.setsockopt(zmq.LINGER, 0)
        stalled.setsockopt(zmq.RCVHWM, 1)
        stalled.setsockopt(zmq.RCVBUF, 4096)
        stalled.setsockopt(zmq.SUBSCRIBE, b"cam0")
        stalled.connect(pub)
        assert stalled.poll(TIMEOUT_S * 1000), "the stalled subscriber never got a first frame"
        with ZmqFrames(pub, streams=("cam0",), conflate=False, timeout_s=TIMEOUT_S) as healthy:
            seqs = [healthy.recv().metadata["seq"]]
            started = time.monotonic()
            while time.monotonic() - started < 3.0:
                seqs.append(healthy.recv().metadata["seq"])
            elapsed_s = time.monotonic() - started
        stream = httpx.get(f"{server.url}/api/stats").json()["streams"]["cam0"]
    # A gap in what the healthy subscriber got is only ever a frame the JPEG encoder skipped (busy machine) or one the
    # hub's `latest` policy replaced before the service sent it; never one held up by the stalled subscriber.
    gaps = sum(later - earlier - 1 for earlier, later in itertools.pairwise(seqs))
    channel = stream["channels"]["jpeg"]
    hub_drops = sum(sub["drops"] for sub in channel["subscribers"] if sub["name"] == "zmq")
    assert gaps <= stream["encoder_skipped_frames"]["jpeg"] + hub_drops, (gaps, stream["encoder_skipped_frames"])
    rate = (len(seqs) - 1) / elapsed_s
    print(f"healthy ZeroMQ subscriber beside a stalled one: {rate:.1f} fps, {gaps} gaps")
    assert rate >= 20, rate  # a 30 fps camera on a busy, shared machine


def test_commands_on_rep_move_the_camera_json_and_text(two_cameras):
    server, _, rep = two_cameras
    reply = zmq_command(rep, {"type": "zoom", "value": 2, "id": "z1"}, timeout_s=TIMEOUT_S)
    assert reply["ok"] is True and reply["id"] == "z1" and reply["command"] == "zoom", reply
    assert reply["result"]["zoom"] == 2
    assert ptz_zoom(server) == 2

    assert httpx.put(f"{server.url}/api/cameras/cam0/ptz", json={"zoom": 1}).json()["zoom"] == 1
    reply = zmq_command(rep, "zoom 2", timeout_s=TIMEOUT_S)
    assert reply["ok"] is True and reply["command"] == "zoom" and "id" not in reply, reply
    assert ptz_zoom(server) == 2


def test_bad_requests_get_error_replies_and_the_socket_keeps_answering(two_cameras):
    server, _, rep = two_cameras
    # (request, expected code or None for any, a word the error must contain)
    bad = [
        (b"{not json", "bad_request", "JSON"),
        (b"\xff\xfe\x00", "bad_request", "UTF-8"),
        ("warp 9", "unknown_command", "warp"),
        ({"type": "zoom", "value": 100, "id": 7}, "invalid", "value"),
        ({"type": "pan"}, "invalid", "value"),
        ("   ", "invalid", "empty"),
    ]
    with ZmqControl(rep, timeout_s=TIMEOUT_S) as control:
        for request, code, word in bad:
            reply = control.send(request)
            assert reply["ok"] is False and word in reply["error"], (request, reply)
            assert reply["code"] == code if code else reply["code"], (request, reply)
            assert control.send({"type": "status", "id": "after"})["ok"] is True, f"no answer after {request!r}"
        assert control.send({"type": "zoom", "value": 100, "id": 7})["id"] == 7
        # Over 64 KiB: libzmq drops the peer without reading it all, so no reply comes; the helper's next command
        # goes out on a new socket and is answered.
        with pytest.raises(TimeoutError):
            control.send("zoom " + "1" * 100_000, timeout_s=1.0)
        assert control.send({"type": "status"})["ok"] is True

    # A request of two parts is refused too; REP stays in lock-step.
    context = zmq.Context.instance()
    with context.socket(zmq.REQ) as req:
        req.setsockopt(zmq.LINGER, 0)
        req.connect(rep)
        req.send_multipart([b'{"type": "status"}', b"extra"])
        assert req.poll(TIMEOUT_S * 1000)
        reply = json.loads(req.recv())
        assert reply["ok"] is False and reply["code"] == "invalid", reply
        req.send(b'{"type": "status"}')
        assert req.poll(TIMEOUT_S * 1000)
        assert json.loads(req.recv())["ok"] is True
    assert server.process.poll() is None


@pytest.fixture(scope="module")
def raw_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str, str]]:
    """One 320x240 camera at 30 fps; raw BGR frames limited to 10 a second."""
    cameras = '[[cameras]]\nid = "cam0"\nsize = "320x240"\nfps = 30\n'
    server, pub, rep = serve(tmp_path_factory.mktemp("zmq-raw"), cameras, 'format = "raw"\nfps = 10', commands=False)
    yield server, pub, rep
    server.stop()


def test_raw_frames_have_the_right_shape_and_the_configured_rate(raw_server):
    server, pub, _ = raw_server
    with ZmqFrames(pub, streams=("cam0",), conflate=False, timeout_s=TIMEOUT_S) as frames:
        received = [next(frames)]
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            received.append(next(frames))
        elapsed_s = time.monotonic() - started
    meta = received[-1].metadata
    assert (meta["format"], meta["shape"], meta["dtype"], meta["width"], meta["height"]) == (
        "raw",
        [240, 320, 3],
        "uint8",
        320,
        240,
    )
    assert len(received[-1].payload) == 240 * 320 * 3
    image = received[-1].image()
    assert image.shape == (240, 320, 3) and image.dtype.name == "uint8"
    assert image.std() > 5, "a picture, not a blank buffer"
    rate = (len(received) - 1) / elapsed_s
    print(f"raw frames at {rate:.2f} fps (limit 10, camera 30)")
    assert 8.5 <= rate <= 10.5, rate
    stats = httpx.get(f"{server.url}/api/stats").json()["streams"]["cam0"]["channels"]["raw"]
    assert stats["running"] and [sub["name"] for sub in stats["subscribers"]] == ["zmq"]


def test_with_curve_only_the_allowed_client_commands_and_every_frame_is_encrypted(tmp_path):
    server_public, server_secret = (key.decode() for key in zmq.curve_keypair())
    allowed = tuple(key.decode() for key in zmq.curve_keypair())
    stranger = tuple(key.decode() for key in zmq.curve_keypair())
    section = f'curve_secret_key = "{server_secret}"\ncurve_clients = ["{allowed[0]}"]\n'
    server, pub, rep = serve(tmp_path, '[[cameras]]\nid = "cam0"\nsize = "160x120"\nfps = 30\n', section)
    try:
        described = httpx.get(f"{server.url}/api/stats", timeout=5).json()["services"]["zmq"]
        assert described["curve_public_key"] == server_public
        with ZmqControl(rep, timeout_s=TIMEOUT_S, server_key=server_public, client_keys=allowed) as control:
            assert control.send("status")["ok"] is True
        # A client with another key, or without CURVE at all, gets no answer: the handshake never completes.
        for keys in (stranger, None):
            with ZmqControl(
                rep, timeout_s=1.0, server_key=server_public if keys else None, client_keys=keys
            ) as control:
                with pytest.raises(TimeoutError):
                    control.send("zoom 2")
        assert ptz_zoom(server) == 1.0
        with ZmqFrames(pub, timeout_s=TIMEOUT_S, server_key=server_public, client_keys=allowed) as frames:
            frame = next(frames)
            assert (frame.metadata["width"], frame.metadata["height"]) == (160, 120)
        with ZmqFrames(pub, timeout_s=1.0, server_key=server_public, client_keys=stranger) as frames:
            with pytest.raises(TimeoutError):
                frames.recv()
        assert server_secret not in server.log() and server_public in server.log()
    finally:
        server.stop()
