"""`vergence cameras` in-process, through the real picamera2 over the fake libcamera (tests/fakes/libcamera): the cameras
listed with their modes, the mode vergence streams from, a busy or stalled camera named, no camera, no picamera2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.fakes import hide_picamera2, use_fake_libcamera
from vergence.cameras import NO_CAMERA, describe_cameras, flag_overrides, format_report
from vergence.cli import app
from vergence.config import CameraSettings, H264Settings
from vergence.errors import ConfigError
from vergence.sources.picamera2 import INSTALL_HINT, Picamera2Source


def configured(camera_id: str, **fields) -> CameraSettings:
    return CameraSettings(id=camera_id, source="picamera2", **fields)


def run_cli(monkeypatch, *args: str):
    # The command quietens libcamera through the environment; keep that inside the test.
    monkeypatch.setenv("LIBCAMERA_LOG_LEVELS", "*:WARN")
    return CliRunner().invoke(app, ["cameras", *args])


def test_both_cameras_are_listed_with_the_mode_vergence_takes(monkeypatch):
    rig = use_fake_libcamera(monkeypatch, ["imx219", "imx708"])
    report = describe_cameras([], H264Settings())

    assert report.ok, report.problems
    imx219, imx708 = report.cameras
    assert (imx219.number, imx219.model, imx219.stream) == (0, "imx219", "cam0")
    assert (imx708.number, imx708.model, imx708.stream) == (1, "imx708", "cam1")
    assert imx708.id.endswith("imx708@1a") and not imx708.configured
    assert [mode["size"] for mode in imx708.modes] == [[1536, 864], [2304, 1296], [4608, 2592]]
    assert imx708.modes[0]["crop"] == [768, 432, 3072, 1728] and imx708.modes[0]["max_fps"] == 120.13
    assert [mode["size"] for mode in imx219.modes] == [[640, 480], [1640, 1232], [1920, 1080], [3280, 2464]]
    # 1280x720 at 30 fps: the widest field that reaches 30 fps, binned.
    assert imx708.mode is not None and imx708.mode["size"] == [2304, 1296]
    assert imx708.mode["crop"] == [0, 0, 4608, 2592] and imx708.mode["field_of_view"] == 1.0
    assert imx219.mode is not None and imx219.mode["size"] == [1640, 1232]
    assert imx708.scaler_crop is not None and imx708.scaler_crop["max"] == [0, 0, 4608, 2592]
    assert imx708.scaler_crop["min"][2:] == [162, 92]  # the ISP scales down at most 16x: 81x46 mode pixels, binned 2x2
    for camera in report.cameras:
        assert camera.sync is True and camera.tuning == "default" and camera.error is None
        assert camera.frames == 5 and camera.measured_fps == pytest.approx(30, abs=0.1)
    for record in rig.cameras():
        assert record.frames >= 5 and record.acquires == record.releases  # every camera given back
    assert report.h264.encoder in ("libx264", "h264_v4l2m2m") and report.h264.size == (1280, 720)

    text = format_report(report)
    assert "camera 1: imx708  /base/" in text and "* 2304x1296" in text and "* 1640x1232" in text
    assert "ScalerCrop  min (0,0,162,92)  max (0,0,4608,2592)" in text
    assert "streams     5 frames at 30.00 fps" in text
    assert "A Raspberry Pi 5 has no hardware H.264 encoder" in text or report.h264.hardware


@pytest.mark.parametrize(
    ("model", "size", "fps", "options", "expected"),
    [
        ("imx708", "1280x720", 30, {}, [2304, 1296]),
        ("imx708", "640x480", 100, {}, [1536, 864]),  # only the cropped window reaches 100 fps
        ("imx708", "1280x720", 10, {"sensor_mode": "4608x2592"}, [4608, 2592]),
        ("imx219", "1920x1080", 50, {}, [640, 480]),  # no 1080p mode reaches 50 fps: the only fast one, upscaled
    ],
)
def test_the_mode_reported_is_the_one_the_source_streams_from(monkeypatch, model, size, fps, options, expected):
    use_fake_libcamera(monkeypatch, [model])
    camera = configured("cam0", size=size, fps=fps, options=options)
    report = describe_cameras([camera], H264Settings(), frames=0)
    assert report.ok, report.problems
    (described,) = report.cameras
    assert described.configured and described.frames == 0 and described.measured_fps is None
    assert described.mode is not None and described.mode["size"] == expected
    source = Picamera2Source(camera)
    info = source.open()
    try:
        assert described.mode == info.sensor_mode
    finally:
        source.close()


def test_an_upscaled_mode_is_said_to_be(monkeypatch):
    use_fake_libcamera(monkeypatch, ["imx219"])
    report = describe_cameras([configured("cam0", size="1920x1080", fps=50)], H264Settings(), frames=0)
    assert "uses        640x480, 2x2 binned, upscaled to 1920x1080, field of view 15 %" in format_report(report)


def test_flags_apply_to_every_camera_and_the_tuning_of_a_configured_one_is_used(monkeypatch, tmp_path):
    rig = use_fake_libcamera(monkeypatch, ["imx219", "imx708"])
    tuning = tmp_path / "imx708_wide.json"
    tuning.write_text(json.dumps({"version": 2.0, "target": "pisp", "algorithms": [{"rpi.agc": {}}]}))
    cam1 = configured("cam1", options={"camera_index": "1", "tuning_file": str(tuning)})
    report = describe_cameras([cam1], H264Settings(), flag_overrides("1920x1080", 50))

    assert report.ok, report.problems
    assert [(c.stream, c.configured, c.size, c.fps) for c in report.cameras] == [
        ("cam0", False, (1920, 1080), 50.0),
        ("cam1", True, (1920, 1080), 50.0),
    ]
    assert report.cameras[1].tuning == str(tuning) and report.cameras[0].tuning == "default"
    assert rig.camera(1).tuning == str(tuning)  # the file libcamera ran camera 1 with in the streaming check
    assert report.cameras[1].mode is not None and report.cameras[1].mode["size"] == [2304, 1296]
    assert report.cameras[1].measured_fps == pytest.approx(50, abs=0.2)
    assert report.h264.size == (1920, 1080)


@pytest.mark.parametrize(("size", "fps", "flag"), [("12x", None, "--size 12x"), (None, 0, "--fps 0")])
def test_bad_flags_name_the_flag(size, fps, flag):
    with pytest.raises(ConfigError, match=flag):
        flag_overrides(size, fps)


def test_a_busy_camera_fails_naming_it_and_the_other_still_streams(monkeypatch):
    use_fake_libcamera(monkeypatch, ["imx219", "imx708"])
    from picamera2 import Picamera2

    holder = Picamera2(0)  # another program has camera 0
    try:
        report = describe_cameras([], H264Settings())
        result = run_cli(monkeypatch)
    finally:
        holder.close()

    assert not report.ok and len(report.problems) == 1
    assert report.problems[0].startswith("cam0 (camera 0, imx219): cannot open camera 0")
    assert "Device or resource busy" in report.problems[0]
    assert report.cameras[0].frames == 0 and report.cameras[1].measured_fps == pytest.approx(30, abs=0.1)
    assert result.exit_code == 1
    assert "vergence cameras: cam0 (camera 0, imx219): " in result.stderr and "busy" in result.stderr
    assert "FAILS       cannot open camera 0" in result.stdout and "camera 1: imx708" in result.stdout


def test_a_camera_that_stops_delivering_fails_naming_it(monkeypatch):
    rig = use_fake_libcamera(monkeypatch, ["imx219", "imx708"])
    rig.camera(1).stall_after = 1  # a loose cable: one frame, then nothing until the camera is restarted
    report = describe_cameras([], H264Settings())
    assert [problem.split(":")[0] for problem in report.problems] == ["cam1 (camera 1, imx708)"]
    assert "delivered no frame" in report.problems[0]
    assert report.cameras[1].frames == 1 and report.cameras[0].error is None
    assert rig.camera(1).acquires == rig.camera(1).releases


def test_all_streaming_exits_0_and_json_has_the_same_facts(monkeypatch):
    use_fake_libcamera(monkeypatch, ["imx219", "imx708"])
    result = run_cli(monkeypatch, "--json", "--frames", "3")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["problems"] == []
    assert [camera["model"] for camera in data["cameras"]] == ["imx219", "imx708"]
    assert data["cameras"][1]["mode"]["size"] == [2304, 1296] and data["cameras"][1]["frames"] == 3
    assert data["cameras"][1]["scaler_crop"]["max"] == [0, 0, 4608, 2592] and data["cameras"][1]["sync"] is True
    assert data["h264"]["setting"] == "auto" and data["h264"]["encoder"] in ("libx264", "h264_v4l2m2m")


def test_no_camera_exits_1_saying_so(monkeypatch):
    rig = use_fake_libcamera(monkeypatch, ["imx219"])
    monkeypatch.setattr(rig, "cameras", lambda: [])  # nothing on the connectors
    report = describe_cameras([], H264Settings())
    assert report.cameras == [] and report.problems == [NO_CAMERA]
    result = run_cli(monkeypatch)
    assert result.exit_code == 1 and "no camera found" in result.stderr


def test_a_configured_camera_that_is_not_there_is_named(monkeypatch):
    use_fake_libcamera(monkeypatch, ["imx219"])
    report = describe_cameras([configured("cam0"), configured("cam1")], H264Settings(), frames=1)
    assert [camera.stream for camera in report.cameras] == ["cam0", "cam1"]
    assert report.problems == ["cam1 (camera 1): no camera 1: picamera2 sees 1"]


def test_different_tunings_for_two_configured_cameras_are_a_problem(monkeypatch, tmp_path):
    use_fake_libcamera(monkeypatch, ["imx219", "imx708"])
    tuning = tmp_path / "mine.json"
    tuning.write_text(json.dumps({"version": 2.0, "algorithms": [{"rpi.agc": {}}]}))
    cameras = [configured("cam0"), configured("cam1", options={"tuning_file": str(tuning)})]
    report = describe_cameras(cameras, H264Settings(), frames=0)
    assert len(report.problems) == 1 and "libcamera loads one tuning file per process" in report.problems[0]
    assert f"cam1: {tuning}" in report.problems[0]


def test_without_picamera2_the_install_hint_is_given(monkeypatch):
    hide_picamera2(monkeypatch)
    report = describe_cameras([], H264Settings())
    assert report.problems == [f"picamera2 is not installed: {INSTALL_HINT}"] and report.cameras == []
    result = run_cli(monkeypatch)
    assert result.exit_code == 1 and INSTALL_HINT in result.stderr


def test_a_tuning_file_libcamera_cannot_load_is_named_for_every_camera_it_hides(monkeypatch, tmp_path):
    use_fake_libcamera(monkeypatch, ["imx219", "imx708"])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    cameras = [configured("cam0", options={"tuning_file": str(broken)}), configured("cam1")]
    report = describe_cameras(cameras, H264Settings(), frames=2)
    assert report.problems == [
        f"cam0 (camera 0, imx219): camera 0 is gone once tuning {broken} is loaded: libcamera cannot use that file",
        f"cam1 (camera 1, imx708): camera 1 is gone since libcamera could not load cam0's tuning {broken}: "
        "picamera2 keeps that camera manager, and its tuning, for the whole process",
    ]
