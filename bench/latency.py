"""`vergence bench latency`: capture → decoded latency per player mode in headless Chromium, beside a bare floor.

One run:

1. the floor (`floor.py`: plain WebSocket → PyAV libx264 → WebCodecs, no vergence code) as its own process, measured;
2. `python -m vergence serve` as a subprocess; each requested player mode measured in turn on the real page
   (`/?player=MODE`), from `window.vergence.stats`;
3. the floor again, so a drift in machine load shows up as a difference between the two floor rows.

Nothing runs concurrently with a measurement except the pipeline under test (2 cores). Each mode: open the page, wait
until frames flow and the requested player is the one that runs, discard a warm-up of `warmup_s` worth of frames
(counted, not slept), then record every frame the player counts as shown for `seconds` seconds. The latency of a frame
is exactly what the page records in `stats.latencies` (capture → decoder output for WebCodecs and the floor,
capture → presented for MSE and WebRTC, capture → `<img>` swap for MJPEG). WebRTC reads each frame's capture time from
the time code in its pixels (rVFC `presentationTime` is the presented moment).

WebRTC needs a non-loopback address for ICE: the bench moves itself into a private network namespace first
(`netns.enter_private_network`, before any thread starts) and says so when it cannot, in which case the webrtc row
fails (the page falls back to another player) while the others are measured as usual.

For the WebSocket players the bench also notes, per binary message, when the page's JS received it (a second
`message` listener on the socket, installed before the page runs) and joins it by `seq` with the frame header's
`capture_ns` and `send_ns`, which splits each latency into capture → send (server: draw, encode, hub), send → receive
(kernel, browser network process, renderer event loop) and receive → decoded/shown (the decoder or MSE pipeline).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tests.support import chromium
from tests.support.netns import enter_private_network, private_address

GOALS = {"p50_ms": 8.0, "p95_ms": 16.0, "ratio": 1.5}  # WebCodecs at 1280x720@30, ratio to the floor of the same run
FLOOR_SCRIPT = Path(__file__).with_name("floor.py")
STARTUP_S = 30.0

# Before any page script: a bench recorder, and WebSockets that note when each binary message reaches JS.
INIT_JS = r"""
(() => {
  const bench = { recording: false, t0: 0, shown: [], recv: [] };
  window.__bench = bench;
  const NativeWebSocket = window.WebSocket;
  const nsToMs = (ns) => { const whole = ns / 1000000n; return Number(whole) + Number(ns - whole * 1000000n) / 1e6; };
  class BenchWebSocket extends NativeWebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener('message', (event) => {
        if (!bench.recording || !(event.data instanceof ArrayBuffer) || event.data.byteLength < 24) return;
        const at = performance.timeOrigin + performance.now();
        const view = new DataView(event.data);
        if (view.getUint8(0) !== 1 || (view.getUint8(1) & 4)) return; // unknown version, or an MSE init segment
        bench.recv.push([at, view.getUint32(4), nsToMs(view.getBigUint64(8)), nsToMs(view.getBigUint64(16))]);
      });
    }
  }
  window.WebSocket = BenchWebSocket;
})();
"""

# Wrap stats.shown of the page's stats object: while recording, note [perf ms, seq, latency ms] of every shown frame.
WRAP_JS = """(root) => {
  const stats = window[root].stats;
  if (stats.__benchWrapped) return;
  const shown = stats.shown;
  stats.shown = function (seq, latencyMs) {
    shown.call(this, seq, latencyMs);
    const bench = window.__bench;
    if (bench.recording) bench.shown.push([performance.now(), seq ?? null, latencyMs ?? null]);
  };
  stats.__benchWrapped = true;
}"""

START_JS = """() => {
  const bench = window.__bench;
  bench.shown = []; bench.recv = []; bench.recording = true; bench.t0 = performance.now();
  return bench.t0;
}"""

STOP_JS = """(root) => {
  const bench = window.__bench;
  bench.recording = false;
  const app = window[root];
  return {t0: bench.t0, t1: performance.now(), shown: bench.shown, recv: bench.recv, player: app.player,
          offsetMs: (app.clock && app.clock.offsetMs) || 0, dropped: app.stats.dropped, received: app.stats.frames,
          latencySources: app.stats.latencySources || null};
}"""


def run(
    seconds: float = 10.0,
    size: str = "1280x720",
    fps: float = 30.0,
    players: Sequence[str] = ("webrtc", "webcodecs", "mse", "mjpeg"),
    floor: bool = True,
    json_out: Path | None = None,
    check: bool = False,
    warmup_s: float = 2.0,
    scene: str = "camera",
) -> dict[str, Any]:
    """Measure, print the table, optionally write JSON; return the results. With check, exit 1 when a goal fails."""
    # First of all: a namespace holds only the thread that enters it (and what that thread starts afterwards).
    no_network = enter_private_network()
    from playwright.sync_api import sync_playwright

    players = [p.strip() for p in players if p.strip()]
    width, height = (int(n) for n in size.lower().split("x"))
    if not chromium.CHROMIUM.exists():
        raise SystemExit(f"vergence bench: no Chromium at {chromium.CHROMIUM} (set VERGENCE_CHROMIUM)")
    rows: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="vergence-bench-"))
    _say(f"bench: {size} @ {fps:g} fps, {seconds:g} s per mode, logs in {workdir}")
    network = f"private network {private_address()}" if no_network is None else f"no private network ({no_network})"
    if no_network is not None and "webrtc" in players:
        _say(f"bench: {network}: WebRTC has no address for ICE here, so its row will fail")
    with sync_playwright() as pw:
        browser = chromium.launch(pw.chromium)
        try:

            def measure(url: str, root: str, want: str, label: str) -> dict[str, Any]:
                return _measure(browser, url, root, want, label, seconds=seconds, fps=fps, warmup_s=warmup_s)

            scene_file = export_scene(workdir / "scene.npz", width, height, scene)
            if floor:
                rows.append(_floor_phase(measure, "floor (before)", width, height, fps, workdir, scene_file))
            if players:
                port = _free_port()
                server = _Server(
                    serve_argv(port, "--size", f"{width}x{height}", "--fps", f"{fps:g}"),
                    f"http://127.0.0.1:{port}/api/streams",
                    workdir / "vergence.log",
                    "vergence",
                    # A state file of its own: the defaults are measured, not the overlays, stabilization or zoom
                    # someone saved in ~/.local/state (an overlay over the time code would also hide it from WebRTC).
                    env={"VERGENCE_STATE__PATH": str(workdir / "state.json"), **scene_env(scene)},
                )
                try:
                    with server:
                        for mode in players:
                            row = measure(f"http://localhost:{port}/?player={mode}", "vergence", mode, mode)
                            row["server"] = _try_get_json(f"http://127.0.0.1:{port}/api/stats")
                            rows.append(row)
                except RuntimeError as err:  # the server did not start: say so in every row it owed
                    done = {r["requested"] for r in rows}
                    rows += [_failed(mode, mode, err) for mode in players if mode not in done]
            if floor:
                rows.append(_floor_phase(measure, "floor (after)", width, height, fps, workdir, scene_file))
            version = browser.version
        finally:
            browser.close()
    results = _summarise(rows, seconds=seconds, size=size, fps=fps, scene=scene, chromium=version, network=network)
    results["floor_options"] = _compare_encoder_options(fps)
    print(_format(results))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(results, indent=2) + "\n")
        _say(f"bench: results written to {json_out}")
    if check and not results["passed"]:
        raise SystemExit(1)
    return results


# ---- phases -------------------------------------------------------------------------------------------------------


def _floor_phase(
    measure: Callable[..., dict[str, Any]],
    label: str,
    width: int,
    height: int,
    fps: float,
    workdir: Path,
    scene_file: Path,
) -> dict[str, Any]:
    port = _free_port()
    name = label.split()[-1].strip("()")
    server = _Server(
        [
            sys.executable,
            str(FLOOR_SCRIPT),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--size",
            f"{width}x{height}",
            "--fps",
            f"{fps:g}",
            "--scene-file",
            str(scene_file),
        ],
        f"http://127.0.0.1:{port}/stats",
        workdir / f"floor-{name}.log",
        "floor",
    )
    try:
        with server:
            row = measure(f"http://localhost:{port}/", "floor", "floor", label)
            row["server"] = _try_get_json(f"http://127.0.0.1:{port}/stats")
    except RuntimeError as err:
        return _failed(label, "floor", err)
    return row


def _failed(label: str, want: str, err: Exception) -> dict[str, Any]:
    _say(f"bench: {label} failed: {err}")
    return {"mode": label, "requested": want, "error": str(err).splitlines()[0], "detail": str(err)}


def _measure(
    browser: Any, url: str, root: str, want: str, label: str, *, seconds: float, fps: float, warmup_s: float
) -> dict[str, Any]:
    _say(f"bench: {label}: {url}")
    row: dict[str, Any] = {"mode": label, "requested": want, "url": url}
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    console: list[str] = []
    try:
        context.add_init_script(INIT_JS)
        page = context.new_page()
        page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
        page.goto(url)
        ready = f"() => window.{root} && window.{root}.player && window.{root}.stats.decoded >= 1"
        page.wait_for_function(ready, polling=50, timeout=STARTUP_S * 1000)
        ran = page.evaluate(f"() => window.{root}.player")
        row["player"] = ran
        if ran != want:
            notice = page.evaluate("() => document.getElementById('notice')?.textContent || ''")
            raise RuntimeError(f"the page runs {ran!r} instead of {want!r}: {notice}")
        page.evaluate(WRAP_JS, root)
        # Warm-up: a number of decoded frames, not a sleep (decoder start, clock sync, first-keyframe burst).
        start = page.evaluate(f"() => window.{root}.stats.decoded")
        warm_frames = max(1, round(warmup_s * fps))
        page.wait_for_function(
            f"() => window.{root}.stats.decoded >= {start + warm_frames}",
            polling=100,
            timeout=(warmup_s * 4 + STARTUP_S) * 1000,
        )
        machine, ours = _cpu_times(), _tree_jiffies(os.getpid())
        page.evaluate(START_JS)
        page.wait_for_timeout(seconds * 1000)
        data = page.evaluate(STOP_JS, root)
        row["cpu_busy_pct"], row["others_busy_pct"] = _cpu_busy_pct(
            machine, ours, _cpu_times(), _tree_jiffies(os.getpid())
        )
        row["loadavg_1m"] = round(os.getloadavg()[0], 2)
        if data["player"] != want:
            raise RuntimeError(f"the page switched to {data['player']!r} while measuring")
        row.update(_frame_summary(data))
    except Exception as err:  # one broken mode must not hide the others: report it in its row
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        row["console"] = console[-15:]
        _say(f"bench: {label} failed: {row['error']}")
    finally:
        context.close()
    return row


def _frame_summary(data: dict[str, Any]) -> dict[str, Any]:
    duration_s = (data["t1"] - data["t0"]) / 1000
    shown = data["shown"]
    latencies = [lat for _, _, lat in shown if lat is not None]
    out: dict[str, Any] = {
        "duration_s": round(duration_s, 3),
        "shown": len(shown),
        "frames": len(latencies),
        "fps": round(len(shown) / duration_s, 2) if duration_s > 0 else None,
        "dropped_total": data["dropped"],
        "clock_offset_ms": round(data["offsetMs"], 3),
        "latency_sources": data.get("latencySources") or None,  # WebRTC: frames timed by time code / data channel
        **_pcts(latencies),
        "_latencies": latencies,
    }
    # Stage split for WebSocket players: join shown frames with their receive record by seq.
    recv = {seq: (at, capture, send) for at, seq, capture, send in data["recv"]}
    server, transit, client = [], [], []
    samples = []  # per shown frame: ms into the window, seq, latency, and the stage split where known
    for t, seq, lat in shown:
        sample = [round(t - data["t0"], 2), seq, None if lat is None else round(lat, 3)]
        samples.append(sample)
        if lat is None or seq is None or seq not in recv:
            continue
        at, capture, send = recv[seq]
        at += data["offsetMs"]  # page clock → server clock
        server.append(send - capture)
        transit.append(at - send)
        client.append(lat - (at - capture))
        sample += [round(server[-1], 3), round(transit[-1], 3), round(client[-1], 3)]
    out["samples_columns"] = [
        "t_ms",
        "seq",
        "latency_ms",
        "capture_to_send_ms",
        "send_to_receive_ms",
        "receive_to_output_ms",
    ]
    out["samples"] = samples
    if server:
        out["stages"] = {
            "joined": len(server),
            "capture_to_send": _pcts(server),
            "send_to_receive": _pcts(transit),
            "receive_to_output": _pcts(client),
        }
    return out


# ---- results ------------------------------------------------------------------------------------------------------


def _summarise(rows: list[dict[str, Any]], **config: Any) -> dict[str, Any]:
    floors = [r for r in rows if r["requested"] == "floor" and "error" not in r]
    floor: dict[str, Any] | None = None
    if floors:
        # Pool the before/after runs: the ratio is against the floor of this whole run.
        lat: list[float] = []
        for r in floors:
            lat.extend(r.pop("_latencies"))
        floor = {
            "mode": "floor (both)",
            "frames": len(lat),
            **_pcts(lat),
            "fps": round(sum(r["fps"] for r in floors) / len(floors), 2),
        }
    for r in rows:
        r.pop("_latencies", None)
    wc = next((r for r in rows if r["requested"] == "webcodecs"), None)
    ratio = None
    if floor and wc and "error" not in wc and floor["p50_ms"] and floor["p95_ms"]:
        ratio = {"p50": round(wc["p50_ms"] / floor["p50_ms"], 2), "p95": round(wc["p95_ms"] / floor["p95_ms"], 2)}
    goals: dict[str, Any] = {}
    measured = wc if wc is not None and "error" not in wc else None
    goals["webcodecs_p50"] = _goal(measured["p50_ms"] if measured else None, GOALS["p50_ms"])
    goals["webcodecs_p95"] = _goal(measured["p95_ms"] if measured else None, GOALS["p95_ms"])
    goals["ratio_p50"] = _goal(ratio["p50"] if ratio else None, GOALS["ratio"])
    goals["ratio_p95"] = _goal(ratio["p95"] if ratio else None, GOALS["ratio"])
    passed = all(g["pass"] for g in goals.values())
    return {"config": config, "rows": rows, "floor": floor, "ratio": ratio, "goals": goals, "passed": passed}


def _compare_encoder_options(fps: float) -> dict[str, Any]:
    """The floor copies vergence's libx264 options as values: say when they have drifted apart."""
    from bench import floor as floor_module

    floor_options = floor_module.libx264_options(fps)
    try:
        from vergence.config import H264Settings
        from vergence.encoders.h264 import _libx264_options, bitrate_for

        settings = H264Settings()
        bitrate = bitrate_for(settings, 1280, 720, fps)  # the floor's picture
        ours = _libx264_options(settings, fps, bitrate)
        same_rate = (bitrate, settings.gop_frames) == (floor_module.BITRATE_BPS, floor_module.GOP_FRAMES)
    except (ImportError, TypeError, ValueError) as err:
        return {"match": None, "note": f"cannot read vergence's options: {err}"}
    return {"match": ours == floor_options and same_rate, "floor": floor_options, "vergence": ours}


def _goal(value: float | None, limit: float) -> dict[str, Any]:
    return {"value": value, "limit": limit, "pass": value is not None and value <= limit}


def _format(results: dict[str, Any]) -> str:
    c = results["config"]
    lines = [
        f"capture → decoded/shown latency, {c['size']} @ {c['fps']:g} fps, {c['seconds']:g} s per mode, "
        f"Chromium {c['chromium']} headless (--disable-gpu); WebRTC ICE over a {c.get('network', '?')}",
        "cpu % = whole machine busy while measuring (100 = both cores), other % = of it outside this bench's "
        "processes (servers, Chromium): other % well above 0 means the figures are disturbed",
        "",
        f"{'mode':<16}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}{'frames':>8}{'fps':>7}"
        f"{'cpu %':>7}{'other %':>8}{'load':>6}",
    ]
    for r in results["rows"]:
        if "error" in r:
            lines.append(f"{r['mode']:<16}  error: {r['error']}")
            continue
        lines.append(
            f"{r['mode']:<16}{_f(r['p50_ms'])}{_f(r['p95_ms'])}{_f(r['max_ms'])}{r['frames']:>8}"
            f"{r['fps']:>7.1f}{_f(r['cpu_busy_pct'], 7, 0)}"
            f"{_f(r['others_busy_pct'], 8, 0)}{_f(r['loadavg_1m'], 6, 1)}"
        )
    floor = results["floor"]
    if floor:
        lines.append(
            f"{floor['mode']:<16}{_f(floor['p50_ms'])}{_f(floor['p95_ms'])}{_f(floor['max_ms'])}{floor['frames']:>8}"
            f"{floor['fps']:>7.1f}"
        )
    staged = [r for r in results["rows"] if "stages" in r]
    if staged:
        lines += [
            "",
            "stages, p50 / p95 ms (server clock; capture→send = draw+encode+hub, send→receive = to page JS, "
            "receive→output = decode or MSE)",
            f"{'mode':<16}{'capture→send':>16}{'send→receive':>16}{'receive→output':>16}",
        ]
        for r in staged:
            s = r["stages"]
            lines.append(
                f"{r['mode']:<16}"
                + "".join(
                    f"{s[k]['p50_ms']:>8.2f} /{s[k]['p95_ms']:>6.2f}"
                    for k in ("capture_to_send", "send_to_receive", "receive_to_output")
                )
            )
    servers = [r for r in results["rows"] if isinstance(r.get("server"), dict) and "streams" in r["server"]]
    if servers:
        lines += ["", "vergence /api/stats after each mode (means over the last second):"]
        for r in servers:
            for sid, st in r["server"]["streams"].items():
                chans = ", ".join(
                    f"{k} {v.get('bitrate_bps', 0) / 1e6:.2f} Mbit/s drops {v.get('drops', 0)}"
                    for k, v in st.get("channels", {}).items()
                    if v.get("running")
                )
                lines.append(f"  {r['mode']:<16}{sid}: stages_ms {st.get('stages_ms')}; {chans}")
    floors = [r for r in results["rows"] if isinstance(r.get("server"), dict) and "encode_ms_mean" in r["server"]]
    for r in floors:
        s = r["server"]
        lines.append(
            f"  {r['mode']:<16}draw+encode {s['encode_ms_mean']:.2f} ms mean, {s['bitrate_bps'] / 1e6:.2f} Mbit/s"
        )
    lines.append("")
    if results["ratio"]:
        lines.append(
            f"ratio webcodecs / floor: p50 {results['ratio']['p50']:.2f}×   p95 {results['ratio']['p95']:.2f}×"
        )
    goal_text = {
        "webcodecs_p50": "WebCodecs p50 ≤ 8 ms",
        "webcodecs_p95": "WebCodecs p95 ≤ 16 ms",
        "ratio_p50": "p50 ≤ 1.5× floor",
        "ratio_p95": "p95 ≤ 1.5× floor",
    }
    parts = []
    for key, g in results["goals"].items():
        value = "not measured" if g["value"] is None else f"{g['value']:g}"
        parts.append(f"{goal_text[key]}: {value} {'PASS' if g['pass'] else 'FAIL'}")
    lines.append("goals (set for 1280x720@30): " + "; ".join(parts))
    options = results.get("floor_options", {})
    if options.get("match") is False:
        lines.append(
            "WARNING: the floor's libx264 options differ from vergence's defaults; update floor.py:\n"
            f"  floor    {options['floor']}\n  vergence {options['vergence']}"
        )
    lines.append("RESULT: " + ("PASS" if results["passed"] else "FAIL"))
    return "\n".join(lines)


def _f(value: float | None, width: int = 8, digits: int = 2) -> str:
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def _pcts(values: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": _round(_quantile(values, 0.5)),
        "p95_ms": _round(_quantile(values, 0.95)),
        "max_ms": _round(max(values) if values else None),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _quantile(values: list[float], q: float) -> float | None:
    """Linear interpolation between order statistics, as the page's stats.js does."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# ---- processes and machine --------------------------------------------------------------------------------------


SCENES = ("camera", "simple")


def scene_env(scene: str) -> dict[str, str]:
    """The environment that gives a benchmarked server's test camera this scene (`--size`/`--fps` still apply to it):
    `camera`, as hard to encode as a real camera (the benches' default), or `simple`."""
    if scene not in SCENES:
        raise SystemExit(f"vergence bench: --scene must be one of {', '.join(SCENES)}, got {scene!r}")
    return {"VERGENCE_CAMERAS": json.dumps([{"id": "cam0", "source": "testpattern", "options": {"scene": scene}}])}


def export_scene(path: Path, width: int, height: int, scene: str) -> Path:
    """Write what the floor needs to show the test camera's scene (its full view at the output size, and its noise):
    the floor runs no vergence code, so it reads the pixels from this file."""
    from vergence.config import CameraSettings
    from vergence.sources.testpattern import SENSOR_SCALE, TestPatternSource

    source = TestPatternSource(CameraSettings(size=f"{width}x{height}", options={"scene": scene}))
    source.open()
    planes = source._levels[SENSOR_SCALE]  # the full view reads the half-resolution copy: the output's size
    noise = source._noise or []
    np.savez(
        path,
        y=planes[0],
        u=planes[1],
        v=planes[2],
        **{f"noise_{n}": bank for n, bank in zip("yuv", noise, strict=False)},
    )
    source.close()
    return path


def serve_argv(port: int, *args: str) -> list[str]:
    """The command line of a benchmarked `vergence serve` on 127.0.0.1:port."""
    return [sys.executable, "-m", "vergence", "serve", "--host", "127.0.0.1", "--port", str(port), *args]


class _Server:
    """A server subprocess, ready once `ready_url` answers 200 with a non-empty body (a non-empty list for vergence).

    `cwd`: where it runs (the checkout's root for `python -m bench.…`)."""

    def __init__(
        self,
        argv: list[str],
        ready_url: str,
        log_path: Path,
        name: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv, self.ready_url, self.log_path, self.name = argv, ready_url, log_path, name
        self.env = {**os.environ, **env} if env else None
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Server:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd
        )
        log.close()
        deadline = time.monotonic() + STARTUP_S
        while True:
            if self.proc.poll() is not None:
                tail = self._tail()
                last = tail.splitlines()[-1] if tail else ""
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {last}\n{tail}")
            try:
                body = _get_json(self.ready_url, timeout=1.0)
                if body:
                    return self
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self._stop()
                raise RuntimeError(f"{self.name} not ready after {STARTUP_S:g} s at {self.ready_url}:\n{self._tail()}")
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def _tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _try_get_json(url: str) -> Any:
    try:
        return _get_json(url)
    except (OSError, ValueError) as err:
        return {"error": str(err)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat; zeros where there is none."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _tree_jiffies(root: int) -> dict[int, int]:
    """CPU jiffies (user + system) of each process in the tree under `root` (this bench, its servers, Chromium)."""
    children: dict[int, list[int]] = {}
    used: dict[int, int] = {}
    try:
        pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(pid)
        used[pid] = int(fields[11]) + int(fields[12])
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in used:
            tree[pid] = used[pid]
        todo.extend(children.get(pid, []))
    return tree


def _cpu_busy_pct(
    machine0: tuple[int, int], ours0: dict[int, int], machine1: tuple[int, int], ours1: dict[int, int]
) -> tuple[float | None, float | None]:
    """(whole machine busy %, busy % outside this bench's process tree) between two samples; 100 = all cores."""
    total = machine1[1] - machine0[1]
    if total <= 0:
        return None, None
    busy = machine1[0] - machine0[0]
    ours = sum(used - ours0.get(pid, 0) for pid, used in ours1.items())
    return round(100 * busy / total, 1), round(100 * max(0, busy - ours) / total, 1)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m bench.latency [--seconds 10] [--check] ...` from the checkout's root: as `vergence bench latency`."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bench.latency", description="capture → decoded latency per player mode, beside a bare floor"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per player mode")
    parser.add_argument("--size", default="1280x720", help="picture size WIDTHxHEIGHT")
    parser.add_argument("--fps", type=float, default=30.0, help="frames per second")
    parser.add_argument("--players", default="webrtc,webcodecs,mse,mjpeg", help="comma-separated player modes")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare floor pipeline")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a WebCodecs goal fails")
    parser.add_argument("--scene", default="camera", choices=SCENES, help="the test camera's scene")
    args = parser.parse_args(argv)
    run(
        seconds=args.seconds,
        size=args.size,
        fps=args.fps,
        players=args.players.split(","),
        floor=not args.no_floor,
        json_out=args.json,
        check=args.check,
        scene=args.scene,
    )


if __name__ == "__main__":
    main()
