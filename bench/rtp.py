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
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.latency import _free_port, _get_json, _Server, serve_argv
from tests.support.udp_receiver import FfmpegReceiver, Measurement, free_udp_port, measure, mpegts_input, rtp_input

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
