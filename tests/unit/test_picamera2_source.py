"""The picamera2 source against the fake picamera2 (tests/fakes/picamera2): geometry, crops, flips, close."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.fakes import hide_picamera2, use_fake_picamera2
from vergence.config import CameraSettings
from vergence.errors import ConfigError, SourceEnded
from vergence.ptz import Rect
from vergence.sources.base import create_source
from vergence.sources.picamera2 import Picamera2Source

SENSOR_SIZES = {"imx219": (3280, 2464), "imx477": (4056, 3040), "imx708": (4608, 2592)}
DEADLINE_S = 5.0


def camera(camera_id: str = "cam0", size: str = "320x240", fps: float = 60, **options: str) -> CameraSettings:
    return CameraSettings(id=camera_id, source="picamera2", size=size, fps=fps, options=options)


def read_until(source: Picamera2Source, predicate, deadline_s: float = DEADLINE_S):
    """Read frames until one satisfies `predicate`; fail at the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        frame = source.read()
        if predicate(frame):
            return frame
    pytest.fail("no matching frame before the deadline")


@pytest.mark.parametrize("model", sorted(SENSOR_SIZES))
def test_geometry_and_frames_for_each_sensor(monkeypatch, model):
    fake = use_fake_picamera2(monkeypatch, [model])
    source = create_source(camera(size="360x240"))  # 360 is not a multiple of 64: rows come padded
    assert isinstance(source, Picamera2Source) and source.crops_at_sensor
    info = source.open()
    try:
        assert (info.width, info.height, info.fps) == (360, 240, 60)
        width, height = SENSOR_SIZES[model]
        geometry = source.sensor_geometry()
        assert geometry is not None
        assert (geometry.width, geometry.height) == (width, height)
        assert geometry.crop_max == Rect(0, 0, width, height)
        min_rect = fake.camera(0).sensor.crop_min
        assert (geometry.crop_min_width, geometry.crop_min_height) == min_rect
        frames = [source.read() for _ in range(3)]
        for frame in frames:
            assert frame.pix_fmt == "yuv420p" and frame.image.shape == (360, 360)
            assert (frame.width, frame.height, frame.camera) == (360, 240, "cam0")
            assert abs(frame.capture_ns - time.time_ns()) < 200_000_000
        assert [f.seq for f in frames] == [0, 1, 2] and frames[0].pts < frames[1].pts < frames[2].pts
        expected = fake.render(model, (0, 0, width, height), (360, 240))
        assert np.array_equal(frames[-1].image, expected)
        assert fake.camera(0).configures == 1 and fake.camera(0).starts == 1
    finally:
        source.close()
    assert fake.camera(0).closes == 1 and fake.camera(0).outstanding_requests == 0


def test_options_choose_camera_tuning_and_flips(monkeypatch):
    fake = use_fake_picamera2(monkeypatch, ["imx219", "imx708"])
    source = create_source(camera("left", camera_index="1", tuning_file="imx708_noir.json", hflip="true"))
    source.open()
    try:
        assert fake.camera(1).opens == 1 and fake.camera(0).opens == 0
        assert fake.camera(1).tunings == ["imx708_noir.json"]
        assert fake.camera(1).transforms == [(1, 0)]
        assert source.sensor_geometry().width == 4608
    finally:
        source.close()
    with pytest.raises(ConfigError, match="options.vflip"):
        create_source(camera(vflip="sideways"))
    with pytest.raises(ConfigError, match="options.camera_index"):
        create_source(camera(camera_index="first"))


def test_set_crop_is_one_live_control_and_changes_the_picture(monkeypatch):
    fake = use_fake_picamera2(monkeypatch, ["imx477"])
    source = create_source(camera(size="320x240"))
    source.open()
    try:
        before = source.read()
        state = fake.camera(0)
        calls_before = list(state.set_controls_calls)
        crop = Rect(1000, 800, 1352, 1014)
        source.set_crop(crop)
        assert state.set_controls_calls[len(calls_before) :] == [{"ScalerCrop": (1000, 800, 1352, 1014)}]
        expected = fake.render("imx477", crop.as_tuple(), (320, 240))
        after = read_until(source, lambda frame: np.array_equal(frame.image, expected))
        assert not np.array_equal(before.image, after.image)
        assert (state.configures, state.starts, state.stops) == (1, 1, 0)
    finally:
        source.close()


def test_fake_clamps_a_crop_outside_the_sensor_like_libcamera(monkeypatch):
    fake = use_fake_picamera2(monkeypatch, ["imx708"])
    from picamera2 import Picamera2

    with Picamera2(0) as picam:
        picam.configure(picam.create_video_configuration(main={"size": (320, 240), "format": "YUV420"}))
        picam.start()
        picam.set_controls({"ScalerCrop": (4600, 2580, 10, 10)})
        metadata = read_metadata_until(picam, lambda m: m["ScalerCrop"] != (0, 0, 4608, 2592))
        assert metadata["ScalerCrop"] == (4480, 2464, 128, 128)
        with pytest.raises(RuntimeError, match="not advertised"):
            picam.set_controls({"Zoom": 2})
    assert fake.camera(0).closes == 1


def read_metadata_until(picam, predicate):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        metadata = picam.capture_metadata()
        if predicate(metadata):
            return metadata
    pytest.fail("no matching metadata before the deadline")


def test_flipping_one_camera_restarts_only_that_camera(monkeypatch):
    fake = use_fake_picamera2(monkeypatch, ["imx219", "imx708"])
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
        before0 = (fake.camera(0).configures, fake.camera(0).starts, fake.camera(0).stops)
        for flips in ((True, False), (True, True), (False, False)):
            seen0 = counts["cam0"]
            cam1.set_flip(*flips)
            wait_for(lambda seen0=seen0: counts["cam0"] > seen0)  # cam0 kept delivering through cam1's restart
        seen1 = counts["cam1"]
        wait_for(lambda: counts["cam1"] > seen1)  # and cam1 came back
        assert (fake.camera(0).configures, fake.camera(0).starts, fake.camera(0).stops) == before0 == (1, 1, 0)
        assert (fake.camera(1).configures, fake.camera(1).starts, fake.camera(1).stops) == (4, 4, 3)
        assert fake.camera(1).transforms == [(0, 0), (1, 0), (1, 1), (0, 0)]
        assert fake.camera(0).transforms == [(0, 0)]
    finally:
        stop.set()
        cam0.close()
        cam1.close()
        for thread in threads:
            thread.join(DEADLINE_S)
    assert not errors
    assert not any(thread.is_alive() for thread in threads)


def test_flip_keeps_the_crop_and_mirrors_the_picture(monkeypatch):
    fake = use_fake_picamera2(monkeypatch, ["imx219"])
    source = create_source(camera())
    source.open()
    try:
        crop = Rect(400, 300, 1640, 1232)
        source.set_crop(crop)
        source.set_flip(True, False)
        expected = fake.render("imx219", crop.as_tuple(), (320, 240), hflip=True)
        read_until(source, lambda frame: np.array_equal(frame.image, expected))
    finally:
        source.close()


def wait_for(condition, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met before the deadline")
        time.sleep(0.005)  # polling interval, not a wait for something to happen


def test_missing_picamera2_is_a_config_error_naming_the_package(monkeypatch):
    hide_picamera2(monkeypatch)
    source = create_source(camera())  # choosing the backend never imports picamera2
    with pytest.raises(ConfigError, match="python3-picamera2"):
        source.open()


def test_close_unblocks_a_pending_read_and_is_idempotent(monkeypatch):
    fake = use_fake_picamera2(monkeypatch, ["imx219"])
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
    wait_for(lambda: fake.camera(0).frames == 1)  # (the read is now waiting inside capture_request, or about to)
    source.close()
    thread.join(2.0)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], SourceEnded)
    source.close()
    assert fake.camera(0).closes == 1
    with pytest.raises(SourceEnded):
        source.read()


def test_camera_sync_puts_the_client_eye_on_the_server_eyes_frame_grid(monkeypatch):
    fake = use_fake_picamera2(monkeypatch, ["imx219", "imx219"])
    server = create_source(camera("cam0", fps=60, sync="server", sync_frames="6"))
    client = create_source(camera("cam1", fps=60, sync="client", sync_frames="6"))
    client.open()  # first, as libcamera advises: it waits for the server
    read_until(client, lambda frame: True)
    server.open()
    try:
        assert fake.camera(0).set_controls_calls == []  # passed at configure time, with the frame rate
        ready0 = read_until(server, lambda frame: server.sync_ready)
        ready1 = read_until(client, lambda frame: client.sync_ready)
        assert ready0.seq >= 5 and ready1.seq >= 5
        # In step: each client frame is captured at the same instant as a server frame (the fake's clock is exact).
        period_ns = 1e9 / 60
        for _ in range(5):
            a, b = server.read().capture_ns, client.read().capture_ns
            phase = (a - b) % period_ns
            assert min(phase, period_ns - phase) < 200_000, (a, b)  # 0.2 ms: wall-clock conversion jitter only
    finally:
        server.close()
        client.close()


def test_camera_sync_options_are_checked(monkeypatch):
    use_fake_picamera2(monkeypatch, ["imx219"])
    with pytest.raises(ConfigError, match="options.sync must be one of off, server, client"):
        create_source(camera(sync="leader"))
    with pytest.raises(ConfigError, match="options.sync_frames"):
        create_source(camera(sync="server", sync_frames="0"))
