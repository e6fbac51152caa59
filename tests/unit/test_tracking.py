"""The tracker on the test camera's frames (the target's truth is the camera's own), its sensor mapping, the aim, and the
`track` command's forms."""

from __future__ import annotations

import math

import pytest

from vergence import ptz
from vergence.config import CameraSettings
from vergence.control.commands import TrackCommand
from vergence.control.parsing import parse_command
from vergence.control.pistreamer import translate
from vergence.control.tracking import GAIN, next_centre
from vergence.errors import InvalidCommand
from vergence.pipeline.tracking import OtherEye, Target, TargetTracker, View
from vergence.sources.testpattern import TestPatternSource

WIDTH, HEIGHT = 1280, 720
TARGETS = {"stream": ["cam0"], "output": []}


def camera(**options: str) -> TestPatternSource:
    source = TestPatternSource(
        CameraSettings(id="cam0", size=f"{WIDTH}x{HEIGHT}", fps=30, options={"target": "orbit", **options})
    )
    source.open()
    return source


def truth(source: TestPatternSource) -> tuple[float, float] | None:
    """Where the target was in the frame just read (sensor pixels)."""
    return source.target_position(source._scene_s() - source._period_s)


def around_target(source: TestPatternSource, dx: int = 0, dy: int = 0) -> ptz.Rect:
    """A zoom-2 view of the next frame with the target (dx, dy) from its middle: clear of the clock and the sweeping
    box that the test camera paints over the picture."""
    x, y = source.target_position(source._scene_s())
    return ptz.Rect(round(x) - WIDTH // 2 + dx, round(y) - HEIGHT // 2 + dy, WIDTH, HEIGHT)


def tracker_on(source: TestPatternSource, method: str = "template") -> TargetTracker:
    """A tracker started on the target in the next frame (its thread stopped: the test calls `look` itself)."""
    crop = around_target(source)
    source.set_crop(crop)
    frame = source.read()
    x, y = truth(source)
    u, v = x - crop.x, y - crop.y  # zoom 2: sensor pixels are picture pixels
    half = 0.06 * HEIGHT
    start = ((u - half) / WIDTH, (v - half) / HEIGHT, (u + half) / WIDTH, (v + half) / HEIGHT)
    tracker = TargetTracker(
        "cam0", method, start, lambda s: None, lambda: (False, False), lambda: (0, 0, 2560, 1440), 0.3
    )
    tracker.close()
    tracker.join(1)
    tracker.look(frame)
    return tracker


@pytest.mark.parametrize("scene", ["simple", "camera"])
def test_the_tracker_finds_the_target_on_the_sensor_while_the_view_jumps_about(scene):
    source = camera(scene=scene)
    tracker = tracker_on(source)
    errors = []
    for i in range(60):
        # A view that jumps every frame, back and forth: the target's moves in the picture are not its moves.
        crop = around_target(source, (i % 4 - 2) * 80, (i % 3 - 1) * 60)
        source.set_crop(crop)
        frame = source.read()
        sighting = tracker.look(frame)
        assert sighting.state == "tracking", (i, sighting.score)
        assert sighting.view.crop == crop.as_tuple()
        x, y = truth(source)
        errors.append(math.hypot(sighting.target.x - x, sighting.target.y - y))
    source.close()
    assert max(errors) < 4, f"the tracker was {max(errors):.1f} sensor pixels off"


def test_a_target_that_leaves_is_lost_after_lost_after_s_and_the_last_place_is_kept():
    source = camera(target_leave_s="1.5")
    tracker = tracker_on(source)
    states, last_seen = [], None
    for _ in range(90):
        if source.target_position(source._scene_s()) is not None:
            source.set_crop(around_target(source))
        frame = source.read()
        sighting = tracker.look(frame)
        states.append((frame.capture_ns, sighting.state))
        if truth(source) is not None:
            last_seen = truth(source)
    source.close()
    gone_ns = next(ns for ns, state in states if state != "tracking")
    lost_ns = next(ns for ns, state in states if state == "lost")
    assert 0.25 <= (lost_ns - gone_ns) / 1e9 <= 0.4  # lost_after_s = 0.3, counted in frames of 33 ms
    assert states[-1][1] == "lost"  # the scene has nothing like it: never taken back
    assert math.hypot(sighting.target.x - last_seen[0], sighting.target.y - last_seen[1]) < 20


def test_the_view_maps_picture_and_sensor_both_ways_mirrored_or_not():
    for flip in ((False, False), (True, False), (False, True), (True, True)):
        view = View((100, 50, 640, 360), 320, 180, flip)
        assert view.scale == 2
        x, y = view.to_sensor(10, 20)
        assert view.to_picture(x, y) == pytest.approx((10, 20))
    assert View((100, 50, 640, 360), 320, 180).to_sensor(10, 20) == (120, 90)
    assert View((100, 50, 640, 360), 320, 180, (True, False)).to_sensor(10, 20) == (100 + 310 * 2, 90)


def test_the_aim_leads_a_moving_target_and_a_still_one_inside_the_dead_band_holds_the_view():
    period = 1 / 30
    moving = Target(1000, 500, 80, 80, vx=300, vy=0)
    # Seen 10 ms ago; the crop lands one frame on; and the trail of moving GAIN of the way: (1 - GAIN) / GAIN frames.
    lead_s = (1 + (1 - GAIN) / GAIN) * period
    aim_x = 1000 + 300 * lead_s
    x, y = next_centre(moving, (1000, 500), 1280, 10_000_000, period, 1)
    assert x == pytest.approx(1000 + GAIN * (aim_x - 1000)) and y == pytest.approx(500)
    # A frame older than a frame interval: one frame more of lead; a crop that lands 3 frames on: two more.
    later = next_centre(moving, (1000, 500), 1280, 40_000_000, period, 3)
    assert later[0] == pytest.approx(1000 + GAIN * 300 * (4 + (1 - GAIN) / GAIN) * period)
    still = Target(1005, 502, 80, 80)
    assert next_centre(still, (1000, 500), 1280, 0, period, 1) is None
    assert next_centre(Target(1100, 500, 80, 80), (1000, 500), 1280, 0, period, 1) == (1050, 500)


def test_track_commands_in_every_form():
    assert parse_command("track cam0 40,60", TARGETS).model_dump(exclude_none=True) == {
        "type": "track", "action": "start", "stream": "cam0", "x": 40, "y": 60
    }  # fmt: skip
    boxed = parse_command("track 10,20,30,40", TARGETS)
    assert isinstance(boxed, TrackCommand) and boxed.box == (10, 20, 30, 40)
    assert parse_command("track stop", TARGETS).action == "stop"
    assert parse_command({"type": "track", "point_px": [560, 290]}, TARGETS).point_px == (560, 290)
    for bad in ("track 10", "track 1,2,3", "track 30,20,10,40", "track 150,20", "track"):
        with pytest.raises(InvalidCommand):
            parse_command(bad, TARGETS)
    with pytest.raises(InvalidCommand, match="one target"):
        parse_command({"type": "track", "x": 1, "y": 2, "box": [1, 2, 3, 4]}, TARGETS)
    with pytest.raises(InvalidCommand, match="no target"):
        parse_command({"type": "track", "action": "stop", "x": 1, "y": 2}, TARGETS)


def test_pistreamer_tracking_lines_are_track_commands():
    assert translate("init_tracking_poi", "560,290") == {"type": "track", "point_px": ["560", "290"]}
    assert translate("stop_tracking", "") == {"type": "track", "action": "stop"}
    with pytest.raises(InvalidCommand):
        translate("init_tracking_poi", "560")


def test_on_a_stereo_pair_the_tracker_finds_the_target_in_the_right_eye_at_its_disparity():
    left, right = camera(scene="camera"), camera(scene="camera", target_disparity="40")
    full = (0, 0, 2560, 1440)
    eye = OtherEye(lambda: (False, False), lambda: full, 16_000_000)
    crop = around_target(left)
    for source in (left, right):
        source.set_crop(crop)
    first = left.read()
    right.read()
    x, y = truth(left)
    u, v, half = x - crop.x, y - crop.y, 0.06 * HEIGHT
    start = ((u - half) / WIDTH, (v - half) / HEIGHT, (u + half) / WIDTH, (v + half) / HEIGHT)
    tracker = TargetTracker("stereo", "template", start, lambda s: None, lambda: (False, False), lambda: full, 0.3, eye)
    tracker.close()
    tracker.look(first)
    errors = []
    for i in range(30):
        crop = around_target(left, (i % 3 - 1) * 40)
        left.set_crop(crop)
        right.set_crop(ptz.Rect(crop.x - 30, crop.y, crop.width, crop.height))  # the right eye turned in a little
        sighting = tracker.look(left.read(), right.read())
        assert sighting.right is not None, i
        rx, ry = truth(right)
        errors.append(math.hypot(sighting.right[0] - rx, sighting.right[1] - ry))
    left.close()
    right.close()
    assert max(errors) < 3, errors


def test_the_calibration_gives_the_distance_of_a_sensor_disparity():
    import numpy as np

    from vergence.pipeline.depth import StereoCalibration

    matrix = np.array([[500.0, 0, 320], [0, 500.0, 180], [0, 0, 1]])
    shifted = np.array([[500.0, 0, 310], [0, 500.0, 180], [0, 0, 1]])
    calibration = StereoCalibration(
        matrix, np.zeros(5), shifted, np.zeros(5), np.eye(3), np.array([[-0.06], [0], [0]]), (640, 360)
    )
    # 40 sensor px on a 1280 px sensor is 20 px of the 640 px calibration; minus the principal points' 10 px: 10 px.
    assert calibration.distance(40, 1280) == pytest.approx(500 * 0.06 / 10)
    assert calibration.distance(20, 1280) is None  # at or beyond infinity
