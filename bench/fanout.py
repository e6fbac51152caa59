"""`vergence bench fanout`: N WebSocket viewers of one stream, in separate client processes; server CPU and viewer fps.

One run:

1. `vergence serve` (test pattern, SIZE@FPS, default settings, a state file of its own) as a subprocess; one viewer joins,
   so the encoder runs: its CPU is the baseline (encode, no fan-out).
2. The other N-1 viewers join, spread over `client_processes` processes (`fanout_client.py`: many bare asyncio
   WebSocket readers each, on `/ws/video/{stream}` as the page's player). After a warm-up, for `seconds`: server CPU
   (utime + stime of its process from /proc), the viewers' CPU, every viewer's frames, seq gaps and hub → viewer lag.
3. `stalled` more viewers join that never read (tiny receive buffer). Once the server has cut each of them (its hub
   counts drops for them), the same measurement again: a stalled viewer must cost the others nothing.
4. With `reference`: the bare uvicorn fan-out (`fanout_reference.py`) sends messages of the average size measured in 2,
   at the same rate, to the same N viewers; same measurement, so vergence / bare is a ratio from one run.

Every measuring window starts after its warm-up and reads the server's counters only after the window has closed, so
the bench's own requests are not part of what it measures.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.fanout_client import LAG_BIN_MS
from bench.latency import _Server, scene_env, serve_argv

GOALS = {"min_fps": 29.0, "server_cpu_percent": 50.0}  # each healthy viewer; of one core, with the stalled viewers
WARMUP_S = 3.0
BASELINE_MAX_S = 10.0
STALL_TIMEOUT_S = 30.0
FD_HEADROOM = 256  # descriptors beyond one per viewer: the server's own files, pipes, encoders


def _cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process (utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _cpu_seconds(pid: int) -> float:
    return sum(_cpu_times(pid))


def _machine_times() -> tuple[float, float]:
    """CPU seconds every core of the machine was busy, and stolen by the hypervisor, since boot (/proc/stat)."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user nice system idle iowait irq softirq steal: all but idle
    return busy / tick, fields[7] / tick


def _rss_mb(pid: int) -> dict[str, float]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Vm")
    )
    return {key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM") if key in status}


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit (children inherit it) to at least `needed` if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(max(soft, needed), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Clients:
    """The viewer processes, driven line by line (JSON commands and replies)."""

    def __init__(self, processes: int, log_dir: Path, offer_deflate: bool, poll_ms: float = 0.0) -> None:
        self.offer_deflate = offer_deflate
        self.compressed = 0  # viewers the server compresses for (it accepted permessage-deflate)
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.fanout_client", "--poll-ms", f"{poll_ms:g}"],
                cwd=ROOT,  # `-m bench.…` finds the package in the working directory
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=(log_dir / f"client{i}.log").open("wb"),
                text=True,
            )
            for i in range(processes)
        ]

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def ask(self, commands: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
        """Send each process its command (None: nothing), then collect the replies."""
        asked = [(proc, command) for proc, command in zip(self.procs, commands, strict=True) if command is not None]
        for proc, command in asked:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
        replies = []
        for proc, _ in asked:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"viewer process {proc.pid} exited with {proc.wait(timeout=5)}")
            replies.append(json.loads(line))
        return replies

    def all(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        return self.ask([command] * len(self.procs))

    def connect(self, url: str, count: int, cmd: str = "connect", first: int = 0) -> int:
        """Open `count` viewers spread over the processes (starting at process `first`); return how many are open."""
        shares = [
            count // len(self.procs) + (1 if (i - first) % len(self.procs) < count % len(self.procs) else 0)
            for i in range(len(self.procs))
        ]
        command = {"cmd": cmd, "url": url, "deflate": self.offer_deflate}
        replies = self.ask([command | {"count": n} if n else None for n in shares])
        failed = [reply for reply in replies if reply["failed"]]
        if failed:
            raise RuntimeError(f"{sum(r['failed'] for r in failed)} viewers failed to connect: {failed[0]['errors']}")
        self.compressed = sum(reply["compressed"] for reply in replies)
        return sum(reply["connected"] for reply in replies)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None and proc.stdin is not None:
                try:
                    proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                    proc.stdin.close()
                except OSError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass(slots=True)
class Window:
    """What one measuring window saw."""

    seconds: float
    server_cpu_s: float
    server_sys_s: float
    clients_cpu_s: float
    machine_busy_s: float
    steal_s: float
    reports: list[dict[str, Any]]


def _measure(server_pid: int, clients: Clients, seconds: float) -> Window:
    """Mark every viewer, wait `seconds`, and read the CPU of the server and the viewer processes over that window."""
    clients.all({"cmd": "mark"})
    machine0, server0, t0 = _machine_times(), _cpu_times(server_pid), time.monotonic()
    viewers0 = [_cpu_seconds(p) for p in clients.pids]
    time.sleep(seconds)  # the measuring window itself
    machine1, server1, t1 = _machine_times(), _cpu_times(server_pid), time.monotonic()
    viewers1 = [_cpu_seconds(p) for p in clients.pids]
    reports = clients.all({"cmd": "report"})
    return Window(
        seconds=t1 - t0,
        server_cpu_s=sum(server1) - sum(server0),
        server_sys_s=server1[1] - server0[1],
        clients_cpu_s=sum(viewers1) - sum(viewers0),
        machine_busy_s=machine1[0] - machine0[0],
        steal_s=machine1[1] - machine0[1],
        reports=reports,
    )


def _percentile_of_bins(bins: dict[int, int], fraction: float) -> float:
    total = sum(bins.values())
    if not total:
        return float("nan")
    wanted, seen = fraction * total, 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= wanted:
            return (index + 0.5) * LAG_BIN_MS
    return (max(bins) + 0.5) * LAG_BIN_MS


def _merge_bins(reports: list[dict[str, Any]], key: str) -> dict[int, int]:
    merged: dict[int, int] = {}
    for report in reports:
        for index, count in report[key].items():
            merged[int(index)] = merged.get(int(index), 0) + count
    return merged


def _quantile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def summarise(window: Window, label: str) -> dict[str, Any]:
    """One table row: CPU, per-viewer fps and losses, lag, message size and bitrate of a window."""
    fps = [n / r["seconds"] for r in window.reports for n in r["frames"]]
    lost = [n for r in window.reports for n in r["lost"]]
    frames = sum(n for r in window.reports for n in r["frames"])
    data = sum(n for r in window.reports for n in r["bytes"])
    lags = _merge_bins(window.reports, "lag_bins")
    capture_lags = _merge_bins(window.reports, "capture_lag_bins")
    return {
        "phase": label,
        "viewers": len(fps),
        "seconds": round(window.seconds, 2),
        "server_cpu_percent": round(window.server_cpu_s / window.seconds * 100, 1),
        "server_sys_percent": round(window.server_sys_s / window.seconds * 100, 1),
        "clients_cpu_percent": round(window.clients_cpu_s / window.seconds * 100, 1),
        # Everything else the machine ran meanwhile (other users' work, the kernel's own threads), % of one core.
        "others_cpu_percent": round(
            (window.machine_busy_s - window.server_cpu_s - window.clients_cpu_s) / window.seconds * 100, 1
        ),
        "steal_percent": round(window.steal_s / window.seconds * 100, 1),
        "fps_min": round(min(fps), 2) if fps else 0.0,
        "fps_p5": round(_quantile(fps, 0.05), 2),
        "fps_median": round(statistics.median(fps), 2) if fps else 0.0,
        "fps_max": round(max(fps), 2) if fps else 0.0,
        "lost_total": sum(lost),
        "lost_max": max(lost, default=0),
        "viewers_losing": sum(1 for n in lost if n),
        "closed": sum(r["closed"] for r in window.reports),
        "lag_ms": {q: round(_percentile_of_bins(lags, f), 2) for q, f in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
        | {"max": round(_percentile_of_bins(lags, 1.0), 2)},
        "capture_to_viewer_ms": {
            q: round(_percentile_of_bins(capture_lags, f), 2) for q, f in (("p50", 0.5), ("p95", 0.95))
        },
        "message_bytes": round(data / frames) if frames else 0,
        "viewer_mbps": round(data * 8 / 1e6 / window.seconds / max(1, len(fps)), 3),
    }


def _channel(stats: dict[str, Any], stream: str) -> dict[str, Any]:
    return dict(stats["streams"][stream]["channels"]["h264"])


def _subscribers_by_port(stats: dict[str, Any], stream: str) -> dict[int, dict[str, Any]]:
    """The stream's H.264 subscribers by their client's port (the server names a WS subscription `ws HOST:PORT`)."""
    subscribers = _channel(stats, stream)["subscribers"]
    return {int(sub["name"].rsplit(":", 1)[1]): sub for sub in subscribers if sub["name"].startswith("ws ")}


def _wait_for_stall(base: str, stream: str, ports: list[int]) -> float:
    """Wait until the hub has cut every stalled viewer (its subscription has drops); return the time it took."""
    t0 = time.monotonic()
    while True:
        subscribers = _subscribers_by_port(_get_json(f"{base}/api/stats"), stream)
        if all(port in subscribers and subscribers[port]["drops"] for port in ports):
            return time.monotonic() - t0
        if time.monotonic() - t0 > STALL_TIMEOUT_S:
            raise RuntimeError(f"the server never cut the {len(ports)} stalled viewer(s) in {STALL_TIMEOUT_S:g} s")
        time.sleep(0.25)  # poll interval of a deadline loop


def _vergence_window(
    base: str, pid: int, clients: Clients, seconds: float, label: str, stream: str, stalled_ports: list[int]
) -> dict[str, Any]:
    """Measure one window of the vergence server; add its hub's view (bitrate, drops, keyframe requests)."""
    before = _channel(_get_json(f"{base}/api/stats"), stream)
    window = _measure(pid, clients, seconds)
    stats = _get_json(f"{base}/api/stats")
    after = _channel(stats, stream)
    row = summarise(window, label)
    subscribers = _subscribers_by_port(stats, stream)
    row["server_rss_mb"] = round(_rss_mb(pid)["VmRSS"], 1)
    row["stream_mbps"] = round(after["bitrate_bps"] / 1e6, 3)
    row["keyframe_requests"] = after["keyframe_requests"] - before["keyframe_requests"]
    row["hub_drops"] = after["drops"] - before["drops"]
    row["healthy_hub_drops_total"] = sum(sub["drops"] for port, sub in subscribers.items() if port not in stalled_ports)
    if stalled_ports:
        row["stalled_drops_total"] = [
            subscribers[port]["drops"] if port in subscribers else None for port in stalled_ports
        ]
    row["stream"] = {
        "fps": stats["streams"][stream]["fps"],
        "encoder_skipped_frames": stats["streams"][stream]["encoder_skipped_frames"].get("h264", 0),
        "stages_ms": stats["streams"][stream]["stages_ms"],
    }
    return row


def _vergence_phases(
    clients: Clients,
    workdir: Path,
    viewers: int,
    size: str,
    fps: float,
    seconds: float,
    stalled: int,
    stream: str,
    warmup_s: float,
    scene: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/ws/video/{stream}"
    argv = serve_argv(port, "--size", size, "--fps", f"{fps:g}")
    env = {
        **scene_env(scene),
        "VERGENCE_STATE__PATH": str(workdir / "state.json"),  # the defaults, not a saved overlay or zoom
        "VERGENCE_SERVER__MAX_CONNECTIONS_PER_CLIENT": "1000000",  # every viewer is this machine's one account
    }
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    with _Server(argv, f"{base}/api/streams", workdir / "vergence.log", "vergence", env=env) as server:
        assert server.proc is not None
        pid = server.proc.pid
        _say(f"vergence: one viewer, baseline ({min(seconds, BASELINE_MAX_S):g} s)")
        clients.connect(url, 1)
        time.sleep(warmup_s)  # the encoder starts, the viewer gets its first GOP (a fixed warm-up)
        baseline_s = min(seconds, BASELINE_MAX_S)
        rows.append(_vergence_window(base, pid, clients, baseline_s, "vergence, 1 viewer", stream, []))

        _say(f"vergence: {viewers} viewers ({seconds:g} s)")
        t0 = time.monotonic()
        clients.connect(url, viewers - 1, first=1)
        extra["connect_s"] = round(time.monotonic() - t0, 2)
        extra["compressed_viewers"] = clients.compressed
        time.sleep(warmup_s)
        rows.append(_vergence_window(base, pid, clients, seconds, f"vergence, {viewers} viewers", stream, []))

        if stalled:
            _say(f"vergence: {viewers} viewers and {stalled} stalled ({seconds:g} s)")
            clients.connect(url, stalled, cmd="stall")
            ports = [port for reply in clients.all({"cmd": "report"}) for port in reply["stalled_ports"]]
            extra["stall_cut_after_s"] = round(_wait_for_stall(base, stream, ports), 2)
            label = f"vergence, {viewers} viewers + {stalled} stalled"
            rows.append(_vergence_window(base, pid, clients, seconds, label, stream, ports))
        extra["server_peak_rss_mb"] = round(_rss_mb(pid).get("VmHWM", 0.0), 1)
        clients.all({"cmd": "close"})
    return rows, extra


def _reference_phase(
    clients: Clients, workdir: Path, viewers: int, fps: float, seconds: float, size_bytes: int, warmup_s: float
) -> dict[str, Any]:
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.fanout_reference",
        "--port",
        str(port),
        "--size-bytes",
        str(size_bytes),
        "--fps",
        f"{fps:g}",
    ]
    _say(f"bare uvicorn: {viewers} viewers, {size_bytes} B messages ({seconds:g} s)")
    ready = f"http://127.0.0.1:{port}/stats"
    with _Server(argv, ready, workdir / "reference.log", "reference", cwd=ROOT) as server:
        assert server.proc is not None
        clients.connect(f"ws://127.0.0.1:{port}/ws", viewers)
        time.sleep(warmup_s)
        row = summarise(_measure(server.proc.pid, clients, seconds), f"bare uvicorn, {viewers} viewers")
        row["server_rss_mb"] = round(_rss_mb(server.proc.pid)["VmRSS"], 1)
        clients.all({"cmd": "close"})
    return row


def run(
    viewers: int = 500,
    size: str = "1280x720",
    fps: float = 30.0,
    seconds: float = 20.0,
    client_processes: int = 4,
    stalled: int = 1,
    reference: bool = True,
    json_out: Path | None = None,
    offer_deflate: bool = True,
    viewer_poll_ms: float = 0.0,
    stream: str = "cam0",
    warmup_s: float = WARMUP_S,
    scene: str = "camera",
) -> dict[str, Any]:
    """Measure, print the table, optionally write JSON; return the results (with `passed` against GOALS)."""
    if viewers < 2:
        raise ValueError("the fan-out bench needs at least 2 viewers")
    limit = raise_fd_limit(viewers + stalled + FD_HEADROOM)
    workdir = Path(tempfile.mkdtemp(prefix="vergence-fanout-"))
    _say(
        f"bench: {viewers} viewers of {size}@{fps:g} in {client_processes} processes; open-file limit {limit}; "
        f"logs in {workdir}"
    )
    load = os.getloadavg()
    clients = Clients(client_processes, workdir, offer_deflate, viewer_poll_ms)
    try:
        rows, extra = _vergence_phases(clients, workdir, viewers, size, fps, seconds, stalled, stream, warmup_s, scene)
        if reference:
            size_bytes = rows[1]["message_bytes"]
            rows.append(_reference_phase(clients, workdir, viewers, fps, seconds, size_bytes, warmup_s))
    finally:
        clients.close()
    results = _judge(
        {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "viewers": viewers,
            "stalled": stalled,
            "size": size,
            "fps": fps,
            "seconds": seconds,
            "client_processes": client_processes,
            "offer_deflate": offer_deflate,
            "viewer_poll_ms": viewer_poll_ms,
            "cpus": os.cpu_count(),
            "load_before": [round(x, 2) for x in load],
            "open_file_limit": limit,
            "rows": rows,
            **extra,
        }
    )
    print(format_table(results))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(results, indent=2) + "\n")
        _say(f"bench: results written to {json_out}")
    return results


def _judge(results: dict[str, Any]) -> dict[str, Any]:
    measured = [row for row in results["rows"] if row["phase"].startswith("vergence") and row["viewers"] > 1]
    fps_ok = all(row["fps_min"] >= GOALS["min_fps"] for row in measured)
    cpu_ok = all(row["server_cpu_percent"] < GOALS["server_cpu_percent"] for row in measured)
    results["goals"] = {"fps": fps_ok, "cpu": cpu_ok}
    reference = [row for row in results["rows"] if row["phase"].startswith("bare")]
    if reference and len(measured) and reference[0]["server_cpu_percent"]:
        results["ratio_vergence_to_bare"] = round(
            measured[0]["server_cpu_percent"] / reference[0]["server_cpu_percent"], 2
        )
        fanout = measured[0]["server_cpu_percent"] - results["rows"][0]["server_cpu_percent"]
        results["fanout_cpu_percent"] = round(fanout, 1)
        results["ratio_fanout_to_bare"] = round(fanout / reference[0]["server_cpu_percent"], 2)
    results["passed"] = fps_ok and cpu_ok
    return results


def format_table(results: dict[str, Any]) -> str:
    """The results as a Markdown table and a verdict."""
    lines = [
        f"{results['viewers']} WS viewers of {results['size']}@{results['fps']:g}, {results['seconds']:g} s per window, "
        f"{results['client_processes']} viewer processes"
        + (f" reading every {results['viewer_poll_ms']:g} ms" if results.get("viewer_poll_ms") else "")
        + f", {results['cpus']} cores (load before "
        f"{' '.join(str(x) for x in results['load_before'])})",
        "",
        "| phase | server CPU % of a core (sys) | viewers' CPU % | others' CPU % (steal) | fps min / p5 / median "
        "| frames lost per viewer (max) | lag hub→viewer p50 / p95 / p99 ms | capture→viewer p50 / p95 ms "
        "| message B | stream Mbit/s | keyframe requests | server RSS MB |",
        "|---|---:|---:|---:|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        lag, capture = row["lag_ms"], row["capture_to_viewer_ms"]
        lines.append(
            f"| {row['phase']} | {row['server_cpu_percent']:.1f} ({row['server_sys_percent']:.1f}) "
            f"| {row['clients_cpu_percent']:.1f} | {row['others_cpu_percent']:.1f} ({row['steal_percent']:.1f}) "
            f"| {row['fps_min']:.2f} / {row['fps_p5']:.2f} / {row['fps_median']:.2f} "
            f"| {row['lost_total'] / max(1, row['viewers']):.2f} ({row['lost_max']}) "
            f"| {lag['p50']:.2f} / {lag['p95']:.2f} / {lag['p99']:.2f} "
            f"| {capture['p50']:.2f} / {capture['p95']:.2f} | {row['message_bytes']} "
            f"| {row.get('stream_mbps', row['viewer_mbps']):.2f} | {row.get('keyframe_requests', '-')} "
            f"| {row['server_rss_mb']:.0f} |"
        )
    lines.append("")
    for row in results["rows"]:
        if "stream" in row:
            stream = row["stream"]
            lines.append(
                f"{row['phase']}: stream {stream['fps']} fps, encoder skipped {stream['encoder_skipped_frames']} "
                f"frames so far, stages ms {stream['stages_ms']}; hub drops {row['hub_drops']} in the window, "
                f"healthy viewers' drops {row['healthy_hub_drops_total']} in all"
                + (f", stalled viewers' {row['stalled_drops_total']}" if "stalled_drops_total" in row else "")
            )
    if "ratio_vergence_to_bare" in results:
        lines.append(
            f"vergence / bare uvicorn CPU: {results['ratio_vergence_to_bare']:.2f}× (whole server, encode included); "
            f"fan-out alone (N viewers − 1 viewer) {results['fanout_cpu_percent']:.1f} % = "
            f"{results['ratio_fanout_to_bare']:.2f}× bare"
        )
    lines.append(
        f"connect of all viewers {results.get('connect_s')} s; stalled viewers cut after "
        f"{results.get('stall_cut_after_s', '-')} s; viewers offer permessage-deflate: "
        f"{'yes' if results['offer_deflate'] else 'no'}, compressed for {results.get('compressed_viewers')} of "
        f"{results['viewers'] - 1}; server peak RSS {results.get('server_peak_rss_mb')} MB"
    )
    goals = results["goals"]
    lines.append(
        f"RESULT: {'PASS' if results['passed'] else 'FAIL'} (every viewer ≥ {GOALS['min_fps']:g} fps: "
        f"{'yes' if goals['fps'] else 'no'}; server < {GOALS['server_cpu_percent']:g} % of one core: "
        f"{'yes' if goals['cpu'] else 'no'})"
    )
    return "\n".join(lines)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
