"""`vergence bench soak`: a server under everyday load for minutes; do its tasks, descriptors, threads or memory grow?

The load, all at once for the whole run: WebSocket viewers and an MJPEG viewer that stay, PTZ moving over the control
WebSocket, viewers of every kind arriving and leaving (`churn_per_s`; some without a closing handshake), recordings
started and stopped, a photo now and then. Every `sample_s` the server's fds, asyncio tasks and threads (from
/api/stats) and its resident memory (/proc) are read and printed.

The verdict compares two quiet moments, not two instants under load (where whatever is in flight, a viewer arriving, a
recording closing, shows up as growth or as none): the load runs for `warmup_s` (first allocations, caches, the
allocator's arenas), stops, and once the server has settled (its counts unchanged for SETTLED_READS reads in a row)
fds, tasks and threads are the baseline; then the load runs for the rest of the run, stops, and the server settles
again. It passes when fds, tasks and threads are back within DRAINED_BOUND of the baseline and RSS grew less than
`rss_bound_mb`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from bench.latency import _Server, scene_env, serve_argv

DRAINED_BOUND = 1  # fds, tasks and threads once the load has gone: back to the baseline, give or take one
SETTLED_READS, SETTLE_EVERY_S, SETTLE_TIMEOUT_S = 5, 0.5, 60.0
PHOTO_NUMBERS = itertools.count(1)


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _post(url: str, body: bytes) -> bool:
    """Send one text command; True when the server carried it out."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return bool(json.loads(response.read())["ok"])
    except urllib.error.HTTPError:
        return False


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _Load:
    """The clients, each on a thread of its own, until `stop` is set; `frames` counts what the steady viewers got."""

    def __init__(self, port: int, viewers: int, churn_per_s: float) -> None:
        self.base, self.ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        self.churn_interval_s = 1 / churn_per_s
        self.stop = threading.Event()
        self.frames = [0] * viewers
        self.churned = 0
        # Commands the load sent, by what the server answered: a load whose moves are refused tests nothing.
        self.commands = {"ok": 0, "refused": 0}
        self.photos = 0
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._guard, args=(self._viewer, i), name=f"viewer{i}", daemon=True)
            for i in range(viewers)
        ]
        for work in (self._mjpeg, self._ptz, self._churn, self._recorder):
            self.threads.append(threading.Thread(target=self._guard, args=(work,), name=work.__name__, daemon=True))

    def start(self) -> None:
        logging.getLogger("websockets").setLevel(
            logging.CRITICAL
        )  # clients leaving without a close handshake: the point
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)
        stuck = [thread.name for thread in self.threads if thread.is_alive()]
        if stuck:
            print(f"soak: load threads still running after their stop: {', '.join(stuck)}")

    def _guard(self, work: Any, *args: Any) -> None:
        while not self.stop.is_set():
            try:
                work(*args)
            except Exception as err:  # noted and retried: a client failure is a finding, not the end of the run
                self.errors.append(f"{work.__name__}: {type(err).__name__}: {err}")
                self.stop.wait(1)

    def _viewer(self, index: int) -> None:
        with connect(f"{self.ws}/ws/video/cam0", max_size=None, max_queue=None, open_timeout=10) as ws:
            while not self.stop.is_set():
                if isinstance(ws.recv(timeout=10), bytes):
                    self.frames[index] += 1

    def _mjpeg(self) -> None:
        with urllib.request.urlopen(f"{self.base}/stream/cam0.mjpeg", timeout=10) as response:
            while not self.stop.is_set():
                response.read(65536)

    def _ptz(self) -> None:
        with connect(f"{self.ws}/ws/control", max_size=None, max_queue=None, open_timeout=10) as ws:
            step = 0
            while not self.stop.wait(0.1):
                step += 1
                zoom = 1 + 3 * abs((step % 80) - 40) / 40
                move = {"type": "ptz", "stream": "cam0", "zoom": zoom, "pan": 0.3 + 0.004 * (step % 100)}
                ws.send(json.dumps({"type": "command", "command": move, "id": str(step)}))
                self._count(_reply(ws, str(step)))

    def _count(self, ok: bool) -> None:
        self.commands["ok" if ok else "refused"] += 1

    def _churn(self) -> None:
        self.stop.wait(self.churn_interval_s)
        kinds = ("/ws/video/cam0", "/ws/control", "/ws/fmp4/cam0", "abrupt", "mjpeg")
        kind = kinds[self.churned % len(kinds)]
        if kind == "mjpeg":
            with urllib.request.urlopen(f"{self.base}/snapshot/cam0.jpg", timeout=10) as response:
                response.read()
        else:
            path = "/ws/video/cam0" if kind == "abrupt" else kind
            with connect(f"{self.ws}{path}", max_size=None, max_queue=None, open_timeout=10, close_timeout=10) as ws:
                ws.recv(timeout=10)
                if kind == "abrupt":
                    ws.socket.shutdown(socket.SHUT_RDWR)
        self.churned += 1

    def _recorder(self) -> None:
        self._count(_post(f"{self.base}/api/commands", b"record start"))
        if self.stop.wait(20):
            self._count(_post(f"{self.base}/api/commands", b"record stop"))
            return
        self.photos += 1  # a name of its own each time, across loads: a photo never overwrites one (refused)
        self._count(_post(f"{self.base}/api/commands", f"photo soak-{next(PHOTO_NUMBERS)}".encode()))
        self._count(_post(f"{self.base}/api/commands", b"record stop"))
        self.stop.wait(10)


def _reply(ws: Any, command_id: str) -> bool:
    """Read the control socket up to the reply to `command_id` (events come between); True when it was carried out."""
    while True:
        message = json.loads(ws.recv(timeout=10))
        if message.get("type") == "reply" and message.get("id") == command_id:
            return bool(message["ok"])


def run(
    minutes: float = 10.0,
    size: str = "1280x720",
    fps: float = 30.0,
    viewers: int = 4,
    sample_s: float = 10.0,
    warmup_s: float = 60.0,
    rss_bound_mb: float = 32.0,
    churn_per_s: float = 20.0,
    json_out: Path | None = None,
    scene: str = "camera",
) -> dict[str, Any]:
    """Run the soak, print a sample every `sample_s` and the verdict; return the figures."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = Path(tempfile.mkdtemp(prefix="vergence-soak-"))
    os.environ.setdefault("VERGENCE_STATE__PATH", str(workdir / "state.json"))
    os.environ.setdefault("VERGENCE_MEDIA__DIR", str(workdir / "media"))
    argv = serve_argv(port, "--size", size, "--fps", str(fps))
    base = f"http://127.0.0.1:{port}"
    samples: list[dict[str, Any]] = []
    with _Server(argv, f"{base}/api/streams", workdir / "vergence.log", "vergence", env=scene_env(scene)) as server:
        assert server.proc is not None
        pid = server.proc.pid
        print(f"soak: {minutes:g} min of {size}@{fps:g}, {viewers} steady viewers + MJPEG + PTZ + churn + recordings")
        print(
            f"{'t_s':>6} {'fds':>5} {'tasks':>6} {'threads':>8} {'pool':>5} {'rss_mb':>8} {'conns':>6} {'fps':>6} {'churned':>8}"
        )
        started = time.monotonic()
        warm_load = _Load(port, viewers, churn_per_s)
        _load_for(warm_load, warmup_s, base, pid, samples, started, sample_s)
        baseline = _settled(base, pid)
        print(f"warm-up over, load stopped, settled: {_counts(baseline)}")
        load = _Load(port, viewers, churn_per_s)
        _load_for(load, max(0.0, minutes * 60 - warmup_s), base, pid, samples, started, sample_s)
        drained = _settled(base, pid)
        print(f"load stopped, settled: {_counts(drained)}")
    churned = warm_load.churned + load.churned
    errors = warm_load.errors + load.errors
    commands = {key: warm_load.commands[key] + load.commands[key] for key in load.commands}
    results = _verdict(baseline, drained, samples, rss_bound_mb, errors, commands)
    results.update({"minutes": minutes, "size": size, "fps": fps, "viewers": viewers, "samples": samples})
    growth = results["growth"]
    print(
        f"after the load, against the settled baseline after {warmup_s:g} s: fds {growth['fds']:+d}, tasks "
        f"{growth['tasks']:+d}, threads {growth['threads']:+d}, RSS {growth['rss_mb']:+.1f} MB (bounds "
        f"±{DRAINED_BOUND}, {rss_bound_mb:g} MB); {churned} arrivals and departures; commands carried out "
        f"{commands['ok']}, refused {commands['refused']}; client errors: {len(errors)}; "
        f"{'PASS' if results['pass'] else 'FAIL'}"
    )
    for error in errors[:10]:
        print(f"  client error: {error}")
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2))
    return results


def _load_for(
    load: _Load, seconds: float, base: str, pid: int, samples: list[dict[str, Any]], started: float, sample_s: float
) -> None:
    """Run `load` for `seconds`, appending (and printing) a sample every `sample_s`; stop it."""
    load.start()
    begun = time.monotonic()
    frames_before, at_before = sum(load.frames), begun
    try:
        while time.monotonic() - begun < seconds:
            load.stop.wait(min(sample_s, max(0.0, seconds - (time.monotonic() - begun))))
            now = time.monotonic()
            frames = sum(load.frames)
            sample = {
                "t_s": round(now - started, 1),
                **_read(base, pid),
                "fps": round((frames - frames_before) / max(now - at_before, 1e-9) / len(load.frames), 1),
                "churned": load.churned,
            }
            frames_before, at_before = frames, now
            samples.append(sample)
            print(
                " ".join(
                    f"{sample[key]:>{width}}" for key, width in zip(sample, (6, 5, 6, 8, 5, 8, 6, 6, 8), strict=True)
                )
            )
    finally:
        load.close()


def _read(base: str, pid: int) -> dict[str, Any]:
    stats = _get(f"{base}/api/stats")
    process = stats["process"]
    return {
        **{key: process[key] for key in ("fds", "tasks", "threads", "pool_threads")},
        "rss_mb": round(_rss_mb(pid), 1),
        "connections": (stats.get("connections") or {}).get("open", 0),
    }


def _counts(sample: dict[str, Any]) -> str:
    keys = ("fds", "tasks", "threads", "pool_threads", "rss_mb", "connections")
    return ", ".join(f"{key} {sample[key]}" for key in keys)


def _settled(base: str, pid: int) -> dict[str, Any]:
    """The server's counts once every client connection but the reader's own has closed (a heavy viewer's close
    handshake waits behind the video still in flight) and they stayed the same for SETTLED_READS reads in a row; after
    SETTLE_TIMEOUT_S the last read, marked unsettled."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    reads: list[dict[str, Any]] = []
    while True:
        read = _read(base, pid)
        key = (read["fds"], read["tasks"], read["threads"])
        quiet = read["connections"] <= 1  # this read's own
        reads = [r for r in reads if (r["fds"], r["tasks"], r["threads"]) == key] + [read] if quiet else []
        if len(reads) >= SETTLED_READS:
            return {**read, "settled": True}
        if time.monotonic() > deadline:
            return {**read, "settled": False}
        time.sleep(SETTLE_EVERY_S)  # poll interval of a deadline loop


def _verdict(
    baseline: dict[str, Any],
    drained: dict[str, Any],
    samples: list[dict[str, Any]],
    rss_bound_mb: float,
    errors: list[str],
    commands: dict[str, int],
) -> dict[str, Any]:
    growth = {key: drained[key] - baseline[key] for key in ("fds", "tasks", "threads")}
    growth["rss_mb"] = round(drained["rss_mb"] - baseline["rss_mb"], 1)
    healthy = all(s["fps"] >= 0.9 * samples[0]["fps"] for s in samples[1:]) if len(samples) > 1 else True
    passed = (
        baseline["settled"]
        and drained["settled"]
        and all(abs(growth[key]) <= DRAINED_BOUND for key in ("fds", "tasks", "threads"))
        and growth["rss_mb"] <= rss_bound_mb
        and not errors
        and commands["ok"] > 0
        and commands["refused"] == 0
    )
    return {
        "pass": passed,
        "growth": growth,
        "baseline": baseline,
        "drained": drained,
        "viewers_kept_rate": healthy,
        "commands": dict(commands),
    }
