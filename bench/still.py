"""`python -m bench.still`: how long a full-resolution still stalls the live stream of a picamera2 camera.

The camera runs as in the server: a picamera2 source under a SourceSupervisor, whose capture thread delivers every frame
(here to a recorder of arrival times instead of the pipeline). N stills are taken one after another, each once enough
live frames followed the last; for each, the stall (the longest gap between two live frames around it, as the source
reports it and as the recorder saw it), the time until the still was in hand, and the JPEG encode of it (on this
thread, as the server does on a worker thread, with the live gap meanwhile, which should stay one frame time).

Without a Pi it runs the installed picamera2 over the fake libcamera of the source tree (tests/fakes), whose timing model (sensor mode frame
rates, buffer allocation, first frame one frame time after start) is documented there: the figures are the model's
plus this machine's copying, not a Pi's. With `fake=False` it uses the installed picamera2 and a real camera.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import ROOT
from vergence.config import CameraSettings
from vergence.errors import ConfigError
from vergence.media.frame import Frame
from vergence.sources.base import SourceInfo
from vergence.sources.supervisor import SourceSupervisor
from vergence.stills import STILL_QUALITY, encode_still

FAKES_DIR = ROOT / "tests" / "fakes"
SETTLE_FRAMES = 15  # live frames between two stills: the stream is back to its rate before the next one
TIMEOUT_S = 10.0


def _use_fake_libcamera(model: str) -> None:
    """Run the installed picamera2 over the source tree's fake libcamera, with one `model` sensor attached."""
    if not (FAKES_DIR / "libcamera").is_dir():
        raise ConfigError(f"the fake libcamera is in the source tree ({FAKES_DIR}): run from a checkout, or on a Pi")
    loaded = sys.modules.get("libcamera")
    if loaded is not None and not str(getattr(loaded, "__file__", "")).startswith(str(FAKES_DIR)):
        raise ConfigError("the real libcamera is already imported in this process")
    sys.path.insert(0, str(FAKES_DIR))
    import libcamera  # type: ignore[import-not-found]

    libcamera.rig.attach([model])


class _Arrivals:
    """The capture thread's frames, as arrival times; waits for a number of them."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._cond = threading.Condition()
        self.state = "stopped"

    def on_frame(self, frame: Frame) -> None:
        with self._cond:
            self.times.append(time.perf_counter())
            self._cond.notify_all()

    def on_state(self, state: str, message: str | None, info: SourceInfo | None) -> None:
        self.state = state
        if message:
            print(f"source {state}: {message}", file=sys.stderr)

    def wait(self, count: int) -> None:
        with self._cond:
            target = len(self.times) + count
            if not self._cond.wait_for(lambda: len(self.times) >= target, TIMEOUT_S):
                raise RuntimeError(f"fewer than {count} frames in {TIMEOUT_S:g} s (source {self.state})")

    def max_gap_ms(self, start: float, end: float) -> float:
        """Longest gap between consecutive frames, counting the frames either side of [start, end]."""
        with self._cond:
            times = list(self.times)
        first = max((i for i, at in enumerate(times) if at <= start), default=0)
        last = min((i for i, at in enumerate(times) if at >= end), default=len(times) - 1)
        window = times[first : last + 1]
        return max((b - a) * 1000 for a, b in zip(window, window[1:], strict=False)) if len(window) > 1 else 0.0


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(
    stills: int = 10,
    size: str = "1280x720",
    fps: float = 30.0,
    model: str = "imx708",
    fake: bool = True,
    json_out: Path | None = None,
) -> dict[str, Any]:
    """Take `stills` full-resolution stills from a `size`@`fps` picamera2 stream; print and return the stall figures."""
    if fake:
        _use_fake_libcamera(model)
    from vergence.sources.picamera2 import Picamera2Source

    camera = CameraSettings(id="cam0", source="picamera2", size=size, fps=fps)
    source = Picamera2Source(camera)
    arrivals = _Arrivals()
    supervisor = SourceSupervisor("cam0", lambda: source)
    supervisor.start(arrivals.on_frame, arrivals.on_state)
    rows: list[dict[str, Any]] = []
    try:
        arrivals.wait(SETTLE_FRAMES)
        for _ in range(stills):
            asked = time.perf_counter()
            still = source.capture_still(TIMEOUT_S)
            if still is None:
                raise RuntimeError("the picamera2 source took no still")
            arrivals.wait(1)
            seen_ms = arrivals.max_gap_ms(asked, time.perf_counter())
            encoding = time.perf_counter()
            jpeg = encode_still(still, STILL_QUALITY)
            encoded = time.perf_counter()
            arrivals.wait(2)
            rows.append(
                {
                    "size": f"{still.width}x{still.height}",
                    "reconfigured": still.reconfigured,
                    "stall_ms": still.stall_ms,
                    "gap_seen_ms": seen_ms,
                    "capture_ms": still.capture_ms,
                    "encode_ms": (encoded - encoding) * 1000,
                    "jpeg_bytes": len(jpeg),
                    "gap_during_encode_ms": arrivals.max_gap_ms(encoding, encoded),
                    **{f"{step}_ms": ms for step, ms in still.timings_ms.items()},
                }
            )
            arrivals.wait(SETTLE_FRAMES)
    finally:
        supervisor.stop()
    stalls = [row["stall_ms"] for row in rows]
    results: dict[str, Any] = {
        "camera": f"{'fake ' if fake else ''}{source.camera_model}",
        "video": f"{size}@{fps:g}",
        "still": rows[0]["size"] if rows else None,
        "stills": len(rows),
        "frame_ms": 1000 / fps,
        "stall_p50_ms": statistics.median(stalls),
        "stall_max_ms": max(stalls),
        "gap_seen_max_ms": max(row["gap_seen_ms"] for row in rows),
        "capture_p50_ms": statistics.median(row["capture_ms"] for row in rows),
        "encode_p50_ms": statistics.median(row["encode_ms"] for row in rows),
        "gap_during_encode_max_ms": max(row["gap_during_encode_ms"] for row in rows),
        "rows": rows,
    }
    _print(results)
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2))
    return results


def _print(r: dict[str, Any]) -> None:
    print(f"{r['camera']}, video {r['video']}, still {r['still']}, {r['stills']} stills:")
    print("| # | stall ms | gap seen ms | to still mode ms | still frame ms | to video ms | encode ms | JPEG kB |")
    print("|---|---|---|---|---|---|---|---|")
    for n, row in enumerate(r["rows"], 1):
        print(
            f"| {n} | {row['stall_ms']:.0f} | {row['gap_seen_ms']:.0f} | {row.get('to_still_mode_ms', 0):.0f} | "
            f"{row.get('still_frame_ms', 0):.0f} | {row.get('to_video_mode_ms', 0):.0f} | {row['encode_ms']:.0f} | "
            f"{row['jpeg_bytes'] / 1000:.0f} |"
        )
    print(
        f"stall p50 {r['stall_p50_ms']:.0f} ms, max {r['stall_max_ms']:.0f} ms (a frame is {r['frame_ms']:.1f} ms); "
        f"still in hand p50 {r['capture_p50_ms']:.0f} ms; JPEG encode p50 {r['encode_p50_ms']:.0f} ms, "
        f"live gap meanwhile at most {r['gap_during_encode_max_ms']:.0f} ms"
    )


def main() -> None:
    """Run with the defaults (fake imx708, 1280x720@30 video, 10 stills)."""
    run()


if __name__ == "__main__":
    main()
