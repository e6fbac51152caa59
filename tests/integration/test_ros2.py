"""[ros2] as a ROS 2 program sees it: a separate process running a real rclpy subscriber (Fast DDS, in the tests'
network namespace) receives CompressedImage and CameraInfo at the camera's rate, stamped with the capture times painted
in the pictures; its command moves the crop; the stereo pair comes as left and right with one stamp each."""

from __future__ import annotations

import base64
import io
import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import ServerProcess, start_server
from tests.polling import poll
from vergence.media import timecode

ROOT = Path(__file__).resolve().parents[2]
ROS_PYTHON = ROOT / "build" / "rosvenv" / "bin" / "python"
SUBSCRIBER = ROOT / "tests" / "support" / "ros2_subscriber.py"


@pytest.fixture(scope="module")
def ros_python() -> Path:
    if not ROS_PYTHON.exists():
        pytest.fail(f"{ROS_PYTHON} is missing: bash scripts/install.sh --test makes it (ROS 2 wheels)")
    return ROS_PYTHON


def serve(directory: Path, ros_python: Path, cameras: str, extra: str = "") -> ServerProcess:
    config = directory / "vergence.toml"
    config.write_text(f'{cameras}[ros2]\nenabled = true\npython = "{ros_python}"\n{extra}')
    return start_server(("--config", str(config)), directory / "server.log")


def listen(ros_python: Path, out: Path, seconds: float, command: str, *topics: str) -> list[dict]:
    subprocess.run(
        [str(ros_python), str(SUBSCRIBER), str(out), str(seconds), command, *topics], check=True, timeout=120
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[-1].get("done"), lines[-1:]
    return lines[:-1]


CAMERA = 'size = "640x360"\nfps = 30\n'


def test_a_ros2_subscriber_gets_images_and_camera_info_stamped_with_capture_times_and_commands(tmp_path, ros_python):
    server = serve(tmp_path, ros_python, f'[[cameras]]\nid = "cam0"\n{CAMERA}')
    try:
        messages = listen(
            ros_python, tmp_path / "heard.jsonl", 5.0, json.dumps({"type": "ptz", "stream": "cam0", "zoom": 2}),
            "/cam0/image/compressed", "/cam0/camera_info",
        )  # fmt: skip
        poll(lambda: httpx.get(f"{server.url}/api/cameras/cam0/ptz", timeout=5).json()["zoom"] == 2.0,
             "the ROS command to zoom", 10)  # fmt: skip
    finally:
        server.stop()
    images = [m for m in messages if m["topic"] == "/cam0/image/compressed"]
    infos = [m for m in messages if m["topic"] == "/cam0/camera_info"]
    stamps = [m["stamp_ns"] for m in images]
    rate = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9)
    print(f"{len(images)} images at {rate:.2f} fps, {len(infos)} camera infos")
    assert rate >= 29, rate
    # Each picture has its camera info, stamped alike (the listening may end between the two of the last one).
    info_stamps = {m["stamp_ns"] for m in infos}
    assert info_stamps <= set(stamps) and len(set(stamps) - info_stamps) <= 1
    assert all((m["width"], m["height"]) == (640, 360) for m in infos)
    for image in images:
        assert image["format"] == "jpeg"
        picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(image["jpeg"]))).convert("L"))
        painted = timecode.read(picture)
        assert painted is not None and abs(painted - image["stamp_ns"]) < 1_000_000, (painted, image["stamp_ns"])


def test_the_stereo_pair_comes_as_left_and_right_with_one_stamp(tmp_path, ros_python):
    cameras = f'[[cameras]]\nid = "cam0"\n{CAMERA}[[cameras]]\nid = "cam1"\n{CAMERA}[stereo]\nenabled = true\n'
    server = serve(tmp_path, ros_python, cameras)
    try:
        messages = listen(
            ros_python, tmp_path / "heard.jsonl", 3.0, "", "/stereo/left/image/compressed",
            "/stereo/right/image/compressed",
        )  # fmt: skip
    finally:
        server.stop()
    left = {m["stamp_ns"] for m in messages if m["topic"] == "/stereo/left/image/compressed"}
    right = {m["stamp_ns"] for m in messages if m["topic"] == "/stereo/right/image/compressed"}
    print(f"{len(left)} left, {len(right)} right, {len(left & right)} with the same stamp")
    assert len(left & right) >= 60
    assert len(left ^ right) <= 2  # a pair cut at the start or the end of the listening


def test_a_python_without_rclpy_is_a_clear_configuration_error(tmp_path):
    import sys

    config = tmp_path / "vergence.toml"
    config.write_text(f'[[cameras]]\nid = "cam0"\n{CAMERA}[ros2]\nenabled = true\npython = "{sys.executable}"\n')
    with pytest.raises(RuntimeError) as failed:
        start_server(("--config", str(config)), tmp_path / "server.log")
    message = str(failed.value)
    assert "[ros2]: cannot import rclpy" in message and "source /opt/ros/" in message, message[-1500:]
