"""`vergence serve` with two picamera2 cameras (the real picamera2, the fake libcamera on PYTHONPATH): PTZ at the sensor, flip one eye only."""

import os
import time
from pathlib import Path

import httpx

from tests.fakes import fake_env

FAKES = Path(__file__).resolve().parents[1] / "fakes"

CONFIG = """
[[cameras]]
id = "cam0"
source = "picamera2"
size = "640x360"
fps = 30

[[cameras]]
id = "cam1"
source = "picamera2"
size = "640x360"
fps = 30
"""


def frames(server, camera):
    return httpx.get(f"{server.url}/api/stats").json()["streams"][camera]["frames"]


def wait_for(check, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_two_picamera2_eyes_through_the_server(vergence_server, tmp_path):
    config = tmp_path / "pi.toml"
    config.write_text(CONFIG)
    env = {
        "PYTHONPATH": os.pathsep.join([str(FAKES), os.environ.get("PYTHONPATH", "")]),
        "VERGENCE_FAKE_LIBCAMERA_SENSORS": "imx219,imx708",
    }
    server = vergence_server("--config", str(config), env=env)
    wait_for(lambda: frames(server, "cam0") > 10 and frames(server, "cam1") > 10)
    sensors = {cid: httpx.get(f"{server.url}/api/cameras/{cid}/ptz").json()["sensor"] for cid in ("cam0", "cam1")}
    assert sensors == {"cam0": [3280, 2464], "cam1": [4608, 2592]}  # geometry read from each camera

    moved = httpx.put(f"{server.url}/api/cameras/cam0/ptz", json={"zoom": 4, "pan": 0.25}).json()
    x, y, w, h = moved["crop"]
    assert 0 <= x and x + w <= 3280 and 0 <= y and y + h <= 2464 and abs(h - w * 360 / 640) <= 1

    before = frames(server, "cam0")
    flipped = httpx.put(f"{server.url}/api/cameras/cam1/flip", json={"vertical": True})
    assert flipped.status_code == 200 and flipped.json()["flip"]["vertical"] is True
    wait_for(lambda: frames(server, "cam0") >= before + 20)  # cam0 went on while cam1 restarted
    streams = httpx.get(f"{server.url}/api/stats").json()["streams"]
    assert streams["cam0"]["state"] == "running" and streams["cam0"]["restarts"] == 0
    wait_for(lambda: httpx.get(f"{server.url}/api/stats").json()["streams"]["cam1"]["fps"] > 20)


STEREO_SYNC = """
[[cameras]]
id = "cam0"
source = "picamera2"
size = "640x360"
fps = 30
options = { sync = "server", sync_frames = "15" }

[[cameras]]
id = "cam1"
source = "picamera2"
size = "640x360"
fps = 30
options = { sync = "client", sync_frames = "15" }

[stereo]
enabled = true
"""


def test_stereo_eyes_in_sync_through_the_server(vergence_server, tmp_path):
    config = tmp_path / "pi.toml"
    config.write_text(STEREO_SYNC)
    server = vergence_server("--config", str(config), env=fake_env("imx708,imx708"))

    def cameras():
        streams = httpx.get(f"{server.url}/api/stats").json()["streams"]
        return streams["cam0"]["camera"], streams["cam1"]["camera"]

    wait_for(lambda: all(c.get("sync", {}).get("ready") for c in cameras()))
    left, right = cameras()
    assert (left["sync"]["mode"], right["sync"]["mode"]) == ("server", "client")
    listed = {s["id"]: s for s in httpx.get(f"{server.url}/api/streams").json()}
    # Both eyes stream from the imx708's binned full-field mode: the whole view, not the 1536x864 window.
    assert listed["cam0"]["sensor_mode"]["size"] == [2304, 1296]
    assert listed["cam0"]["sensor_mode"]["crop"] == [0, 0, 4608, 2592]
    assert listed["cam0"]["sensor_mode"]["field_of_view"] == 1.0

    eyes = httpx.put(f"{server.url}/api/stereo", json={"zoom": 2.0, "vergence": 0.1}).json()
    for name, camera_id in (("left", "cam0"), ("right", "cam1")):
        wanted = eyes[name]["crop"]

        def landed(camera_id=camera_id, wanted=wanted):
            status = httpx.get(f"{server.url}/api/stats").json()["streams"][camera_id]["camera"]
            crop = status["crop"]
            return (
                status["crop_landed"]
                and crop is not None
                and all(abs(a - b) <= 2 for a, b in zip(crop, wanted, strict=True))
            )

        wait_for(landed)
