"""Tracking as a viewer sees it: the test camera's target circles at 200 px/s, `track` is pointed at it, and the decoded
stream shows it held in the middle of the view; when it leaves the scene, `lost` is reported within a second.

The target is found in the decoded pictures by its colour (magenta: high U and V), independently of vergence's tracker.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from tests.conftest import ServerProcess, start_server
from tests.controlws import wait_for
from tests.integration.wsclient import VideoClient
from tests.media import H264Decoder
from vergence.media.frame import i420_planes

WIDTH, HEIGHT, FPS = 1280, 720, 30
FRAME_NS = 1e9 / FPS
CENTRE_TOLERANCE = 0.05  # of the crop's width and height
SECONDS = 10


def serve(directory: Path, options: str) -> ServerProcess:
    config = directory / "vergence.toml"
    config.write_text(
        f'[[cameras]]\nid = "cam0"\nsize = "{WIDTH}x{HEIGHT}"\nfps = {FPS}\n'
        f'options = {{ scene = "camera", target = "orbit"{options} }}\n[h264]\ngop_frames = 30\n'
    )
    return start_server(("--config", str(config)), directory / "server.log")


def target_in(frame) -> tuple[float, float] | None:
    """The magenta disc's centre in a decoded picture (pixels), or None when it is not in the picture."""
    _, u, v = i420_planes(frame.to_ndarray(format="yuv420p"), WIDTH, HEIGHT)
    ys, xs = np.nonzero((u > 200) & (v > 220))
    if len(xs) < 200:  # the whole disc is about 2,800 chroma samples at zoom 2; a sliver at the edge is not found
        return None
    return 2 * float(xs.mean()) + 1, 2 * float(ys.mean()) + 1


def command(server: ServerProcess, text: str) -> dict:
    answer = httpx.post(f"{server.url}/api/commands", content=text, headers={"Content-Type": "text/plain"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def frames(client: VideoClient, decoder: H264Decoder):
    """Decoded pictures with their headers, as they come."""
    while True:
        message = client.next()
        for frame in decoder.decode(message.payload):
            yield message.header, frame


def pick_target(pictures) -> tuple[float, float]:
    """The target's centre in % of a fresh picture (at most 50 ms old, as a user clicking a live picture sees it): the
    tracker holds what was at the point picked, so a point picked in an old picture is off the target by how far it
    moved since."""
    for _ in range(150):
        header, frame = next(pictures)
        found = target_in(frame)
        if found is not None and time.time_ns() - header.capture_ns < 50_000_000:
            return 100 * found[0] / WIDTH, 100 * found[1] / HEIGHT
    raise AssertionError("the target was never in a fresh picture")


def test_the_tracked_target_stays_in_the_middle_of_the_view_for_ten_seconds(tmp_path):
    server = serve(tmp_path, "")
    try:
        command(server, "ptz cam0 0.5 0.5 2")  # zoom 2: one sensor pixel is one picture pixel, room to pan
        with VideoClient.open(server.ws_url, "/ws/video/cam0") as client:
            decoder = H264Decoder()
            pictures = frames(client, decoder)
            x, y = pick_target(pictures)
            started = command(server, f"track cam0 {x:.2f},{y:.2f}")
            assert started["state"] == "tracking", started
            # The view swings over to the target (it may start a fifth of the view away), then holds it.
            offsets, captures, seqs = [], [], []
            deadline = time.monotonic() + 3
            for header, frame in pictures:
                where = target_in(frame)
                assert where is not None, f"the target left the view (offsets so far {offsets[-5:]})"
                offset = ((where[0] - WIDTH / 2) / WIDTH, (where[1] - HEIGHT / 2) / HEIGHT)
                centred = max(abs(offset[0]), abs(offset[1])) <= CENTRE_TOLERANCE
                if not offsets:
                    if not centred:
                        assert time.monotonic() < deadline, f"not centred 3 s after track: {offset}"
                        continue
                offsets.append(offset)
                captures.append(header.capture_ns)
                seqs.append(header.seq)
                if len(offsets) == SECONDS * FPS:
                    break
        state = command(server, "status")
    finally:
        server.stop()
    xs, ys = np.array([o[0] for o in offsets]), np.array([o[1] for o in offsets])
    worst = float(max(np.abs(xs).max(), np.abs(ys).max()))
    settled = FPS // 2  # the swing over to the target ends within half a second of its first centred frame
    steps = np.hypot(np.diff(xs[settled:]), np.diff(ys[settled:]))
    print(
        f"offset from the centre over {len(offsets)} frames: mean |x| {np.abs(xs).mean():.4f}, mean |y| "
        f"{np.abs(ys).mean():.4f}, worst {worst:.4f} of the view; frame-to-frame change after the swing-in mean "
        f"{steps.mean():.4f}, max {steps.max():.4f}"
    )
    assert worst <= CENTRE_TOLERANCE, f"the target strayed {worst:.3f} of the view from the centre"
    # Smooth: once the view has swung over, the target does not jump about in it (a swinging loop would move it by
    # more than the target moves itself: 200 px/s is 0.5 % of the view a frame).
    assert steps.max() <= 0.01, f"the target jumped {steps.max():.3f} of the view between two frames"
    # No frame missed: consecutive numbers, one frame interval apart.
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "frames were missed"
    gaps = np.diff(captures) / FRAME_NS
    assert gaps.max() < 1.5, f"a capture gap of {gaps.max():.2f} frame intervals"
    # Still on it (a moment of `searching` is a frame or two not found, under load; never `lost` or `idle`).
    assert state["tracking"]["cam0"]["state"] in ("tracking", "searching"), state["tracking"]
    assert state["tracking"]["cam0"]["cost_ms"] > 0


def test_a_target_that_leaves_the_scene_is_reported_lost_within_a_second_and_the_view_holds(tmp_path):
    server = serve(tmp_path, ', target_leave_s = "8"')
    try:
        command(server, "ptz cam0 0.5 0.5 2")
        with (
            connect(f"{server.ws_url}/ws/control", legacy=True) as control,
            VideoClient.open(server.ws_url, "/ws/video/cam0") as client,
        ):
            decoder = H264Decoder()
            pictures = frames(client, decoder)
            x, y = pick_target(pictures)  # it leaves 8 s after the camera opened
            command(server, f"track cam0 {x:.2f},{y:.2f}")
            gone_ns = None
            for header, frame in pictures:
                if target_in(frame) is None:
                    gone_ns = header.capture_ns
                    break
            seen: list = []
            lost = wait_for(
                control, lambda m: m.get("type") == "tracking" and m["state"] == "lost", "tracking lost", 5, seen
            )
            heard_ns = time.time_ns()
            states = [m["state"] for m in seen if m.get("type") == "tracking"]
            held = httpx.get(f"{server.url}/api/cameras/cam0/ptz", timeout=5).json()
            # The view holds: a second later it is where it was when the target was lost.
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline:
                _, frame = next(pictures)
            after = httpx.get(f"{server.url}/api/cameras/cam0/ptz", timeout=5).json()
    finally:
        server.stop()
    assert gone_ns is not None
    late_s = (heard_ns - gone_ns) / 1e9
    print(f"lost reported {late_s:.3f} s after the first frame without the target; states before: {set(states)}")
    assert late_s <= 1.0, f"lost reported {late_s:.2f} s after the target left"
    assert "tracking" in states, states
    assert lost["stream"] == "cam0" and "target" in lost  # where it was last seen
    assert (held["pan"], held["tilt"], held["zoom"]) == (after["pan"], after["tilt"], after["zoom"])
    assert held["zoom"] == 2.0


EYE_W, EYE_H = 640, 360
DISPARITY = 40  # sensor pixels: the right camera draws the target this far left
FOCAL, BASELINE = 500.0, 0.06  # the calibration's (at 640x360 over the whole 1280x720 sensor) and metres
DISTANCE = FOCAL * BASELINE / (DISPARITY * EYE_W / (2 * EYE_W))  # 1.5 m: disparity 40 sensor px is 20 calibration px


def targets_in_pair(frame) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """The target's centre in each eye's half of a side-by-side picture (pixels of that eye's picture)."""
    _, u, v = i420_planes(frame.to_ndarray(format="yuv420p"), 2 * EYE_W, EYE_H)
    found = []
    for half in (slice(0, EYE_W // 2), slice(EYE_W // 2, EYE_W)):
        ys, xs = np.nonzero((u[:, half] > 200) & (v[:, half] > 220))
        found.append(None if len(xs) < 100 else (2 * float(xs.mean()) + 1, 2 * float(ys.mean()) + 1))
    return found[0], found[1]


def green_in_pair(frame) -> tuple[int, int]:
    """Chroma samples of the tracking box's green (low U and V) in each eye's half of a side-by-side picture."""
    _, u, v = i420_planes(frame.to_ndarray(format="yuv420p"), 2 * EYE_W, EYE_H)
    green = (u < 80) & (v < 60)
    return int(green[:, : EYE_W // 2].sum()), int(green[:, EYE_W // 2 :].sum())


def test_on_the_stereo_pair_both_eyes_follow_and_turn_in_and_the_distance_is_reported(tmp_path):
    calibration = tmp_path / "stereo.npz"
    matrix = np.array([[FOCAL, 0, EYE_W / 2], [0, FOCAL, EYE_H / 2], [0, 0, 1]])
    np.savez(
        calibration, K1=matrix, D1=np.zeros(5), K2=matrix, D2=np.zeros(5), R=np.eye(3),
        T=np.array([-BASELINE, 0, 0]), image_width=EYE_W, image_height=EYE_H,
    )  # fmt: skip
    config = tmp_path / "vergence.toml"
    camera = f'size = "{EYE_W}x{EYE_H}"\nfps = {FPS}\n'
    config.write_text(
        f'[[cameras]]\nid = "cam0"\n{camera}options = {{ scene = "camera", target = "orbit" }}\n'
        f'[[cameras]]\nid = "cam1"\n{camera}'
        f'options = {{ scene = "camera", target = "orbit", target_disparity = "{DISPARITY}" }}\n'
        f'[stereo]\nenabled = true\ncalibration = "{calibration}"\n[h264]\ngop_frames = 30\n'
    )
    server = start_server(("--config", str(config)), tmp_path / "server.log")
    try:
        command(server, "stereo stereo 0 zoom=2")
        with VideoClient.open(server.ws_url, "/ws/video/stereo") as client:
            pictures = frames(client, H264Decoder())
            for _ in range(150):
                header, frame = next(pictures)
                left, right = targets_in_pair(frame)
                if left is not None and right is not None and time.time_ns() - header.capture_ns < 50_000_000:
                    break
            else:
                raise AssertionError("the target was never in both eyes of a fresh picture")
            # Before: the eyes look parallel, the target sits 40 px further left in the right eye.
            assert abs((left[0] - right[0]) - DISPARITY) < 4, (left, right)
            green_before = green_in_pair(frame)
            command(server, f"track stereo {100 * left[0] / EYE_W:.2f},{100 * left[1] / EYE_H:.2f}")
            # The eyes swing over and turn in; half a second after the first fixated frame they must hold it.
            disparities, offsets = [], []
            tracked_at = time.monotonic()
            fixated_at = None
            for _, frame in pictures:
                left, right = targets_in_pair(frame)
                assert left is not None and right is not None, f"the target left a view: {left}, {right}"
                disparity = left[0] - right[0], left[1] - right[1]
                offset = max(abs(left[0] / EYE_W - 0.5), abs(left[1] / EYE_H - 0.5))
                if fixated_at is None:
                    if abs(disparity[0]) > 4 or offset > CENTRE_TOLERANCE:
                        assert time.monotonic() < tracked_at + 3, f"not fixated 3 s after track: {disparity}, {offset}"
                        continue
                    fixated_at = time.monotonic()
                if time.monotonic() < fixated_at + 0.5:
                    continue
                disparities.append(disparity)
                green_after = green_in_pair(frame)
                offsets.append(offset)
                if len(disparities) == SECONDS * FPS:
                    break
        tracking = command(server, "status")["tracking"]["stereo"]
        stereo = httpx.get(f"{server.url}/api/stereo", timeout=5).json()
        # One tracking per camera: tracking on an eye alone ends the rig's.
        command(server, "track cam0 50,50")
        after = command(server, "status")["tracking"]
        assert after["stereo"]["state"] == "idle" and after["stereo"]["reason"] == "cam0 tracks now", after
        assert after["cam0"]["state"] != "idle"
    finally:
        server.stop()
    dx = np.array([d[0] for d in disparities])
    dy = np.array([d[1] for d in disparities])
    print(
        f"fixated {fixated_at - tracked_at:.2f} s after track; over {len(dx)} frames: disparity x mean {dx.mean():.2f} px, worst {np.abs(dx).max():.2f}; y worst "
        f"{np.abs(dy).max():.2f}; left eye offset worst {max(offsets):.4f}; vergence {stereo['vergence']:.4f}; "
        f"reported {tracking['target']}"
    )
    assert np.abs(dx).max() <= 4 and np.abs(dy).max() <= 4
    # The box shows in both eyes of the stereo stream, where each eye's crop puts the target.
    assert all(after > before + 100 for before, after in zip(green_before, green_after, strict=True)), (
        green_before,
        green_after,
    )
    # Held near the middle: centring within 5 % is the single camera's test; here the bound leaves room for where the
    # point was picked (the tracker holds what was there one frame after the command: further off under load).
    assert max(offsets) <= 2 * CENTRE_TOLERANCE
    # Turned in: the eyes' crops (640 sensor px wide at zoom 2) 40 px closer together.
    assert stereo["vergence"] == pytest.approx(DISPARITY / EYE_W, abs=0.005)
    assert tracking["state"] in ("tracking", "searching"), tracking  # never lost
    assert tracking["target"]["disparity_px"] == pytest.approx(DISPARITY, abs=2)
    assert tracking["target"]["distance"] == pytest.approx(DISTANCE, rel=0.05)
