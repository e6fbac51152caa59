"""The picamera2 source through the real picamera2 package, over the fake libcamera (tests/fakes/libcamera): geometry,
sensor modes, crops, flips, tuning, sync, close."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import hide_picamera2, use_fake_libcamera
from vergence.config import CameraSettings
from vergence.errors import ConfigError, SourceEnded
from vergence.ptz import Rect
from vergence.sources.base import create_source
from vergence.sources.picamera2 import Picamera2Source

SENSOR_SIZES = {"imx219": (3280, 2464), "imx477": (4056, 3040), "imx708": (4608, 2592)}
DEADLINE_S = 5.0


def camera(camera_id: str = "cam0", size: str = "320x240", fps: float = 30, **options: str) -> CameraSettings:
    return CameraSettings(id=camera_id, source="picamera2", size=size, fps=fps, options=options)


def read_until(source: Picamera2Source, predicate, deadline_s: float = DEADLINE_S):
    """Read frames until one satisfies `predicate`; fail at the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        frame = source.read()
        if predicate(frame):
            return frame
    pytest.fail("no matching frame before the deadline")


def wait_for(condition, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met before the deadline")
        time.sleep(0.005)  # polling interval, not a wait for something to happen


def expected_picture(model: str, crop: Rect, size: tuple[int, int], hflip: bool = False) -> np.ndarray:
    from libcamera.scene import render_i420

    return render_i420(model, crop.as_tuple(), size, hflip, False, 1.0, True)


def test_the_picamera2_under_test_is_the_real_package(monkeypatch):
    use_fake_libcamera(monkeypatch)
    import libcamera
    import picamera2

    assert "site-packages" in picamera2.__file__, picamera2.__file__
    assert Path(libcamera.__file__).parent.parent == Path(__file__).resolve().parents[1] / "fakes"


@pytest.mark.parametrize("model", sorted(SENSOR_SIZES))
def test_geometry_and_frames_for_each_sensor(monkeypatch, model):
    rig = use_fake_libcamera(monkeypatch, [model])
    source = create_source(camera(size="360x240"))  # rows of 2·align64(180) = 384 bytes: padded, and handled
    assert isinstance(source, Picamera2Source) and source.crops_at_sensor
    opened_ns = time.time_ns()
    info = source.open()
    try:
        assert (info.width, info.height, info.fps) == (360, 240, 30)
        width, height = SENSOR_SIZES[model]
        geometry = source.sensor_geometry()
        assert geometry is not None
        assert (geometry.width, geometry.height) == (width, height)
        assert geometry.crop_max == Rect(0, 0, width, height)  # a full-field sensor mode: the whole view
        assert info.sensor_mode is not None and info.sensor_mode["crop"] == [0, 0, width, height]
        frames = [source.read() for _ in range(3)]
        for frame in frames:
            assert frame.pix_fmt == "yuv420p" and frame.image.shape == (360, 360)
            assert (frame.width, frame.height, frame.camera) == (360, 240, "cam0")
            assert frame.limited_range  # the video colour space (SMPTE170M below 1280x720)
            # On the wall clock: read out after the camera started, exposed for at most a frame before that.
            assert opened_ns - 1_000_000_000 // 30 <= frame.capture_ns <= time.time_ns()
        assert [f.seq for f in frames] == [0, 1, 2] and frames[0].pts < frames[1].pts < frames[2].pts
        crop = Rect(800, 600, 1800, 1200)
        source.set_crop(crop)
        read_until(source, lambda frame: np.array_equal(frame.image, expected_picture(model, crop, (360, 240))))
        assert rig.camera(0).configures >= 1 and rig.camera(0).starts == 1
    finally:
        source.close()
    assert rig.camera(0).releases == 1 and rig.camera(0).stops == 1


@pytest.mark.parametrize(
    ("model", "size", "fps", "mode", "field"),
    [
        ("imx708", "1280x720", 30, (2304, 1296), (0, 0, 4608, 2592)),  # libcamera alone: 1536x864, a 3072x1728 window
        ("imx219", "1280x720", 30, (1640, 1232), (0, 0, 3280, 2464)),  # libcamera alone: the 1920x1080 centre window
        ("imx477", "1280x720", 30, (2028, 1520), (0, 0, 4056, 3040)),
        ("imx219", "640x480", 60, (640, 480), (1000, 752, 1280, 960)),  # only the windowed mode reaches 60 fps
    ],
)
def test_the_widest_sensor_mode_that_reaches_the_frame_rate(monkeypatch, model, size, fps, mode, field):
    rig = use_fake_libcamera(monkeypatch, [model])
    source = create_source(camera(size=size, fps=fps))
    info = source.open()
    try:
        source.read()
        applied = rig.camera(0).configs[-1]
        assert applied.mode.size == mode and applied.mode.analog_crop == field
        assert not applied.raw  # no raw buffers: the sensor configuration picks the mode
        assert source.sensor_geometry().crop_max == Rect(*field)
        assert info.sensor_mode["size"] == list(mode) and info.sensor_mode["crop"] == list(field)
    finally:
        source.close()


def test_a_sensor_mode_can_be_named(monkeypatch):
    rig = use_fake_libcamera(monkeypatch, ["imx708"])
    source = create_source(camera(size="1280x720", sensor_mode="1536x864"))
    source.open()
    try:
        assert rig.camera(0).configs[-1].mode.size == (1536, 864)
        assert source.sensor_geometry().crop_max == Rect(768, 432, 3072, 1728)
    finally:
        source.close()
    with pytest.raises(ConfigError, match="has no 1000x1000 mode"):
        create_source(camera(sensor_mode="1000x1000")).open()
    with pytest.raises(ConfigError, match="options.sensor_mode"):
        create_source(camera(sensor_mode="big"))


def test_options_choose_camera_and_flips(monkeypatch):
    rig = use_fake_libcamera(monkeypatch, ["imx219", "imx708"])
    source = create_source(camera("left", camera_index="1", hflip="true"))
    source.open()
    try:
        assert rig.camera(1).acquires == 1 and rig.camera(0).acquires == 0
        assert source.sensor_geometry().width == 4608
        assert source.camera_model == "imx708"
    finally:
        source.close()
    with pytest.raises(ConfigError, match="options.vflip"):
        create_source(camera(vflip="sideways"))
    with pytest.raises(ConfigError, match="options.camera_index"):
        create_source(camera(camera_index="first"))


def write_tuning(path: Path, sync: bool = True) -> Path:
    import json

    algorithms = [{"rpi.agc": {}}] + ([{"rpi.sync": {}}] if sync else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 2.0, "target": "pisp", "algorithms": algorithms}))
    return path


def test_a_tuning_file_by_name_is_found_where_raspberry_pi_os_keeps_them(monkeypatch, tmp_path):
    rig = use_fake_libcamera(monkeypatch, ["imx708"])
    monkeypatch.setenv("HOME", str(tmp_path))  # picamera2 looks in ~/libcamera/src/ipa/rpi/pisp/data first
    write_tuning(tmp_path / "libcamera/src/ipa/rpi/pisp/data/imx708_noir.json", sync=False)
    monkeypatch.chdir(tmp_path / "libcamera")  # a bare name is not a path in the working directory
    source = create_source(camera(tuning_file="imx708_noir.json"))
    source.open()  # handed to libcamera as it is, the name made the camera vanish
    try:
        source.read()
        assert source.tuning == "imx708_noir.json"
        assert rig.camera(0).tuning_data["algorithms"] == [{"rpi.agc": {}}]
    finally:
        source.close()
    with pytest.raises(ConfigError, match="not in the tuning directories"):
        create_source(camera(tuning_file="imx999.json")).open()


def test_a_tuning_file_by_path_is_used_and_one_tuning_is_shared_by_both_eyes(monkeypatch, tmp_path):
    rig = use_fake_libcamera(monkeypatch, ["imx219", "imx219"])
    tuning = write_tuning(tmp_path / "robot" / "eyes.json")
    monkeypatch.chdir(tmp_path)
    left = create_source(camera("cam0", tuning_file="robot/eyes.json"))  # relative to where vergence started
    left.open()
    monkeypatch.chdir("/")  # libcamera would resolve a relative name against the working directory of the moment
    right = create_source(camera("cam1", tuning_file=str(tuning)))
    other = create_source(camera("cam1", tuning_file=str(write_tuning(tmp_path / "other.json"))))
    try:
        with pytest.raises(ConfigError, match="one tuning file per process"):
            other.open()
        right.open()
        assert rig.camera(0).tuning == rig.camera(1).tuning == str(tuning)
    finally:
        left.close()
        right.close()
    with pytest.raises(ConfigError, match="no such file"):
        create_source(camera(tuning_file="/nowhere/eyes.json")).open()


def test_set_crop_is_one_live_control_placed_on_the_isp_grid(monkeypatch):
    rig = use_fake_libcamera(monkeypatch, ["imx477"])
    source = create_source(camera(size="320x240"))
    source.open()
    try:
        before = source.read()
        record = rig.camera(0)
        sent = len(record.requested_controls)
        source.set_crop(Rect(1001, 801, 1353, 1015))  # a binned mode moves in steps of 2 sensor pixels
        aligned = Rect(1000, 800, 1354, 1016)
        after = read_until(source, lambda frame: source.crop_landed)
        assert np.array_equal(after.image, expected_picture("imx477", aligned, (320, 240)))
        assert not np.array_equal(before.image, after.image)
        crops = [controls["ScalerCrop"] for controls in record.requested_controls[sent:] if "ScalerCrop" in controls]
        assert [c.as_tuple() for c in crops] == [aligned.as_tuple()]
        assert (record.starts, record.stops) == (1, 0)  # no restart
    finally:
        source.close()


def test_fake_places_a_crop_outside_the_sensor_as_libcamera_does(monkeypatch):
    use_fake_libcamera(monkeypatch, ["imx708"])
    from picamera2 import Picamera2

    with Picamera2(0) as picam:
        picam.configure(picam.create_video_configuration(main={"size": (320, 240), "format": "YUV420"}))
        assert picam.camera_configuration()["sensor"]["output_size"] == (1536, 864)  # libcamera's own choice
        assert picam.camera_properties["ScalerCropMaximum"] == (768, 432, 3072, 1728)
        picam.start()
        picam.set_controls({"ScalerCrop": (4600, 2580, 10, 10)})
        metadata = read_metadata_until(picam, lambda m: m["ScalerCrop"][2] < 200)
        # Grown to the minimum (32 mode pixels × binning 2, at the request's 1:1), moved inside the mode's window.
        assert metadata["ScalerCrop"] == (3776, 2096, 64, 64)
        with pytest.raises(RuntimeError, match="not advertised"):
            picam.set_controls({"Zoom": 2})


def read_metadata_until(picam, predicate):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        metadata = picam.capture_metadata(wait=DEADLINE_S)
        if predicate(metadata):
            return metadata
    pytest.fail("no matching metadata before the deadline")


def test_flipping_one_camera_restarts_only_that_camera(monkeypatch):
    rig = use_fake_libcamera(monkeypatch, ["imx219", "imx708"])
    cam0 = create_source(camera("cam0", fps=60))
    cam1 = create_source(camera("cam1", fps=60))
    cam0.open()
    cam1.open()
    stop = threading.Event()
    counts = {"cam0": 0, "cam1": 0}
    errors: list[BaseException] = []

    def reader(source, name):
        try:
            while not stop.is_set():
                source.read()
                counts[name] += 1
        except SourceEnded:
            pass
        except BaseException as err:  # surfaced by the assertion below
            errors.append(err)

    threads = [
        threading.Thread(target=reader, args=(s, n), name=f"read-{n}") for s, n in ((cam0, "cam0"), (cam1, "cam1"))
    ]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: counts["cam0"] >= 3 and counts["cam1"] >= 3)
        before0 = (rig.camera(0).starts, rig.camera(0).stops)
        configs1 = len(rig.camera(1).configs)
        for flips in ((True, False), (True, True), (False, False)):
            seen0 = counts["cam0"]
            cam1.set_flip(*flips)
            wait_for(lambda seen0=seen0: counts["cam0"] > seen0)  # cam0 kept delivering through cam1's restart
        seen1 = counts["cam1"]
        wait_for(lambda: counts["cam1"] > seen1)  # and cam1 came back
        assert (rig.camera(0).starts, rig.camera(0).stops) == before0 == (1, 0)
        assert (rig.camera(1).starts, rig.camera(1).stops) == (4, 3)
        assert len(rig.camera(1).configs) == configs1 + 3
    finally:
        stop.set()
        cam0.close()
        cam1.close()
        for thread in threads:
            thread.join(DEADLINE_S)
    assert not errors
    assert not any(thread.is_alive() for thread in threads)


def test_flip_keeps_the_crop_and_mirrors_the_picture(monkeypatch):
    use_fake_libcamera(monkeypatch, ["imx219"])
    source = create_source(camera())
    source.open()
    try:
        crop = Rect(400, 300, 1640, 1232)
        source.set_crop(crop)
        source.set_flip(True, False)
        expected = expected_picture("imx219", crop, (320, 240), hflip=True)
        read_until(source, lambda frame: np.array_equal(frame.image, expected))
    finally:
        source.close()


def test_missing_picamera2_is_a_config_error_naming_the_package(monkeypatch):
    hide_picamera2(monkeypatch)
    source = create_source(camera())  # choosing the backend never imports picamera2
    with pytest.raises(ConfigError, match="python3-picamera2"):
        source.open()


def test_close_unblocks_a_pending_read_and_is_idempotent(monkeypatch):
    rig = use_fake_libcamera(monkeypatch, ["imx219"])
    source = create_source(camera(fps=0.2))  # the next frame is 5 s away
    source.open()
    source.read()
    reading = threading.Event()
    outcome: list[BaseException] = []

    def reader():
        reading.set()
        try:
            source.read()
        except BaseException as err:
            outcome.append(err)

    thread = threading.Thread(target=reader, name="blocked-read")
    thread.start()
    assert reading.wait(DEADLINE_S)
    started = time.monotonic()
    source.close()
    assert time.monotonic() - started < 1.0
    thread.join(2.0)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], SourceEnded)
    source.close()
    assert rig.camera(0).releases == 1
    with pytest.raises(SourceEnded):
        source.read()


def test_camera_sync_puts_the_client_eye_on_the_server_eyes_frame_grid(monkeypatch):
    use_fake_libcamera(monkeypatch, ["imx219", "imx219"])
    server = create_source(camera("cam0", fps=30, sync="server", sync_frames="6"))
    client = create_source(camera("cam1", fps=30, sync="client", sync_frames="6"))
    client.open()  # first, as libcamera advises: it waits for the server
    read_until(client, lambda frame: True)
    server.open()
    try:
        ready0 = read_until(server, lambda frame: server.sync_ready)
        read_until(client, lambda frame: client.sync_ready)
        assert ready0.seq >= 5
        # In step: each client frame is exposed at the same instant as a server frame (within 1 ms).
        period_ns = 1e9 / 30
        for _ in range(5):
            a, b = server.read().capture_ns, client.read().capture_ns
            phase = (a - b) % period_ns
            assert min(phase, period_ns - phase) < 1_000_000, (a, b)
    finally:
        server.close()
        client.close()


def test_camera_sync_options_are_checked(monkeypatch):
    use_fake_libcamera(monkeypatch, ["imx219"])
    with pytest.raises(ConfigError, match="options.sync must be one of off, server, client"):
        create_source(camera(sync="leader"))
    with pytest.raises(ConfigError, match="options.sync_frames"):
        create_source(camera(sync="server", sync_frames="0"))


def test_sync_with_a_tuning_file_without_rpi_sync_is_said_not_silently_ignored(monkeypatch, tmp_path, caplog):
    use_fake_libcamera(monkeypatch, ["imx219"])
    tuning = write_tuning(tmp_path / "plain.json", sync=False)
    source = create_source(camera(sync="server", sync_frames="5", tuning_file=str(tuning)))
    source.open()
    try:
        with caplog.at_level("WARNING", logger="vergence.sources.picamera2"):
            for _ in range(35):
                source.read()
        assert not source.sync_ready
        assert "has no rpi.sync section" in caplog.text
    finally:
        source.close()


def test_fake_strides_and_colour_spaces_are_the_pi5s(monkeypatch):
    use_fake_libcamera(monkeypatch, ["imx708"])
    from picamera2 import Picamera2

    with Picamera2(0) as picam:
        for width, stride, colour in ((320, 384, "SMPTE170M"), (1296, 1408, "Rec709")):
            picam.configure(picam.create_video_configuration(main={"size": (width, 720), "format": "YUV420"}))
            assert picam.stream_configuration("main")["stride"] == stride  # 2·align64(w/2)
            space = picam.camera_configuration()["colour_space"]
            assert colour in str(space) and space.range.name == "Limited"
        picam.configure(picam.create_still_configuration(main={"format": "YUV420"}))
        assert picam.camera_configuration()["colour_space"].range.name == "Full"  # sYCC
