"""ffmpeg as the receiver of vergence's UDP output, for the tests and `bench/rtp.py`: RTP (described by the SDP the output
writes) or MPEG-TS datagrams decoded by the ffmpeg command-line tool to grey frames on a pipe; each frame's capture time
is read from the time code the test pattern paints, and its arrival is the wall clock when the whole frame was read.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.ports import free_port
from vergence.media import timecode

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
# Low delay on the receiving side: no input buffering or probing (the SDP or the first keyframe says enough), one
# decoder thread (frame threads hold a frame each), frames passed through as decoded and flushed to the pipe at once.
LOW_DELAY_INPUT = [
    "-fflags", "nobuffer", "-flags", "low_delay", "-probesize", "32", "-analyzeduration", "0", "-threads", "1",
]  # fmt: skip
RAW_OUTPUT = ["-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-flush_packets", "1"]


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 together with the one above it (RTCP)."""
    return free_port(2)


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
