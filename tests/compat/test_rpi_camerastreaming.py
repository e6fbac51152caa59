"""RPI-CameraStreaming-for-multiple-users' viewers and web page against vergence, unchanged: a SUB socket with
ZMQ_CONFLATE reading single-part JPEGs from the PUB port, and REQ requests on its control port ("Set ROI
ImmutableMultiDict([...])", "SaveROIs", "… Service Mode", "Stop Mode") answered `Ack`. Its ROI file is
`{name: [[left %, top %], [right %, bottom %], "colour"]}`. Written from that description, not with vergence's code."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import httpx
import zmq
from PIL import Image

from tests.conftest import free_port
from tests.polling import poll


def config(tmp_path: Path, pub: int, rep: int) -> Path:
    roi_file = tmp_path / "rois.json"
    roi_file.write_text(json.dumps({"door": [[10, 20], [30, 40], "red"]}))
    path = tmp_path / "vergence.toml"
    path.write_text(
        '[[cameras]]\nid = "cam0"\nsize = "320x240"\nfps = 30\n'
        f'[compat.rpi_camerastreaming]\npub = "tcp://127.0.0.1:{pub}"\nrep = "tcp://127.0.0.1:{rep}"\n'
        f'roi_file = "{roi_file}"\n'
    )
    return path


def test_a_conflating_subscriber_gets_every_second_30_decodable_jpegs_for_10_s(vergence_server, tmp_path):
    pub, rep = free_port(), free_port()
    vergence_server("--config", str(config(tmp_path, pub, rep)))
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.CONFLATE, 1)  # as its viewers do: the newest frame only (one part, or libzmq aborts)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, 5000)
    sub.connect(f"tcp://127.0.0.1:{pub}")
    try:
        sub.recv()  # connected and receiving
        frames, started = 0, time.monotonic()
        while time.monotonic() - started < 10:
            jpeg = sub.recv()
            assert not sub.getsockopt(zmq.RCVMORE)  # one part: the JPEG alone
            if frames % 30 == 0:
                assert Image.open(io.BytesIO(jpeg)).size == (320, 240)
            frames += 1
        rate = frames / (time.monotonic() - started)
    finally:
        sub.close(linger=0)
        context.term()
    assert rate >= 27, f"{rate:.1f} frames a second"  # a reader that keeps up gets the camera's 30


def test_its_requests_set_and_save_rois_switch_modes_and_stop_the_server(vergence_server, tmp_path):
    pub, rep = free_port(), free_port()
    server = vergence_server("--config", str(config(tmp_path, pub, rep)))
    rois = lambda: {r["name"]: r for r in httpx.get(f"{server.url}/api/cameras/cam0/rois").json()}  # noqa: E731
    assert rois()["door"]["x1"] == 10 and rois()["door"]["colour"] == "red"  # read from its file at start
    context = zmq.Context()
    req = context.socket(zmq.REQ)
    req.setsockopt(zmq.RCVTIMEO, 10_000)
    req.connect(f"tcp://127.0.0.1:{rep}")

    def ask(message: str) -> None:
        req.send(message.encode())
        assert req.recv() == b"Ack"

    try:
        ask(
            "Set ROI ImmutableMultiDict([('ROIName', 'gate'), ('top', '25'), ('bottom', '35'), ('left', '30'), "
            "('right', '40'), ('Colour', 'Lime')])"
        )
        gate = rois()["gate"]
        assert (gate["x1"], gate["y1"], gate["x2"], gate["y2"], gate["colour"]) == (30, 25, 40, 35, "lime")
        ask("SaveROIs")
        saved = json.loads((tmp_path / "rois.json").read_text())
        assert saved["gate"] == [[30, 25], [40, 35], "lime"] and saved["door"] == [[10, 20], [30, 40], "red"]
        # Kept in step: an ROI set elsewhere (vergence's REST, here) reaches its file without a SaveROIs.
        command = {
            "type": "roi",
            "stream": "cam0",
            "action": "set",
            "name": "dock",
            "x1": 50,
            "y1": 50,
            "x2": 60,
            "y2": 70,
        }
        assert httpx.post(f"{server.url}/api/commands", json=command).json()["ok"]
        written = lambda: json.loads((tmp_path / "rois.json").read_text())  # noqa: E731
        assert poll(lambda: "dock" in written(), "the ROI file to follow")
        assert written()["dock"][:2] == [[50, 50], [60, 70]] and "gate" in written()
        ask("Enter Service Mode")
        overlay = httpx.post(f"{server.url}/api/commands", content="status").json()["result"]["processing"]["cam0"]
        assert overlay["overlay"]["rois"] is True
        ask("Enter Application Mode")
        ask("Stop Mode")
        assert poll(lambda: server.process.poll() is not None, "the server to stop") and server.process.returncode == 0
    finally:
        req.close(linger=0)
        context.term()
