"""camera-web-stream's TCP client against vergence, unchanged: it sends `struct.pack("qhhh", quality, width, height,
fps)` and reads frames of `struct "qhhh14s"` (JPEG length, width, height, fps, 14-byte ASCII send time) + JPEG.
Written from that description, not with vergence's code."""

from __future__ import annotations

import base64
import io
import socket
import struct
import threading
import time
from pathlib import Path

from PIL import Image

from tests.conftest import free_port

REQUEST, HEADER = "qhhh", "qhhh14s"  # native, as the project's client packs them


def config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "vergence.toml"
    path.write_text(
        '[[cameras]]\nid = "cam0"\nsize = "320x240"\nfps = 30\n'
        f'[compat.camera_web_stream]\ntcp_port = {port}\nhost = "127.0.0.1"\n'
    )
    return path


def receive(port: int, quality: int, width: int, height: int, fps: int, seconds: float) -> list[tuple[tuple, bytes]]:
    """What the project's client does: ask, then read header and JPEG after header and JPEG."""
    frames = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack(REQUEST, quality, width, height, fps))
        reader = sock.makefile("rb")
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            header = struct.unpack(HEADER, reader.read(struct.calcsize(HEADER)))
            frames.append((header, reader.read(header[0])))
    return frames


def test_a_camera_web_stream_client_gets_frames_at_its_size_quality_and_rate(vergence_server, tmp_path):
    port = free_port()
    vergence_server("--config", str(config(tmp_path, port)))
    frames = receive(port, 80, 160, 120, 10, seconds=3.0)
    for (length, width, height, fps, sent), jpeg in frames:
        assert (width, height, fps) == (160, 120, 10) and length == len(jpeg)
        assert Image.open(io.BytesIO(jpeg)).size == (160, 120)  # a whole JPEG of the size asked
        assert abs(float(sent) - time.time()) < 5  # its capture time, in seconds, as "%14.3f"
    assert 25 <= len(frames) <= 35, len(frames)  # about 10 a second for 3 s, not the camera's 30
    coarse = receive(port, 10, 160, 120, 10, seconds=1.0)
    mean = lambda got: sum(len(jpeg) for _, jpeg in got) / len(got)  # noqa: E731
    assert mean(coarse) < 0.7 * mean(frames), (mean(coarse), mean(frames))  # the quality asked, not the server's


def test_a_request_larger_than_the_stream_gets_the_stream_size_and_a_bad_one_is_closed(vergence_server, tmp_path):
    port = free_port()
    vergence_server("--config", str(config(tmp_path, port)))
    ((length, width, height, fps, _), jpeg), *_ = receive(port, 50, 1280, 960, 60, seconds=0.5)
    assert (width, height, fps) == (320, 240, 30) and Image.open(io.BytesIO(jpeg)).size == (320, 240)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack(REQUEST, 0, 160, 120, 10))  # quality 0: the project's server closed it too
        assert sock.recv(1) == b""


def test_with_auth_on_its_clients_which_carry_no_token_are_closed(vergence_server, tmp_path):
    """docs/security.md: its handshake has no token, so the anonymous role decides; with a token set, that is none."""
    port = free_port()
    path = config(tmp_path, port)
    path.write_text(path.read_text() + '[[auth.tokens]]\nname = "ops"\ntoken = "a-long-enough-operator-token-1234"\n')
    vergence_server("--config", str(path))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack(REQUEST, 80, 160, 120, 10))
        assert sock.recv(1) == b""


def test_a_camera_web_stream_mqtt_subscriber_decodes_every_base64_jpeg_on_its_topic(vergence_server, tmp_path):
    """Its MQTT client: subscribe to `pi_camera` at QoS 0, base64-decode each message, decode the JPEG."""
    import paho.mqtt.client as mqtt

    from tests.mosquitto import running_mosquitto

    with running_mosquitto(tmp_path) as broker:
        config = tmp_path / "vergence.toml"
        config.write_text(
            '[[cameras]]\nid = "cam0"\nsize = "320x240"\nfps = 30\n'
            f"[mqtt]\nenabled = true\nport = {broker.port}\nfps = 0\n"
            '[compat.camera_web_stream]\nmqtt_topic = "pi_camera"\nmqtt_fps = 10\n'
        )
        payloads: list[bytes] = []
        enough = threading.Event()

        def on_message(client, userdata, message):
            payloads.append(bytes(message.payload))
            if len(payloads) >= 20:
                enough.set()

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311, clean_session=True)
        client.on_connect = lambda client, *_: client.subscribe("pi_camera", qos=0)
        client.on_message = on_message
        client.connect(broker.host, broker.port, 60)
        client.loop_start()
        try:
            vergence_server("--config", str(config))
            started = time.monotonic()
            assert enough.wait(15), f"{len(payloads)} messages on pi_camera"
            elapsed = time.monotonic() - started
        finally:
            client.loop_stop()
            client.disconnect()
    for payload in payloads:
        assert Image.open(io.BytesIO(base64.b64decode(payload, validate=True))).size == (320, 240)
    assert len(payloads) / elapsed < 15, "at its rate (10 a second), not the camera's 30"
