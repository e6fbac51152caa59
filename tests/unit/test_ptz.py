import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from vergence import ptz
from vergence.ptz import PtzState, Rect, SensorGeometry, Velocity

OUTPUTS = [(640, 480), (1280, 720), (1920, 1080), (1536, 864)]

sensors = st.sampled_from(sorted(ptz.SENSORS)).map(ptz.SENSORS.__getitem__)
outputs = st.sampled_from(OUTPUTS)
max_zooms = st.floats(1.0, 16.0)
fractions = st.floats(-0.5, 1.5)
states = st.builds(PtzState, pan=fractions, tilt=fractions, zoom=st.floats(0.1, 40.0))
velocities = st.builds(Velocity, st.floats(-5, 5), st.floats(-5, 5), st.floats(-5, 5))

moves = st.one_of(
    st.tuples(st.just(ptz.zoom_to), st.floats(0.0, 40.0)),
    st.tuples(st.just(ptz.zoom_by), st.floats(0.1, 10.0)),
    st.tuples(st.just(ptz.pan_by), st.floats(-2, 2), st.floats(-2, 2)),
    st.tuples(st.just(ptz.set_center), fractions, fractions),
    st.tuples(st.just(ptz.integrate), velocities, st.floats(0.0, 0.2)),
)


def assert_valid(crop: Rect, sensor: SensorGeometry, output: tuple[int, int]) -> None:
    area = sensor.crop_max
    assert area.x <= crop.x and crop.x + crop.width <= area.x + area.width
    assert area.y <= crop.y and crop.y + crop.height <= area.y + area.height
    assert crop.width >= sensor.crop_min_width and crop.height >= sensor.crop_min_height
    assert all(v % 2 == 0 for v in crop.as_tuple())
    out_w, out_h = output
    assert abs(crop.height - crop.width * out_h / out_w) <= 1


def centre(crop: Rect) -> tuple[float, float]:
    return crop.x + crop.width / 2, crop.y + crop.height / 2


def touches_edge(crop: Rect, sensor: SensorGeometry) -> bool:
    area = sensor.crop_max
    return (
        crop.x <= area.x
        or crop.y <= area.y
        or crop.x + crop.width >= area.x + area.width
        or crop.y + crop.height >= area.y + area.height
    )


@given(sensors, outputs, max_zooms, st.lists(moves, max_size=30))
def test_any_sequence_of_moves_gives_a_valid_crop(sensor, output, max_zoom, sequence):
    state = PtzState.home()
    for move, *args in sequence:
        state = move(state, *args, sensor, output, max_zoom)
        assert_valid(ptz.crop_for(state, sensor, output, max_zoom), sensor, output)
        assert 1.0 <= state.zoom <= max_zoom


@given(sensors, outputs, max_zooms, states)
def test_any_state_gives_a_valid_crop(sensor, output, max_zoom, state):
    assert_valid(ptz.crop_for(state, sensor, output, max_zoom), sensor, output)


@given(sensors, outputs, max_zooms, states)
def test_clamp_is_idempotent_and_keeps_the_crop(sensor, output, max_zoom, state):
    clamped = ptz.clamp(state, sensor, output, max_zoom)
    assert ptz.clamp(clamped, sensor, output, max_zoom) == clamped
    assert ptz.crop_for(clamped, sensor, output, max_zoom) == ptz.crop_for(state, sensor, output, max_zoom)
    assert 0.0 <= clamped.pan <= 1.0 and 0.0 <= clamped.tilt <= 1.0


inner_states = st.builds(PtzState, pan=st.floats(0.25, 0.75), tilt=st.floats(0.25, 0.75), zoom=st.floats(2.0, 12.0))


@given(sensors, outputs, inner_states, st.floats(0.5, 3.0))
def test_zoom_is_centred(sensor, output, state, factor):
    before = ptz.crop_for(state, sensor, output, 16.0)
    assume(not touches_edge(before, sensor))
    zoomed = ptz.zoom_by(state, factor, sensor, output, 16.0)
    after = ptz.crop_for(zoomed, sensor, output, 16.0)
    assume(not touches_edge(after, sensor))
    (bx, by), (ax, ay) = centre(before), centre(after)
    assert abs(ax - bx) <= 1 and abs(ay - by) <= 1


def test_home_on_imx219_fills_the_width_and_is_vertically_centred():
    sensor = ptz.SENSORS["imx219"]
    crop = ptz.crop_for(PtzState.home(), sensor, (1280, 720), 8.0)
    assert (crop.x, crop.width) == (0, 3280)
    assert crop.height in (1844, 1846)
    assert abs(centre(crop)[1] - 2464 / 2) <= 1


def test_zoom_two_halves_each_side_around_the_centre():
    sensor = ptz.SENSORS["imx219"]
    home = ptz.crop_for(PtzState.home(), sensor, (1280, 720), 8.0)
    crop = ptz.crop_for(PtzState(zoom=2.0), sensor, (1280, 720), 8.0)
    assert crop.width == home.width // 2
    assert abs(crop.height - home.height / 2) <= 1
    assert abs(centre(crop)[0] - centre(home)[0]) <= 1 and abs(centre(crop)[1] - centre(home)[1]) <= 1


def test_height_limited_output_fills_the_height():
    crop = ptz.crop_for(PtzState.home(), ptz.SENSORS["imx708"], (640, 480), 8.0)
    assert crop == Rect(576, 0, 3456, 2592)


def test_zoom_stops_at_max_zoom_and_at_the_minimum_crop():
    sensor = ptz.SENSORS["imx219"]
    assert ptz.zoom_to(PtzState.home(), 100.0, sensor, (1280, 720), 4.0).zoom == 4.0
    assert ptz.zoom_to(PtzState.home(), 0.5, sensor, (1280, 720), 4.0).zoom == 1.0
    tiny = ptz.crop_for(PtzState(zoom=1000.0), ptz.virtual_sensor(640, 360), (1280, 720), 1000.0)
    # The 32 px minimum height at 16:9 forces a 57 px (so 58 px) wide crop: the aspect wins, the minimum still holds.
    assert tiny.height >= 32 and tiny.width == 58


def test_pan_step_is_a_fraction_of_the_current_crop():
    sensor = ptz.SENSORS["imx477"]
    for zoom in (2.0, 4.0):
        start = PtzState(zoom=zoom)
        before = ptz.crop_for(start, sensor, (1280, 720), 8.0)
        after = ptz.crop_for(ptz.pan_by(start, 0.25, -0.25, sensor, (1280, 720), 8.0), sensor, (1280, 720), 8.0)
        assert abs((after.x - before.x) - before.width / 4) <= 2
        assert abs((after.y - before.y) + before.height / 4) <= 2


def test_pan_at_full_width_reports_the_real_centre():
    sensor = ptz.SENSORS["imx219"]
    state = ptz.set_center(PtzState.home(), 0.0, 0.5, sensor, (1280, 720), 8.0)
    assert state.pan == pytest.approx(0.5)


def test_integrate_without_time_or_speed_returns_the_state_unchanged():
    sensor = ptz.SENSORS["imx219"]
    odd = PtzState(pan=3.0, tilt=-1.0, zoom=99.0)
    assert ptz.integrate(odd, Velocity(1.0, 1.0, 1.0), 0.0, sensor, (1280, 720), 8.0) is odd
    assert ptz.integrate(odd, Velocity(1.0, 1.0, 1.0), -0.1, sensor, (1280, 720), 8.0) is odd
    assert ptz.integrate(odd, Velocity(), 0.1, sensor, (1280, 720), 8.0) is odd


def test_integrate_zooms_at_a_log_rate():
    sensor = ptz.SENSORS["imx708"]
    state = PtzState.home()
    for _ in range(10):
        state = ptz.integrate(state, Velocity(zoom_per_s=math.log(2)), 0.1, sensor, (1920, 1080), 16.0)
    assert state.zoom == pytest.approx(2.0)


def test_integrate_pans_in_crop_widths_per_second():
    sensor = ptz.SENSORS["imx708"]
    start = PtzState(zoom=4.0)
    before = ptz.crop_for(start, sensor, (1920, 1080), 16.0)
    state = start
    for _ in range(5):
        state = ptz.integrate(state, Velocity(pan_per_s=1.0), 0.1, sensor, (1920, 1080), 16.0)
    after = ptz.crop_for(state, sensor, (1920, 1080), 16.0)
    assert abs((after.x - before.x) - before.width / 2) <= 6


def test_virtual_sensor_covers_the_scene():
    sensor = ptz.virtual_sensor(1920, 1080)
    assert sensor.crop_max == Rect(0, 0, 1920, 1080)
    assert (sensor.crop_min_width, sensor.crop_min_height) == (32, 32)
    assert ptz.crop_for(PtzState.home(), sensor, (1280, 720), 4.0) == Rect(0, 0, 1920, 1080)


def test_odd_crop_max_stays_even_aligned():
    sensor = SensorGeometry(1001, 801, Rect(3, 5, 995, 791), 16, 16)
    for state in (PtzState.home(), PtzState(0.0, 0.0, 3.0), PtzState(1.0, 1.0, 3.0)):
        assert_valid(ptz.crop_for(state, sensor, (1280, 720), 8.0), sensor, (1280, 720))


def test_bad_output_size_is_rejected():
    with pytest.raises(ValueError, match="output_size"):
        ptz.crop_for(PtzState.home(), ptz.SENSORS["imx219"], (0, 720), 8.0)


offsets = st.tuples(st.integers(-400, 400), st.integers(-400, 400))


@given(sensors, outputs, st.floats(-0.5, 0.5), st.floats(1.0, 8.0))
def test_vergence_moves_the_eyes_in_opposite_directions(sensor, output, vergence, zoom):
    state = PtzState(zoom=zoom)
    base = ptz.crop_for(state, sensor, output, 8.0)
    left, right = ptz.eye_crops(state, (0, 0), (0, 0), vergence, sensor, sensor, output, 8.0)
    assume(not touches_edge(left, sensor) and not touches_edge(right, sensor))
    assert left.x - base.x == base.x - right.x
    assert abs((left.x - right.x) - vergence * base.width) <= 2
    assert left.y == right.y == base.y
    assert (left.width, left.height) == (right.width, right.height) == (base.width, base.height)


def test_positive_vergence_converges():
    sensor = ptz.SENSORS["imx219"]
    state = PtzState(zoom=2.0)
    base = ptz.crop_for(state, sensor, (1280, 720), 8.0)
    left, right = ptz.eye_crops(state, (0, 0), (0, 0), 0.1, sensor, sensor, (1280, 720), 8.0)
    assert left.x == base.x + 82 and right.x == base.x - 82


def test_calibration_offsets_apply_per_eye():
    sensor = ptz.SENSORS["imx477"]
    state = PtzState(zoom=2.0)
    base = ptz.crop_for(state, sensor, (1280, 720), 8.0)
    left, right = ptz.eye_crops(state, (10, -20), (-6, 4), 0.0, sensor, sensor, (1280, 720), 8.0)
    assert (left.x - base.x, left.y - base.y) == (10, -20)
    assert (right.x - base.x, right.y - base.y) == (-6, 4)


@given(sensors, sensors, outputs, max_zooms, states, offsets, offsets, st.floats(-2.0, 2.0))
def test_eye_crops_stay_inside_each_sensor(sensor_left, sensor_right, output, max_zoom, state, lo, ro, vergence):
    left, right = ptz.eye_crops(state, lo, ro, vergence, sensor_left, sensor_right, output, max_zoom)
    assert_valid(left, sensor_left, output)
    assert_valid(right, sensor_right, output)
