"""`vergence bench tracking`: the tracking methods side by side on the test camera's target (`options.target = orbit`,
200 sensor pixels a second, on the camera-like scene), measured against the camera's own truth.

Two runs per method, each `seconds` long at the camera's real pace:
- **follow**: the loop as the server runs it: each sighting moves the zoom-2 view (control/tracking.py's aim), so the
  view moves under the tracker every frame;
- **still view**: the view stays in the middle; the target's circle takes it under the test camera's sweeping box and
  clock, so it is hidden now and then and must be found again.
Reported: the tracker's cost per frame (ms, p50 and p95), its error against the truth (sensor pixels, median and p95,
over the frames it says it tracks), the share of frames it tracks the right thing (error under half the target's
radius), how often it lost the target, and how far from the view's centre the target was (follow).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from vergence import ptz
from vergence.config import CameraSettings
from vergence.control.tracking import next_centre
from vergence.pipeline.tracking import METHODS, TargetTracker
from vergence.sources.testpattern import TARGET_SIZE_OF_HEIGHT, TestPatternSource

ZOOM = 2.0
MAX_ZOOM = 8.0


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))] if ordered else math.nan


def run_one(method: str, follow: bool, seconds: float, width: int, height: int, fps: float) -> dict[str, Any]:
    source = TestPatternSource(
        CameraSettings(id="cam0", size=f"{width}x{height}", fps=fps, options={"scene": "camera", "target": "orbit"})
    )
    source.open()
    sensor = source.sensor_geometry()
    assert sensor is not None
    output = (width, height)
    state = ptz.PtzState(0.5, 0.5, ZOOM)
    crop = ptz.crop_for(state, sensor, output, MAX_ZOOM)
    if follow:  # start with the target in the middle, as after a user picked it
        x, y = source.target_position(source._scene_s())  # type: ignore[misc]
        state = ptz.look_at(state, x, y, sensor, output, MAX_ZOOM)
        crop = ptz.crop_for(state, sensor, output, MAX_ZOOM)
    source.set_crop(crop)
    frame = source.read()
    x, y = source.target_position(source._scene_s() - source._period_s)  # type: ignore[misc]
    scale = width / crop.width
    u, v = (x - crop.x) * scale, (y - crop.y) * scale
    half = 0.06 * height
    start = ((u - half) / width, (v - half) / height, (u + half) / width, (v + half) / height)
    full = (0, 0, sensor.width, sensor.height)
    tracker = TargetTracker("cam0", method, start, lambda s: None, lambda: (False, False), lambda: full, 0.3)
    tracker.close()  # its thread ends: the bench calls look() itself, timing the tracker alone
    tracker.look(frame)
    radius = TARGET_SIZE_OF_HEIGHT * sensor.height
    costs, errors, offsets = [], [], []
    tracked = right = losses = 0
    previous = "tracking"
    frames = round(seconds * fps)
    for _ in range(frames):
        frame = source.read()
        truth = source.target_position(source._scene_s() - source._period_s)
        sighting = tracker.look(frame)
        costs.append(sighting.cost_ms)
        if sighting.state == "lost" and previous != "lost":
            losses += 1
        previous = sighting.state
        target = sighting.target
        if sighting.state == "tracking" and target is not None and truth is not None:
            tracked += 1
            error = math.hypot(target.x - truth[0], target.y - truth[1])
            errors.append(error)
            right += error < radius / 2
        if truth is not None:
            centre = (crop.x + crop.width / 2, crop.y + crop.height / 2)
            offsets.append(max(abs(truth[0] - centre[0]) / crop.width, abs(truth[1] - centre[1]) / crop.height))
        if follow and sighting.state == "tracking" and target is not None:
            centre = (crop.x + crop.width / 2, crop.y + crop.height / 2)
            # Sighting and crop change happen at once here: the frame's age is the time spent looking.
            moved = next_centre(target, centre, crop.width, int(sighting.cost_ms * 1e6), 1 / fps, 1)
            if moved is not None:
                state = ptz.look_at(state, moved[0], moved[1], sensor, output, MAX_ZOOM)
                crop = ptz.crop_for(state, sensor, output, MAX_ZOOM)
                source.set_crop(crop)
    source.close()
    return {
        "method": method,
        "run": "follow" if follow else "still view",
        "frames": frames,
        "cost_ms_p50": statistics.median(costs),
        "cost_ms_p95": _percentile(costs, 0.95),
        "error_px_p50": statistics.median(errors) if errors else math.nan,
        "error_px_p95": _percentile(errors, 0.95),
        "tracked": tracked / frames,
        "on_target": right / frames,
        "losses": losses,
        "worst_offset": max(offsets) if follow and offsets else math.nan,
    }


def run(
    seconds: float = 10.0, size: str = "1280x720", fps: float = 30.0, json_out: Path | None = None
) -> list[dict[str, Any]]:
    width, height = (int(value) for value in size.split("x"))
    results = [run_one(method, follow, seconds, width, height, fps) for method in METHODS for follow in (True, False)]
    print(f"tracking {size}@{fps:g}, target at 200 sensor px/s, zoom {ZOOM:g}, {seconds:g} s per run")
    print("| method | run | cost ms p50 | p95 | error px p50 | p95 | tracked | on target | losses | worst offset |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['method']} | {r['run']} | {r['cost_ms_p50']:.2f} | {r['cost_ms_p95']:.2f} | "
            f"{r['error_px_p50']:.1f} | {r['error_px_p95']:.1f} | {r['tracked']:.0%} | {r['on_target']:.0%} | "
            f"{r['losses']} | {r['worst_offset']:.3f} |"
        )
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2))
    return results
