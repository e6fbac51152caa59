"""The Stabilizer on synthetic shaken sequences: shake removed, pans followed, clean resets, blank frames survived."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.shaken import WARMUP_FRAMES, MotionMeter, shaken_sequence
from vergence.media.frame import i420_planes
from vergence.pipeline.stabilize import Stabilizer

W, H = 1280, 720
FRAMES = 90


def grey(width: int, height: int, level: int = 128) -> np.ndarray:
    return np.full((height * 3 // 2, width), level, np.uint8)


def test_cuts_frame_to_frame_shake_by_80_percent() -> None:
    stabilizer = Stabilizer(W, H)
    # The first frames are left out of both measures: the first is the trajectory's reference and the smoother starts
    # at rest on it, so its output only settles into the steady state being judged after a few frames.
    raw, stabilized = MotionMeter(W, H, skip=WARMUP_FRAMES), MotionMeter(W, H, skip=WARMUP_FRAMES)
    raw_u, stabilized_u = (
        MotionMeter(W // 2, H // 2, skip=WARMUP_FRAMES),
        MotionMeter(W // 2, H // 2, skip=WARMUP_FRAMES),
    )
    for image in shaken_sequence(FRAMES, W, H, jitter_px=12.0, jitter_deg=0.5, seed=3):
        output = stabilizer.process(image)
        raw.add(image[:H])
        stabilized.add(output[:H])
        raw_u.add(i420_planes(image, W, H)[1])
        stabilized_u.add(i420_planes(output, W, H)[1])

    assert raw.mean_px > 8.0  # the shake is real: ±12 px per frame
    assert stabilized.mean_px <= 0.2 * raw.mean_px
    # The colour planes are warped with their own map; they must steady as much as the luma, not drift or shake apart.
    assert stabilized_u.mean_px <= 0.2 * raw_u.mean_px
    assert stabilizer.lost_frames == 0


def test_follows_a_slow_pan() -> None:
    pan = 2.0
    stabilizer = Stabilizer(W, H)
    meter = MotionMeter(W, H)
    for image in shaken_sequence(FRAMES, W, H, pan_px_per_frame=pan, seed=5):
        meter.add(stabilizer.process(image)[:H])

    # Once the smoother has caught up with the pan (its delay is constant from then on) the view moves with the camera:
    # the scene slides left by `pan` source pixels a frame, magnified by the crop's zoom.
    shifts = np.array(meter.shifts[30:]) / stabilizer.zoom
    moved_x, moved_y = shifts.sum(axis=0)
    intended = -pan * len(shifts)
    assert moved_x == pytest.approx(intended, rel=0.1)
    assert abs(moved_y) < 0.1 * abs(intended)
    # ...and stays steady while it pans: what remains around the pan is small next to the ±12 px shake.
    assert np.hypot(shifts[:, 0] + pan, shifts[:, 1]).mean() < 2.0


def test_reset_gives_a_clean_start() -> None:
    sequence = shaken_sequence(25, W, H, seed=7)
    stabilizer = Stabilizer(W, H)
    for image in (next(sequence) for _ in range(20)):
        stabilizer.process(image)
    assert np.hypot(*stabilizer.last_correction[:2]) > 0.5

    stabilizer.reset()
    image = next(sequence)
    output = stabilizer.process(image)

    assert stabilizer.last_correction == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(output, Stabilizer(W, H).process(image))  # as if it had never seen a frame


def test_first_frame_without_margin_is_unchanged() -> None:
    image = next(shaken_sequence(1, W, H, seed=9))
    np.testing.assert_array_equal(Stabilizer(W, H, margin=0.0).process(image), image)


def test_blank_frames_pass_through() -> None:
    stabilizer = Stabilizer(W, H)
    for _ in range(5):
        output = stabilizer.process(grey(W, H))
        assert output.shape == (H * 3 // 2, W)
        np.testing.assert_array_equal(output, grey(W, H))
    assert stabilizer.lost_frames == 4  # every frame after the reference: nothing to track, so no motion assumed
    assert stabilizer.last_correction == (0.0, 0.0, 0.0)


def test_survives_the_picture_going_blank_and_back() -> None:
    sequence = shaken_sequence(20, W, H, seed=11)
    stabilizer = Stabilizer(W, H)
    images = [next(sequence) for _ in range(10)] + [grey(W, H, 16)] * 3 + list(sequence)
    outputs = [stabilizer.process(image) for image in images]
    assert all(output.shape == images[0].shape for output in outputs)
    assert stabilizer.lost_frames >= 2


@pytest.mark.parametrize(("width", "height"), [(640, 480), (1280, 720), (322, 180), (160, 90)])
def test_output_matches_the_input_format(width: int, height: int) -> None:
    stabilizer = Stabilizer(width, height)
    previous = None
    for image in shaken_sequence(3, width, height, jitter_px=width / 100):
        output = stabilizer.process(image)
        assert output.shape == image.shape
        assert output.dtype == np.uint8
        assert not np.shares_memory(output, image)
        assert previous is None or not np.shares_memory(output, previous)  # a held output is never overwritten
        previous = output


def test_correction_never_exceeds_the_margin() -> None:
    width, height, margin = 640, 360, 0.08
    stabilizer = Stabilizer(width, height, margin=margin)
    # Shake far beyond what the crop can hide: the correction saturates at the margin instead of showing borders.
    for image in shaken_sequence(30, width, height, jitter_px=80.0, jitter_deg=3.0, seed=13):
        stabilizer.process(image)
        dx, dy, _angle = stabilizer.last_correction
        assert abs(dx) <= margin * width + 1e-6
        assert abs(dy) <= margin * height + 1e-6


def test_rejects_frames_of_another_format() -> None:
    stabilizer = Stabilizer(W, H)
    with pytest.raises(ValueError, match="I420"):
        stabilizer.process(grey(640, 360))
    with pytest.raises(ValueError, match="I420"):
        stabilizer.process(grey(W, H).astype(np.float32))
    with pytest.raises(ValueError, match="even"):
        Stabilizer(641, 360)
