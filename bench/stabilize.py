"""`python -m bench.stabilize`: speed and shake reduction of the Stabilizer on a synthetic shaken sequence.

The sequence is a window onto a textured scene twice the frame's size, moved each frame by a seeded random jitter
(translation and rotation, independent per frame: the white, high-frequency shake a stabilizer is for) plus an optional
steady pan. The residual motion is what a viewer sees: the mean magnitude of the phase-correlation shift between
consecutive luma planes (centre region), in output pixels, of the raw and of the stabilized sequence. The stabilized
output is zoomed in by the crop margin, which magnifies its residual too; no allowance is made for that.

The unit tests share `shaken_sequence` and `MotionMeter` (tests/support/shaken.py).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from tests.support.shaken import WARMUP_FRAMES, MotionMeter, shaken_sequence
from vergence.pipeline.stabilize import Stabilizer


def run(frames: int = 300, width: int = 1280, height: int = 720) -> dict[str, Any]:
    """Stabilize a shaken sequence; return the speed of `process()` alone and the residual motion raw vs stabilized."""
    stabilizer = Stabilizer(width, height)
    raw, stabilized = MotionMeter(width, height, skip=WARMUP_FRAMES), MotionMeter(width, height, skip=WARMUP_FRAMES)
    times_ms: list[float] = []
    for image in shaken_sequence(frames, width, height):
        started = time.perf_counter()
        output = stabilizer.process(image)
        times_ms.append((time.perf_counter() - started) * 1e3)
        raw.add(image[:height])
        stabilized.add(output[:height])
    ordered = sorted(times_ms)
    residual_raw, residual_stabilized = raw.mean_px, stabilized.mean_px
    return {
        "frames": frames,
        "size": f"{width}x{height}",
        "fps": 1e3 / statistics.fmean(times_ms),
        "ms_p50": ordered[len(ordered) // 2],
        "ms_p95": ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
        "residual_raw_px": residual_raw,
        "residual_stabilized_px": residual_stabilized,
        "reduction": 1.0 - residual_stabilized / residual_raw if residual_raw else 0.0,
        "lost_frames": stabilizer.lost_frames,
    }


def main() -> None:
    """Run the benchmark and print a one-line summary and a markdown table row."""
    r = run()
    print(
        f"stabilize {r['size']} x{r['frames']}: {r['fps']:.0f} fps, "
        f"p50 {r['ms_p50']:.1f} ms, p95 {r['ms_p95']:.1f} ms, "
        f"residual {r['residual_raw_px']:.2f} px → {r['residual_stabilized_px']:.2f} px ({r['reduction']:.0%} less)"
    )
    print(
        f"| {r['size']} | {r['fps']:.0f} | {r['ms_p50']:.1f} | {r['ms_p95']:.1f} | {r['residual_raw_px']:.2f} | "
        f"{r['residual_stabilized_px']:.2f} | {r['reduction']:.0%} |"
    )


if __name__ == "__main__":
    main()
