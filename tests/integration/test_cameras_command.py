"""`vergence cameras` as a user runs it: the installed command in a process of its own, the fake libcamera on PYTHONPATH
under the real picamera2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fakes import fake_env

VERGENCE = Path(sys.executable).parent / "vergence"
TIMEOUT_S = 60


def run_cameras(*args: str, sensors: str = "imx219,imx708") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **fake_env(sensors)}
    env.pop("LIBCAMERA_RPI_TUNING_FILE", None)
    return subprocess.run([str(VERGENCE), "cameras", *args], capture_output=True, text=True, env=env, timeout=TIMEOUT_S)


def test_json_lists_both_cameras_and_exits_0():
    result = run_cameras("--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True
    cameras = {camera["model"]: camera for camera in data["cameras"]}
    assert sorted(cameras) == ["imx219", "imx708"]
    assert cameras["imx708"]["mode"]["size"] == [2304, 1296] and cameras["imx708"]["mode"]["crop"] == [0, 0, 4608, 2592]
    assert cameras["imx219"]["mode"]["size"] == [1640, 1232]
    for camera in cameras.values():
        assert camera["frames"] == 5 and 29 < camera["measured_fps"] < 31 and camera["sync"] is True


def test_a_missing_tuning_file_exits_1_naming_the_camera_and_the_file(tmp_path):
    missing = tmp_path / "no-such-tuning.json"
    config = tmp_path / "pi.toml"
    config.write_text(
        f"""
[[cameras]]
id = "front"
source = "picamera2"
options = {{ camera_index = "0", tuning_file = "{missing}" }}
"""
    )
    result = run_cameras("--config", str(config), sensors="imx708")
    assert result.returncode == 1
    assert f"vergence cameras: front (camera 0, imx708): options.tuning_file: no such file {missing}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "camera 0: imx708" in result.stdout and f"tuning {missing}" in result.stdout
