"""`vergence bench whip`: what publishing over WHIP costs the server, against one WebSocket viewer.

Janus behind simple-whip-server (tests/support/janus.py, on the bench's private network: Janus does no ICE on loopback)
and a server on the camera-like scene with a `[[whip]]` output, off at first. Side by side on the same server: its CPU
with one WebSocket viewer alone, then with the WHIP session alone (the viewer gone, the output started by command);
the encode is the same in both, so the difference is what each delivery costs.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.netns import enter_private_network

CONFIG = """
[[cameras]]
id = "cam0"
size = "{size}"
fps = {fps:g}
options = {{ scene = "{scene}" }}
[[whip]]
id = "whip0"
stream = "cam0"
url = "{url}"
token = "bench-token"
enabled = false
"""
WARMUP_S = 3.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _output(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/api/outputs/whip0", timeout=5) as answer:
        return dict(json.loads(answer.read()))


def _switch(base: str, enabled: bool) -> None:
    body = json.dumps({"enabled": enabled}).encode()
    request = urllib.request.Request(
        f"{base}/api/outputs/whip0", data=body, method="PUT", headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=10).read()


def run(
    seconds: float = 10.0,
    size: str = "1280x720",
    fps: float = 30.0,
    scene: str = "camera",
    json_out: Path | None = None,
) -> dict[str, Any]:
    """Measure and print the server's CPU publishing over WHIP against serving one WebSocket viewer."""
    # First, before any thread: a namespace holds only the thread that enters it and what it starts afterwards.
    why_not = enter_private_network()
    if why_not is not None:
        raise SystemExit(f"vergence bench whip: no private network for WebRTC: {why_not}")
    from bench.dual import _cpu_seconds, websocket_viewer_cpu
    from bench.latency import _Server, serve_argv
    from tests.support.janus import start_sfu

    workdir = Path(tempfile.mkdtemp(prefix="vergence-whip-"))
    janus, whip = start_sfu(workdir / "sfu")
    try:
        port = _free_port()
        config = workdir / "whip.toml"
        config.write_text(CONFIG.format(size=size, fps=fps, scene=scene, url=whip.endpoint("cam0", "bench-token")))
        base = f"http://127.0.0.1:{port}"
        argv = serve_argv(port, "--config", str(config))
        env = {"VERGENCE_STATE__PATH": str(workdir / "state.json")}
        results: dict[str, Any] = {"size": size, "fps": fps, "scene": scene, "seconds": seconds}
        with _Server(argv, f"{base}/api/streams", workdir / "vergence.log", "vergence", env=env) as server:
            assert server.proc is not None
            pid = server.proc.pid

            results["websocket"] = websocket_viewer_cpu(port, [pid], seconds)

            _switch(base, True)
            deadline = time.monotonic() + 20
            while _output(base)["state"] != "live":
                if time.monotonic() > deadline:
                    raise SystemExit(f"vergence bench whip: the session did not go live: {_output(base)}")
                time.sleep(0.1)  # poll interval of a deadline loop
            time.sleep(WARMUP_S)  # warm-up: Janus' first keyframe request, aiortc's bitrate estimate
            before = _output(base)
            cpu0, t0 = _cpu_seconds(pid), time.monotonic()
            time.sleep(seconds)  # the measuring window
            cpu1, t1 = _cpu_seconds(pid), time.monotonic()
            after = _output(base)
            results["whip"] = {
                "server_cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 3),
                "fps": round((after["frames"] - before["frames"]) / (t1 - t0), 1),
                "bitrate_bps": after["bitrate_bps"],
                "failures": after["failures"],
            }
    finally:
        whip.stop()
        janus.stop()
    ws, published = results["websocket"], results["whip"]
    results["ratio"] = round(published["server_cpu_cores"] / ws["server_cpu_cores"], 2)
    print(
        f"{size}@{fps:g} ({scene} scene): one WebSocket viewer {100 * ws['server_cpu_cores']:.1f} % of a core "
        f"({ws['fps']} fps); WHIP to Janus {100 * published['server_cpu_cores']:.1f} % ({published['fps']} fps, "
        f"{published['bitrate_bps'] / 1e6:.2f} Mbit/s, {published['failures']} failures): {results['ratio']}×"
    )
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    run()
