"""`vergence bench rtsp`: capture→decoded latency through `[rtsp]` with GStreamer as the client, and what it costs.

A server on the camera-like scene serves RTSP; GStreamer (`rtspsrc latency=0 ! rtph264depay ! avdec_h264`, pictures to
a pipe: tests/support/rtsp_client.py) plays it over TCP, then over UDP. Each decoded picture's age is its arrival here
minus the capture time the test camera painted into it; frames lost are capture instants with no picture. Beside it,
side by side on the same server: the server's CPU (with its RTSP process) while one RTSP client plays, against one
WebSocket viewer, each alone.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.dual import _cpu_seconds, websocket_viewer_cpu
from bench.latency import _Server, serve_argv
from tests.support.rtsp_client import captured_between, gstreamer, read_pictures

CONFIG = """
[[cameras]]
id = "cam0"
size = "{size}"
fps = {fps:g}
options = {{ scene = "{scene}" }}
[rtsp]
enabled = true
host = "127.0.0.1"
port = {rtsp_port}
"""
WARMUP_FRAMES = 30  # the first second: the client's decoder and the encoder settle


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return found


def _cpu(pids: list[int]) -> float:
    return sum(_cpu_seconds(pid) for pid in pids)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def run(
    seconds: float = 10.0,
    size: str = "1280x720",
    fps: float = 30.0,
    scene: str = "camera",
    json_out: Path | None = None,
) -> dict[str, Any]:
    """Measure and print RTSP's capture→decoded latency (GStreamer) and its CPU against one WebSocket viewer."""
    port, rtsp_port = _free_port(), _free_port()
    width, height = (int(side) for side in size.lower().split("x"))
    workdir = Path(tempfile.mkdtemp(prefix="vergence-rtsp-"))
    config = workdir / "rtsp.toml"
    config.write_text(CONFIG.format(size=size, fps=fps, scene=scene, rtsp_port=rtsp_port))
    base, url = f"http://127.0.0.1:{port}", f"rtsp://127.0.0.1:{rtsp_port}/cam0"
    argv = serve_argv(port, "--config", str(config))
    env = {"VERGENCE_STATE__PATH": str(workdir / "state.json")}
    count = int(seconds * fps) + WARMUP_FRAMES
    results: dict[str, Any] = {"size": size, "fps": fps, "scene": scene, "seconds": seconds}
    with _Server(argv, f"{base}/api/streams", workdir / "vergence.log", "vergence", env=env) as server:
        assert server.proc is not None
        pids = [server.proc.pid, *_children(server.proc.pid)]  # the server and its RTSP process
        for transport in ("tcp", "udp"):
            cpu0, t0 = _cpu(pids), time.monotonic()
            pictures = read_pictures(gstreamer(url, transport), width, height, count, timeout_s=seconds + 60)
            cpu1, t1 = _cpu(pids), time.monotonic()
            measured = pictures[WARMUP_FRAMES:]
            ages = [(arrived - code) / 1e6 for code, arrived in measured]
            results[transport] = {
                "latency_ms": {
                    "p50": round(_percentile(ages, 0.5), 2),
                    "p95": round(_percentile(ages, 0.95), 2),
                    "min": round(min(ages), 2),
                },
                "decoded": len(measured),
                "captured": captured_between(measured, fps),
                "server_cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 3),
            }
        results["websocket"] = websocket_viewer_cpu(port, pids, seconds)
        stats = json.loads(urllib.request.urlopen(f"{base}/api/stats", timeout=5).read())
        results["rtsp_service"] = stats["services"]["rtsp"]
    for transport in ("tcp", "udp"):
        row = results[transport]
        latency = row["latency_ms"]
        print(
            f"RTSP over {transport} {size}@{fps:g} ({scene} scene), GStreamer: capture→decoded p50 {latency['p50']} ms, "
            f"p95 {latency['p95']} ms, min {latency['min']} ms; {row['decoded']} pictures of {row['captured']} "
            f"captured; server + RTSP process {100 * row['server_cpu_cores']:.1f} % of a core"
        )
    print(
        f"one WebSocket viewer instead: server {100 * results['websocket']['server_cpu_cores']:.1f} % of a core "
        f"({results['websocket']['fps']} fps)"
    )
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    run()
