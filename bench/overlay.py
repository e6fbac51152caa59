"""`python -m bench.overlay`: what `draw_overlays` costs per frame, with nothing, the time stamp, everything on.

Each case draws on a fresh copy of a test-pattern frame (the copy is outside the timing), with the capture time
advancing a frame period each time so the time stamp is re-rendered every frame as it is live.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from vergence.pipeline.overlay import OverlaySettings, RoiBox, TextItem, draw_overlays
from vergence.sources.testpattern import render_scene

FRAME_NS = 33_333_333  # 30 fps
ROIS = (
    RoiBox("door", 5, 10, 30, 60, "red"),
    RoiBox("car", 40, 30, 75, 70, "#00ff00"),
    RoiBox("gate", 70, 5, 95, 25, "cyan"),
    RoiBox("path", 10, 70, 45, 95, "orange"),
)
CASES = {
    "off": OverlaySettings(),
    "timestamp": OverlaySettings(timestamp=True),
    "everything": OverlaySettings(
        timestamp=True,
        crosshair=True,
        grid=True,
        rec=True,
        zoom=True,
        texts=[
            TextItem("cam0 north", 40, 5, "yellow"),
            TextItem("LIVE", 2, 30, "#ff00ff", 6.0),
            TextItem("entrance", 60, 80, "white", 3.0),
        ],
    ),
}


def _percentile(values: list[float], pct: float) -> float:
    return float(np.percentile(np.asarray(values), pct))


def run(frames: int = 300, width: int = 1280, height: int = 720) -> dict[str, dict[str, float]]:
    """Time `draw_overlays` per frame for each case; return {case: {"p50_ms", "p95_ms", "mean_ms"}}."""
    scene = cv2.cvtColor(render_scene(width, height), cv2.COLOR_BGR2YUV_I420)
    image = np.empty_like(scene)
    start_ns = time.time_ns()
    results: dict[str, dict[str, float]] = {}
    for name, settings in CASES.items():
        rois = ROIS if name == "everything" else ()
        times_ms: list[float] = []
        for n in range(frames):
            np.copyto(image, scene)
            started = time.perf_counter()
            draw_overlays(
                image,
                width,
                height,
                settings,
                capture_ns=start_ns + n * FRAME_NS,
                zoom=2.0,
                recording=True,
                rois=rois,
            )
            times_ms.append((time.perf_counter() - started) * 1000)
        results[name] = {
            "p50_ms": _percentile(times_ms, 50),
            "p95_ms": _percentile(times_ms, 95),
            "mean_ms": sum(times_ms) / len(times_ms),
        }
    return results


def main(frames: int = 300, width: int = 1280, height: int = 720) -> None:
    """Run the benchmark and print a markdown table."""
    results = run(frames, width, height)
    print(f"draw_overlays, {width}x{height}, {frames} frames per case\n")
    print("| overlays | p50 ms | p95 ms | mean ms |")
    print("|---|---:|---:|---:|")
    for name, stats in results.items():
        print(f"| {name} | {stats['p50_ms']:.3f} | {stats['p95_ms']:.3f} | {stats['mean_ms']:.3f} |")


if __name__ == "__main__":
    main()
