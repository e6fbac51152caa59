"""`python -m bench.rtp`: capture → decoded latency of the UDP output, RTP and MPEG-TS, with ffmpeg as receiver.

One run starts `vergence serve` (a 640x360@30 test pattern by default) with one `[[udp]]` output to 127.0.0.1, once per
protocol, and decodes what arrives with the ffmpeg command-line tool: RTP from the SDP file the output writes (nothing
else tells ffmpeg what to expect), MPEG-TS from `udp://`. ffmpeg writes grey frames to a pipe; each frame's capture time
is read from the time code the test pattern paints, and its latency is the wall clock when the whole frame has been read
from the pipe minus that capture time (same machine, same clock). So a latency here is capture → encoded → muxed → sent
→ ffmpeg's demuxer, decoder and pipe: the floor of what a ground station with a low-delay decoder would see.

The decoded fraction counts distinct time codes against the capture grid between the first and last one (the test
pattern captures exactly at the configured rate, so the grid is every frame the camera made).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.latency import _free_port, _get_json, _Server, serve_argv
from vergence.media import timecode

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
# Low delay on the receiving side: no input buffering or probing (the SDP or the first keyframe says enough), one
# decoder thread (frame threads hold a frame each), frames passed through as decoded and flushed to the pipe at once.
LOW_DELAY_INPUT = [
    "-fflags", "nobuffer", "-flags", "low_delay", "-probesize", "32", "-analyzeduration", "0", "-threads", "1",
]  # fmt: skip
RAW_OUTPUT = ["-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-flush_packets", "1"]

# The control state lives in the work directory: a saved zoom in the user's state would crop the time code away.
CONFIG = """
[state]
path = "{state_path}"

[[cameras]]
id = "cam0"
size = "{size}"
fps = {fps}

[[udp]]
id = "udp0"
stream = "cam0"
protocol = "{protocol}"
host = "127.0.0.1"
port = {port}
sdp_path = "{sdp_path}"
"""


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 together with the one above it (RTCP)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp:
            rtp.bind(("127.0.0.1", 0))
            port = rtp.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtcp:
                try:
                    rtcp.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free pair of UDP ports on 127.0.0.1")


def rtp_input(sdp_path: Path) -> list[str]:
    """ffmpeg input arguments for our RTP stream, described only by our SDP."""
    return ["-protocol_whitelist", "file,udp,rtp", *LOW_DELAY_INPUT, "-i", str(sdp_path)]


def mpegts_input(port: int) -> list[str]:
    """ffmpeg input arguments for MPEG-TS datagrams arriving on 127.0.0.1:port."""
    return [*LOW_DELAY_INPUT, "-f", "mpegts", "-i", f"udp://127.0.0.1:{port}?overrun_nonfatal=1&fifo_size=1000000"]


class FfmpegReceiver:
    """ffmpeg decoding to grey frames on a pipe; a thread notes (arrival ns, capture ns from the time code) per frame."""

    def __init__(self, input_args: list[str], width: int, height: int, log_path: Path | None = None) -> None:
        self.width, self.height = width, height
        self.records: list[tuple[int, int | None]] = []
        self.ended = threading.Event()
        self._changed = threading.Condition()
        log = log_path.open("wb") if log_path is not None else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "warning", *input_args, *RAW_OUTPUT, "pipe:1"],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        if log_path is not None and not isinstance(log, int):
            log.close()
        self._thread = threading.Thread(target=self._read, name="ffmpeg-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        size = self.width * self.height
        try:
            while True:
                data = self._process.stdout.read(size)
                arrived = time.time_ns()
                if len(data) < size:
                    return
                code = timecode.read(np.frombuffer(data, np.uint8).reshape(self.height, self.width))
                with self._changed:
                    self.records.append((arrived, code))
                    self._changed.notify_all()
        finally:
            self.ended.set()
            with self._changed:
                self._changed.notify_all()

    def wait_frames(self, count: int, timeout_s: float) -> bool:
        """Wait until `count` frames were read in all (False at the deadline or when ffmpeg ended)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(self.records) < count:
                left = deadline - time.monotonic()
                if left <= 0 or self.ended.is_set():
                    return False
                self._changed.wait(left)
        return True

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._thread.join(5)

    def __enter__(self) -> FfmpegReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Measurement:
    """Frames of one window: how many decoded, how many the camera captured, and their latency."""

    frames: int  # frames ffmpeg delivered
    distinct: int  # distinct time codes among them
    expected: int  # frames on the capture grid from the first code to the last
    unreadable: int  # frames without a readable time code
    p50_ms: float
    p95_ms: float
    max_ms: float

    @property
    def decoded_fraction(self) -> float:
        return self.distinct / self.expected if self.expected else 0.0


def measure(records: Sequence[tuple[int, int | None]], fps: float) -> Measurement:
    """Summarize (arrival ns, capture ns) records of decoded frames."""
    codes = [code for _, code in records if code is not None]
    latencies = sorted((arrived - code) / 1e6 for arrived, code in records if code is not None)
    if not codes:
        return Measurement(len(records), 0, 0, len(records), float("nan"), float("nan"), float("nan"))
    expected = round((max(codes) - min(codes)) * fps / 1e9) + 1
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    return Measurement(
        frames=len(records),
        distinct=len(set(codes)),
        expected=expected,
        unreadable=len(records) - len(codes),
        p50_ms=statistics.median(latencies),
        p95_ms=p95,
        max_ms=latencies[-1],
    )


def measure_protocol(
    protocol: str, seconds: float, size: str, fps: float, workdir: Path, warmup_s: float = 2.0
) -> tuple[Measurement, float]:
    """Serve one UDP output of `protocol`, decode it with ffmpeg, and measure `seconds` after a warm-up.

    Returns the measurement and the server's own capture → wire mean (ms) over the last two seconds.
    """
    width, height = (int(n) for n in size.lower().split("x"))
    port, http_port = free_udp_port(), _free_port()
    sdp_path = workdir / f"{protocol}.sdp"
    config = workdir / f"{protocol}.toml"
    state_path = workdir / f"{protocol}-state.json"
    config.write_text(
        CONFIG.format(size=size, fps=fps, protocol=protocol, port=port, sdp_path=sdp_path, state_path=state_path)
    )
    argv = serve_argv(http_port, "--config", str(config))
    ready = f"http://127.0.0.1:{http_port}/api/streams"
    with _Server(argv, ready, workdir / f"{protocol}-server.log", "vergence"):
        if protocol == "rtp":
            deadline = time.monotonic() + 20
            while not sdp_path.exists():  # written at the first keyframe
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no SDP at {sdp_path} after 20 s")
                time.sleep(0.05)
            input_args = rtp_input(sdp_path)
        else:
            input_args = mpegts_input(port)
        with FfmpegReceiver(input_args, width, height, workdir / f"{protocol}-ffmpeg.log") as receiver:
            warmup = max(1, round(warmup_s * fps))
            if not receiver.wait_frames(warmup, 30):
                raise RuntimeError(f"ffmpeg decoded {len(receiver.records)} {protocol} frames in 30 s")
            total = warmup + round(seconds * fps)
            receiver.wait_frames(total, seconds * 3 + 10)
            server_ms = _get_json(f"http://127.0.0.1:{http_port}/api/outputs/udp0")["capture_to_wire_ms"]
            return measure(receiver.records[warmup:total], fps), float(server_ms)


def run(
    seconds: float = 10.0, size: str = "640x360", fps: float = 30.0, protocols: Sequence[str] = ("rtp", "mpegts")
) -> dict[str, Measurement]:
    """Measure each protocol in turn and print a table; return the measurements by protocol."""
    workdir = Path(tempfile.mkdtemp(prefix="vergence-bench-rtp-"))
    rows = {protocol: measure_protocol(protocol, seconds, size, fps, workdir) for protocol in protocols}
    print(f"UDP output, {size}@{fps:g}, {seconds:g} s per protocol, ffmpeg as receiver (logs: {workdir})")
    print(
        f"{'protocol':<10}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'decoded':>10}{'frames':>9}{'expected':>10}"
        f"{'server ms':>11}"
    )
    for protocol, (m, server_ms) in rows.items():
        print(
            f"{protocol:<10}{m.p50_ms:>9.1f}{m.p95_ms:>9.1f}{m.max_ms:>9.1f}"
            f"{m.decoded_fraction:>10.1%}{m.distinct:>9}{m.expected:>10}{server_ms:>11.1f}"
        )
    print("latency: capture → frame read from ffmpeg's pipe; server ms: capture → last datagram sent (mean)")
    return {protocol: m for protocol, (m, _) in rows.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rtp", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per protocol")
    parser.add_argument("--size", default="640x360", help="picture size")
    parser.add_argument("--fps", type=float, default=30.0, help="frames per second")
    parser.add_argument("--protocols", default="rtp,mpegts", help="comma-separated: rtp, mpegts")
    args = parser.parse_args(argv)
    run(args.seconds, args.size, args.fps, [p.strip() for p in args.protocols.split(",") if p.strip()])


if __name__ == "__main__":
    main()
