"""`vergence bench preview`: the local preview's capture→window latency and what it costs.

An Xvfb display of the picture's size, `vergence serve --preview` on it, and FFmpeg's x11grab (through PyAV) reading
the screen at twice the frame rate: each grabbed picture's age is the time it was grabbed minus the capture time the
test camera painted into it (the grab's own delay, up to one grab interval, is included). Beside it: the CPU of the
server and of ffplay, and the stream's H.264 packets (none: the preview encodes nothing).
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import av

from bench.dual import _cpu_seconds
from bench.latency import _Server, serve_argv
from tests.support.xvfb import virtual_display
from vergence.media import timecode


def _player_pid(server_pid: int) -> int:
    """The server's ffplay (started by a thread of the server, so a child of the process, found by its parent pid)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().rsplit(")", 1)
        except OSError:  # ended while we looked
            continue
        if name.endswith("(ffplay") and int(rest.split()[1]) == server_pid:
            return int(stat.parent.name)
    raise RuntimeError(f"no ffplay under the server {server_pid}")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def run(
    seconds: float = 10.0, size: str = "1280x720", fps: float = 30.0, json_out: Path | None = None
) -> dict[str, Any]:
    """Measure and print the preview's latency and cost."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = Path(tempfile.mkdtemp(prefix="vergence-preview-"))
    width, height = (int(side) for side in size.lower().split("x"))
    base = f"http://127.0.0.1:{port}"
    argv = serve_argv(port, "--preview", "--size", size, "--fps", f"{fps:g}")
    with virtual_display(width, height) as display:
        env = {"DISPLAY": display, "SDL_AUDIODRIVER": "dummy", "VERGENCE_STATE__PATH": str(workdir / "state.json")}
        with _Server(argv, f"{base}/api/streams", workdir / "vergence.log", "vergence", env=env) as server:
            assert server.proc is not None
            grab = av.open(display, format="x11grab", options={"video_size": size, "framerate": f"{2 * fps:g}"})
            frames = grab.decode(video=0)
            while not timecode.read(next(frames).to_ndarray(format="gray")):  # until the window shows a picture
                pass
            ages: list[float] = []
            player = _player_pid(server.proc.pid)
            cpu0 = (_cpu_seconds(server.proc.pid), _cpu_seconds(player), time.monotonic())
            grabbed = 0
            for frame in frames:
                now = time.time_ns()
                grabbed += 1
                code = timecode.read(frame.to_ndarray(format="gray"))
                if code:
                    ages.append((now - code) / 1e6)
                if time.monotonic() - cpu0[2] >= seconds:
                    break
            cpu1 = (_cpu_seconds(server.proc.pid), _cpu_seconds(player), time.monotonic())
            grab.close()
            stats = json.loads(urllib.request.urlopen(f"{base}/api/stats", timeout=5).read())
    elapsed = cpu1[2] - cpu0[2]
    stream = stats["streams"]["cam0"]
    results: dict[str, Any] = {
        "size": size,
        "fps": fps,
        "seconds": round(elapsed, 1),
        "grabs": grabbed,
        "window_latency_ms": {
            "p50": round(_percentile(ages, 0.5), 1),
            "p95": round(_percentile(ages, 0.95), 1),
            "min": round(min(ages), 1),
        },
        "server_cpu_cores": round((cpu1[0] - cpu0[0]) / elapsed, 3),
        "ffplay_cpu_cores": round((cpu1[1] - cpu0[1]) / elapsed, 3),
        "preview": stats["services"]["preview"],
        "h264_packets": stream["channels"]["h264"]["packets"],
    }
    latency = results["window_latency_ms"]
    print(
        f"preview {size}@{fps:g}: capture→window p50 {latency['p50']} ms, p95 {latency['p95']} ms "
        f"({len(ages)} of {grabbed} grabs read); server {100 * results['server_cpu_cores']:.1f} % of a core, "
        f"ffplay {100 * results['ffplay_cpu_cores']:.1f} %; H.264 packets {results['h264_packets']}; "
        f"pictures written {results['preview']['frames']}, skipped {results['preview']['skipped']}"
    )
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    run()
