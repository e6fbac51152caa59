import time

import numpy as np

from vergence.config import CameraSettings
from vergence.media import timecode
from vergence.media.frame import i420_planes
from vergence.sources.testpattern import TestPatternSource


def test_frames_move_and_carry_their_capture_time():
    source = TestPatternSource(CameraSettings(size="320x240", fps=60))
    info = source.open()
    assert (info.width, info.height, info.fps) == (320, 240, 60)
    first, second = source.read(), source.read()
    assert first.image.shape == (360, 320) and first.pix_fmt == "yuv420p"
    assert second.seq == first.seq + 1 and second.pts > first.pts
    assert not np.array_equal(first.image, second.image)
    y, u, v = i420_planes(first.image, 320, 240)
    assert timecode.read(y) == first.capture_ns // 1000 * 1000
    source.close()


def test_close_unblocks_a_waiting_read_and_is_idempotent():
    import threading

    from vergence.errors import SourceEnded

    source = TestPatternSource(CameraSettings(size="64x48", fps=0.5))
    source.open()
    source.read()
    failures = []

    def reader():
        try:
            source.read()
        except SourceEnded as err:
            failures.append(err)

    thread = threading.Thread(target=reader)
    thread.start()
    source.close()
    source.close()
    thread.join(timeout=2)
    assert not thread.is_alive() and len(failures) == 1


def test_holds_30_fps_within_half_a_percent_over_20_seconds():
    source = TestPatternSource(CameraSettings(size="640x360", fps=30))
    source.open()
    first = source.read()
    started = time.monotonic()
    since_first_ns = [0]
    while time.monotonic() - started < 20.0:
        since_first_ns.append(source.read().capture_ns - first.capture_ns)
    # The rate is the slope of capture time over frame number. frames / (last - first) hangs on the two end frames: one
    # drawn 100 ms late (the reading thread descheduled on a busy machine; the source catches up after) moved it 0.5 %.
    period_ns = np.polyfit(np.arange(len(since_first_ns)), np.array(since_first_ns, dtype=np.float64), 1)[0]
    fps = 1e9 / period_ns
    assert abs(fps - 30.0) <= 30.0 * 0.005, fps
    source.close()


def test_flip_mirrors_the_scene_but_keeps_the_overlays_readable():
    plain = TestPatternSource(CameraSettings(size="320x240", fps=30))
    mirrored = TestPatternSource(CameraSettings(size="320x240", fps=30))
    plain.open()
    mirrored.open()
    mirrored.set_flip(True, False)
    mirrored._t0 = plain._t0  # opened on the same frame instant (they may straddle one): the same view of the scene
    a, b = plain.read(), mirrored.read()
    rows = slice(80, 150)  # below the time code and text, above the sweeping box
    assert np.array_equal(b.image[rows], a.image[rows][:, ::-1])
    assert timecode.read(i420_planes(b.image, 320, 240)[0]) == b.capture_ns // 1000 * 1000


def test_two_cameras_opened_a_frame_apart_show_the_same_scene_at_the_same_instant():
    early = TestPatternSource(CameraSettings(size="320x240", fps=30))
    late = TestPatternSource(CameraSettings(size="320x240", fps=30))
    early.open()
    late.open()
    late._t0 = early._t0 + late._period_s  # as when the second camera opens during the first one's first frame
    rows = slice(80, 150)  # below the time code and text, above the sweeping box
    now_ns = time.time_ns()
    early._slot, late._slot = 1, 0  # the same instant of the grid, each camera's own frame number
    same_instant = early._draw(now_ns), late._draw(now_ns)
    assert np.array_equal(same_instant[0][rows], same_instant[1][rows])
    late._slot = 1  # a frame later the scene has moved on
    assert not np.array_equal(same_instant[0][rows], late._draw(now_ns)[rows])


def test_the_camera_scene_keeps_the_time_code_and_has_fresh_noise_in_every_frame():
    source = TestPatternSource(CameraSettings(size="320x240", fps=60, options={"scene": "camera"}))
    source.open()
    frame = source.read()
    assert timecode.read(i420_planes(frame.image, 320, 240)[0]) == frame.capture_ns // 1000 * 1000
    # The same instant of the scene drawn twice differs only by its noise: grain of about LUMA_NOISE_SIGMA levels.
    source._slot = 5
    first = source._draw(0)[200:240].astype(np.int16)
    again = source._draw(0)[200:240].astype(np.int16)
    difference = float(np.std(first - again))
    assert 1.5 < difference < 3.5, difference  # two independent draws: sqrt(2) × the noise's 1.7
    simple = TestPatternSource(CameraSettings(size="320x240", fps=60))
    simple.open()
    simple._slot = 5
    assert np.array_equal(simple._draw(0)[200:240], simple._draw(0)[200:240])  # the simple scene has none
    source.close()
    simple.close()


def test_an_unknown_scene_is_a_clear_error():
    import pytest

    from vergence.errors import ConfigError

    with pytest.raises(ConfigError, match="options.scene must be one of simple, camera"):
        TestPatternSource(CameraSettings(size="320x240", options={"scene": "forest"}))
