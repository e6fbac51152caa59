"""`vergence bench dual`: two 1280x720@30 cameras, PTZ moving on both, two WebSocket viewers each; server CPU.

The cameras are test cameras, or (`source="picamera2"`) two Raspberry Pi cameras in stereo with software sync: on a Pi the
real ones (`fake=False`), elsewhere the installed picamera2 over the source tree's fake libcamera (tests/fakes), whose
pictures cost this machine what the fake spends drawing them, not what a Pi's ISP does.
"""

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

from bench import ROOT
from bench.latency import _Server, serve_argv

CONFIG = """
[[cameras]]
id = "cam0"
source = "{source}"
size = "{size}"
fps = {fps}
{options0}

[[cameras]]
id = "cam1"
source = "{source}"
size = "{size}"
fps = {fps}
{options1}
"""
FAKES_DIR = ROOT / "tests" / "fakes"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _viewer(url: str, stop: threading.Event, counts: dict[str, int], key: str) -> None:
    with connect(url, max_size=None, open_timeout=10) as ws:
        while not stop.is_set():
            message = ws.recv(timeout=5)
            if isinstance(message, bytes):
                counts[key] += 1


def websocket_viewer_cpu(port: int, pids: list[int], seconds: float, stream: str = "cam0") -> dict[str, float]:
    """One WebSocket viewer of `stream` alone for `seconds` (after its first second of frames): the CPU of `pids`
    (cores) and the viewer's frame rate. The yardstick other deliveries (RTSP, WHIP) are measured against."""
    stop = threading.Event()
    counts = {"ws": 0}
    viewer = threading.Thread(target=_viewer, args=(f"ws://127.0.0.1:{port}/ws/video/{stream}", stop, counts, "ws"))
    viewer.start()
    try:
        deadline = time.monotonic() + 20
        while counts["ws"] < 30 and time.monotonic() < deadline:
            time.sleep(0.05)  # poll interval of a deadline loop: the encoder starts, the viewer gets its first GOP
        cpu0, t0, frames0 = sum(_cpu_seconds(pid) for pid in pids), time.monotonic(), counts["ws"]
        time.sleep(seconds)  # the measuring window
        cpu1, t1, frames1 = sum(_cpu_seconds(pid) for pid in pids), time.monotonic(), counts["ws"]
    finally:
        stop.set()
        viewer.join(timeout=10)
    return {"server_cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 3), "fps": round((frames1 - frames0) / (t1 - t0), 1)}


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


def _camera_config(source: str, size: str, fps: float) -> str:
    if source == "picamera2":  # stereo eyes: the left one sets the frame timing, the right one follows it
        return CONFIG.format(
            source=source,
            size=size,
            fps=fps,
            options0='options = { sync = "server" }',
            options1='options = { sync = "client" }',
        )
    scene = 'options = { scene = "camera" }'  # the test camera as hard to encode as a real one
    return CONFIG.format(source=source, size=size, fps=fps, options0=scene, options1=scene)


def run(
    seconds: float = 20.0,
    size: str = "1280x720",
    fps: float = 30.0,
    viewers: int = 2,
    source: str = "testpattern",
    model: str = "imx708",
    fake: bool = True,
) -> dict[str, Any]:
    """Measure and print the server's CPU while both cameras stream, move and are watched."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = Path(tempfile.mkdtemp(prefix="vergence-dual-"))
    config = workdir / "dual.toml"
    config.write_text(_camera_config(source, size, fps))
    argv = serve_argv(port, "--config", str(config))
    os.environ.setdefault("VERGENCE_STATE__PATH", str(workdir / "state.json"))
    env: dict[str, str] | None = None
    if source == "picamera2" and fake:
        env = {
            "PYTHONPATH": os.pathsep.join([str(FAKES_DIR), os.environ.get("PYTHONPATH", "")]),
            "VERGENCE_FAKE_LIBCAMERA_SENSORS": f"{model},{model}",
        }
    base = f"http://127.0.0.1:{port}"
    with _Server(argv, f"{base}/api/streams", workdir / "vergence.log", "vergence", env=env) as server:
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
        "source": source
        if source != "picamera2"
        else f"picamera2 ({'fake libcamera, ' + model if fake else 'cameras'})",
        "size": size,
        "fps": fps,
        "viewers_per_camera": viewers,
        "seconds": round(t1 - t0, 1),
        "server_cpu_cores": round(cores, 3),
        "viewer_fps": {key: round(value, 1) for key, value in fps_by_viewer.items()},
        "stages_ms": {cid: s["stages_ms"] for cid, s in stats["streams"].items()},
        "camera": {cid: s.get("camera", {}) for cid, s in stats["streams"].items()},
    }
    print(
        f"two cameras ({results['source']}) {size}@{fps:g}, PTZ moving on both, {viewers} WS viewers each, "
        f"{results['seconds']} s"
    )
    print(f"server CPU: {cores:.2f} cores of {os.cpu_count()} ({cores * 100:.0f} % of one core); goal ≤ 1 core")
    print("viewer fps: " + ", ".join(f"{key} {value:.1f}" for key, value in results["viewer_fps"].items()))
    for cid, stages in results["stages_ms"].items():
        print(f"  {cid} stages ms: {stages}")
    print("RESULT: " + ("PASS" if cores <= 1.0 else "FAIL"))
    return results
