"""[foxglove] as a Foxglove client sees it: a client written from the protocol (tests/support/foxglove_client.py)
subscribes, decodes the H.264 of `foxglove.CompressedVideo` with PyAV and reads each picture's time code; the encoder
runs only while it subscribes; its service call and its published command move the crop."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, free_port, start_server
from tests.media import H264Decoder, read_timecode
from tests.polling import poll
from tests.support.foxglove_client import CompressedPicture, FoxgloveClient, field_numbers, protobuf_fields


def serve(directory: Path, extra: str = "") -> tuple[ServerProcess, str]:
    port = free_port()
    config = directory / "vergence.toml"
    config.write_text(
        '[[cameras]]\nid = "cam0"\nsize = "640x360"\nfps = 30\n[h264]\ngop_frames = 30\n'
        f"[foxglove]\nenabled = true\nport = {port}\n{extra}"
    )
    return start_server(("--config", str(config)), directory / "server.log"), f"ws://127.0.0.1:{port}"


def channel(server: ServerProcess, name: str) -> dict:
    return httpx.get(f"{server.url}/api/stats", timeout=5).json()["streams"]["cam0"]["channels"][name]


def test_a_protocol_client_decodes_the_video_with_capture_times_and_the_encoder_runs_only_while_it_subscribes(
    tmp_path,
):
    server, url = serve(tmp_path)
    try:
        with FoxgloveClient.open(url) as client:
            assert client.server_info["name"] == "vergence"
            video = client.channels["/cam0/video"]
            assert video["schemaName"] == "foxglove.CompressedVideo" and video["encoding"] == "protobuf"
            assert client.channels["/cam0/image"]["schemaName"] == "foxglove.CompressedImage"
            assert {"/ptz", "/tracking", "/stereo"} <= set(client.channels)
            assert not channel(server, "h264")["running"], "encoding with nobody subscribed"
            subscription = client.subscribe("/cam0/video")
            client.wait(lambda: len(client.messages) >= 60, "60 video messages", 20)
            numbers = field_numbers(video)
            assert {"timestamp", "frame_id", "data", "format"} <= set(numbers)
            decoder = H264Decoder()
            decoded = 0
            for message in client.messages[:60]:
                assert message.subscription == subscription
                picture = CompressedPicture.parse(message.payload, numbers)
                assert picture.format == "h264" and picture.frame_id == "cam0"
                assert picture.stamp_ns == message.log_time_ns
                for frame in decoder.decode(picture.data):
                    decoded += 1
                    # The message's time is the capture time the test camera painted into the picture.
                    assert abs(read_timecode(frame) - picture.stamp_ns) < 1_000_000
            assert decoded == 60, f"{decoded} of 60 messages decoded"  # the first one is a keyframe with SPS/PPS
            assert channel(server, "h264")["running"]
            client.unsubscribe(subscription)
            poll(lambda: not channel(server, "h264")["running"], "the encoder stopped after the client left", 10)
            # A JPEG subscriber gets CompressedImage (video messages sent before the unsubscribe may still come).
            images = client.subscribe("/cam0/image")
            client.wait(lambda: sum(m.subscription == images for m in client.messages) >= 3, "3 images", 10)
            last = [m for m in client.messages if m.subscription == images][-1]
            image = CompressedPicture.parse(last.payload, field_numbers(client.channels["/cam0/image"]))
            assert image.format == "jpeg" and image.data[:2] == b"\xff\xd8"
    finally:
        server.stop()


def test_a_service_call_and_a_published_command_move_the_crop(tmp_path):
    server, url = serve(tmp_path)
    ptz_url = f"{server.url}/api/cameras/cam0/ptz"
    try:
        with FoxgloveClient.open(url) as client:
            client.wait(lambda: {"/ptz", "/track", "/command"} <= set(client.services), "the services", 10)
            reply = client.call("/ptz", {"stream": "cam0", "zoom": 2, "pan": 0.4})
            assert reply["ok"] and reply["result"]["zoom"] == 2.0, reply
            state = httpx.get(ptz_url, timeout=5).json()
            assert state["zoom"] == 2.0 and state["pan"] == pytest.approx(0.4, abs=0.005)
            refused = client.call("/ptz", {"stream": "cam0", "zoom": 99})
            assert not refused["ok"] and refused["code"] == "invalid", refused
            assert client.call("/command", {"type": "zoom", "stream": "cam0", "value": 3})["ok"]
            publisher = client.advertise("/command")  # sent before the message, on the same connection
            client.publish(publisher, {"type": "ptz", "stream": "cam0", "pan": 0.3})
            state = poll(lambda: (s := httpx.get(ptz_url, timeout=5).json())["pan"] == pytest.approx(0.3, abs=0.005) and s,
                         "the published command to move the crop")  # fmt: skip
            assert state["zoom"] == 3.0
            # A PTZ event reaches the client on /ptz.
            ptz = client.subscribe("/ptz")
            client.messages.clear()
            client.call("/ptz", {"stream": "cam0", "tilt": 0.6})
            client.wait(lambda: any(m.subscription == ptz for m in client.messages), "a /ptz message", 10)
    finally:
        server.stop()


def test_a_public_bind_with_auth_set_is_refused_unless_said(tmp_path):
    config = tmp_path / "vergence.toml"
    config.write_text(
        '[[auth.tokens]]\nname = "ops"\ntoken = "operator-token-0123456789abcdef"\nrole = "operator"\n'
        f'[foxglove]\nenabled = true\nhost = "0.0.0.0"\nport = {free_port()}\n'
    )
    with pytest.raises(RuntimeError, match="unauthenticated = true"):
        start_server(("--config", str(config)), tmp_path / "server.log")


def test_the_calibration_follows_the_crop(tmp_path):
    import struct

    import numpy as np

    calibration = tmp_path / "stereo.npz"
    matrix = np.array([[500.0, 0, 320], [0, 500.0, 180], [0, 0, 1]])
    np.savez(
        calibration, K1=matrix, D1=np.zeros(5), K2=matrix, D2=np.zeros(5), R=np.eye(3),
        T=np.array([-0.06, 0, 0]), image_width=640, image_height=360,
    )  # fmt: skip
    camera = 'size = "640x360"\nfps = 30\n'
    server, url = serve(
        tmp_path,
        f'[[cameras]]\nid = "cam1"\n{camera}[stereo]\nenabled = true\ncalibration = "{calibration}"\n',
    )
    try:
        assert httpx.put(f"{server.url}/api/stereo", json={"zoom": 2}, timeout=5).status_code == 200
        with FoxgloveClient.open(url) as client:
            topic = client.channels["/cam0/calibration"]
            assert topic["schemaName"] == "foxglove.CameraCalibration"
            numbers = field_numbers(topic)
            subscription = client.subscribe("/cam0/calibration")
            client.wait(lambda: any(m.subscription == subscription for m in client.messages), "a calibration", 10)
            message = next(m for m in client.messages if m.subscription == subscription)
    finally:
        server.stop()
    fields = protobuf_fields(message.payload)
    k = struct.unpack("<9d", bytes(fields[numbers["K"]][0]))
    # Zoom 2 on the middle of a 1280x720 sensor, shown at 640x360: twice the focal length, the same centre.
    assert k == pytest.approx((1000.0, 0, 320.0, 0, 1000.0, 180.0, 0, 0, 1))
    size = [struct.unpack("<I", bytes(fields[numbers[key]][0]))[0] for key in ("width", "height")]  # fixed32
    assert size == [640, 360]
    assert bytes(fields[numbers["frame_id"]][0]) == b"cam0"
