"""`vergence bench dual`: two 1280x720@30 test cameras, PTZ moving on both, two WebSocket viewers each; server CPU."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from vergence.bench.latency import _Server, serve_argv

CONFIG = """
[[cameras]]
id = "cam0"
size = "{size}"
fps = {fps}

[[cameras]]
id = "cam1"
size = "{size}"
fps = {fps}
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _viewer(url: str, stop: threading.Event, counts: dict[str, int], key: str) -> None:
    with connect(url, max_size=None, open_timeout=10) as ws:
        while not stop.is_set():
            message = ws.recv(timeout=5)
            if isinstance(message, bytes):
                counts[key] += 1


def _mover(base: str, stop: threading.Event) -> None:
    """Keep PTZ moving on both cameras: zoom in and out, pan to and fro, resent every half second."""
    direction = 1.0
    while not stop.wait(0.5):
        direction = -direction if time.monotonic() % 4 < 0.5 else direction
        for camera in ("cam0", "cam1"):
            body = json.dumps({"zoom_per_s": 0.6 * direction, "pan_per_s": 0.3 * direction, "duration_s": 1}).encode()
            request = urllib.request.Request(
                f"{base}/api/cameras/{camera}/ptz/velocity",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(request, timeout=5).read()


def run(seconds: float = 20.0, size: str = "1280x720", fps: float = 30.0, viewers: int = 2) -> dict[str, Any]:
    """Measure and print the server's CPU while both cameras stream, move and are watched."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = Path(tempfile.mkdtemp(prefix="vergence-dual-"))
    config = workdir / "dual.toml"
    config.write_text(CONFIG.format(size=size, fps=fps))
    argv = serve_argv(port, "--config", str(config))
    os.environ.setdefault("VERGENCE_STATE__PATH", str(workdir / "state.json"))
    base = f"http://127.0.0.1:{port}"
    with _Server(argv, f"{base}/api/streams", workdir / "vergence.log", "vergence") as server:
        assert server.proc is not None
        stop = threading.Event()
        counts = {f"cam{c}#{v}": 0 for c in range(2) for v in range(viewers)}
        threads = [
            threading.Thread(
                target=_viewer, args=(f"ws://127.0.0.1:{port}/ws/video/{key.split('#')[0]}", stop, counts, key)
            )
            for key in counts
        ]
        threads.append(threading.Thread(target=_mover, args=(base, stop)))
        for thread in threads:
            thread.start()
        time.sleep(
            3
        )  # warm-up: encoders start, viewers get their first GOP (a fixed warm-up, not a wait for a condition)
        start_counts = dict(counts)
        cpu0, t0 = _cpu_seconds(server.proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = _cpu_seconds(server.proc.pid), time.monotonic()
        end_counts = dict(counts)
        stats = json.loads(urllib.request.urlopen(f"{base}/api/stats", timeout=5).read())
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    cores = (cpu1 - cpu0) / (t1 - t0)
    fps_by_viewer = {key: (end_counts[key] - start_counts[key]) / (t1 - t0) for key in counts}
    results: dict[str, Any] = {
        "size": size,
        "fps": fps,
        "viewers_per_camera": viewers,
        "seconds": round(t1 - t0, 1),
        "server_cpu_cores": round(cores, 3),
        "viewer_fps": {key: round(value, 1) for key, value in fps_by_viewer.items()},
        "stages_ms": {cid: s["stages_ms"] for cid, s in stats["streams"].items()},
    }
    print(f"two cameras {size}@{fps:g}, PTZ moving on both, {viewers} WS viewers each, {results['seconds']} s")
    print(f"server CPU: {cores:.2f} cores of {os.cpu_count()} ({cores * 100:.0f} % of one core); goal ≤ 1 core")
    print("viewer fps: " + ", ".join(f"{key} {value:.1f}" for key, value in results["viewer_fps"].items()))
    for cid, stages in results["stages_ms"].items():
        print(f"  {cid} stages ms: {stages}")
    print("RESULT: " + ("PASS" if cores <= 1.0 else "FAIL"))
    return results
