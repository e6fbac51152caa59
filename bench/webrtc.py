"""`vergence bench webrtc`: ten WebRTC peers cost the server less CPU than ten encodes would.

WebRTC peers get the stream's own H.264 (no encode per peer). The bench measures the server's CPU (utime + stime of its
process) with one WebSocket viewer keeping the encoder running, then with N aiortc peers added (each with the control
data channel, so frame times are sent too); the difference is what the peers cost. Then, in this process with the
server stopped, it encodes the same number of test-pattern frames N times over with vergence's own H264Encoder and the
server's settings, interleaved as N streams would be, and compares.

The peers run in this process. By default they do not decode: aiortc's receivers still take every RTP packet through
SRTP, the jitter buffer, NACKs and RTCP reports, but hand each complete picture to a counter instead of FFmpeg, so the
bench process takes less CPU from the server it measures (`--decode` decodes as a browser would).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame
from av.frame import Frame

from tests.support.netns import enter_private_network

WARMUP_TIMEOUT_S = 20.0
PATTERN_SECONDS = 2.0  # distinct test-pattern frames rendered for the encode run (played forth and back)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class _CountingDecoder(Decoder):
    """Stands in for aiortc's H.264 decoder: counts complete pictures, decodes nothing."""

    pictures = 0
    _lock = threading.Lock()

    def decode(self, encoded_frame: JitterFrame) -> list[Frame]:
        with self._lock:
            _CountingDecoder.pictures += 1
        return []


@contextlib.contextmanager
def _decoding_skipped(skip: bool) -> Iterator[None]:
    """While inside, this process's aiortc receivers count H.264 pictures instead of decoding them."""
    import aiortc.rtcrtpreceiver

    real = aiortc.rtcrtpreceiver.get_decoder
    if skip:
        aiortc.rtcrtpreceiver.get_decoder = lambda codec: (
            _CountingDecoder() if codec.mimeType.lower() == "video/h264" else real(codec)
        )
    try:
        yield
    finally:
        aiortc.rtcrtpreceiver.get_decoder = real


async def _measure(pid: int, seconds: float) -> tuple[float, float]:
    """Server cores used over `seconds`, and this process's cores over the same time."""
    cpu0, own0, t0 = _cpu_seconds(pid), time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)  # the measuring window itself
    cpu1, own1, t1 = _cpu_seconds(pid), time.process_time(), time.monotonic()
    return (cpu1 - cpu0) / (t1 - t0), (own1 - own0) / (t1 - t0)


async def _get_json(base: str, path: str) -> Any:
    import httpx

    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(base + path)
        response.raise_for_status()
        return response.json()


async def _until(check: Any, what: str) -> None:
    """Wait until `check()` (a bool or an awaitable of one) holds; RuntimeError after WARMUP_TIMEOUT_S."""
    deadline = time.monotonic() + WARMUP_TIMEOUT_S
    while True:
        done = check()
        if asyncio.iscoroutine(done):
            done = await done
        if done:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {WARMUP_TIMEOUT_S:g} s")
        await asyncio.sleep(0.1)  # poll interval of a deadline loop


async def _serve_and_measure(
    base: str, pid: int, seconds: float, fps: float, peers: int, decode: bool
) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    from vergence.client.webrtc import WebRtcClient

    ws_frames = 0

    async def watch() -> None:
        nonlocal ws_frames
        async with connect(base.replace("http", "ws") + "/ws/video/cam0", max_size=None) as ws:
            async for message in ws:
                ws_frames += isinstance(message, bytes)

    async def drain(client: WebRtcClient) -> None:
        while True:
            await client.frame()

    viewer = asyncio.create_task(watch())
    clients: list[WebRtcClient] = []
    drains: list[asyncio.Task[None]] = []
    try:
        await _until(lambda: ws_frames >= fps, "the WebSocket viewer's first second of video")
        base_cores, base_own = await _measure(pid, seconds)

        for _ in range(peers):
            client = WebRtcClient(base, "cam0")
            await client.__aenter__()
            clients.append(client)
            if decode:
                drains.append(asyncio.create_task(drain(client)))

        async def all_flowing() -> bool:
            listing = await _get_json(base, "/api/webrtc")
            return len(listing["list"]) == peers and all(p["frames"] >= fps for p in listing["list"])

        await _until(all_flowing, f"{peers} peers receiving a second of video")
        sent0 = {p["id"]: p["frames"] for p in (await _get_json(base, "/api/webrtc"))["list"]}
        pictures0, t0 = _CountingDecoder.pictures, time.monotonic()
        peer_cores, peer_own = await _measure(pid, seconds)
        pictures1, elapsed = _CountingDecoder.pictures, time.monotonic() - t0
        listing = await _get_json(base, "/api/webrtc")
        stats = await _get_json(base, "/api/stats")
        sent_fps = [(p["frames"] - sent0.get(p["id"], 0)) / elapsed for p in listing["list"]]
        received = (pictures1 - pictures0) / elapsed / peers if not decode else None
        return {
            "baseline_cores": base_cores,
            "bench_process_cores_baseline": base_own,
            "peers_cores": peer_cores,
            "bench_process_cores_peers": peer_own,
            "sent_fps_per_peer": [round(value, 1) for value in sent_fps],
            "received_fps_per_peer": round(received, 1) if received is not None else None,
            "peer_drops": sum(p["drops"] for p in listing["list"]),
            "stream_fps": stats["streams"]["cam0"]["fps"],
            "encoder_skipped_frames": stats["streams"]["cam0"]["encoder_skipped_frames"],
        }
    finally:
        for task in [*drains, viewer]:
            task.cancel()
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        for task in [*drains, viewer]:
            with contextlib.suppress(BaseException):
                await task


def _pattern_frames(size: tuple[int, int], fps: float, scene: str) -> list[Any]:
    """Test-pattern frames as the server's camera makes them (moving scene, sweeping box, clock, time code)."""
    from vergence.config import CameraSettings
    from vergence.sources.testpattern import TestPatternSource

    source = TestPatternSource(CameraSettings(size=size, fps=fps, options={"scene": scene}))
    source.open()
    try:
        frames = [source.read() for _ in range(max(2, round(fps * PATTERN_SECONDS)))]
    finally:
        source.close()
    return frames + frames[-2:0:-1]  # forth and back: no jump where the loop restarts


def _measure_encodes(size: tuple[int, int], fps: float, encodes: int, frames: int, scene: str) -> dict[str, Any]:
    """CPU of `encodes` H.264 encoders fed `frames` frames each, interleaved; cores at `fps` per encode."""
    from vergence.config import load_settings
    from vergence.encoders.h264 import H264Encoder

    settings = load_settings(None, {}, {}).h264  # what the server was given (defaults and VERGENCE_H264__*)
    pattern = _pattern_frames(size, fps, scene)
    step = round(90_000 / fps)
    encoders = [H264Encoder(f"bench{i}", settings, lambda packet: None, lambda: fps) for i in range(encodes)]
    for encoder in encoders:  # open the codecs outside the measured time, as a running stream has them open
        encoder.encode(dataclasses.replace(pattern[0], pts=0, seq=0))
    packets = 0
    cpu0, t0 = time.process_time(), time.monotonic()
    for n in range(1, frames + 1):
        frame = dataclasses.replace(pattern[n % len(pattern)], pts=n * step, seq=n)
        for encoder in encoders:
            packets += len(encoder.encode(frame))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    per_encode_cores = cpu / encodes / (frames / fps)
    return {
        "encoder": encoders[0].codec_name,
        "encodes": encodes,
        "frames_each": frames,
        "packets": packets,
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "per_encode_cores": per_encode_cores,
        "encodes_cores": per_encode_cores * encodes,
    }


def run(
    seconds: float = 20.0,
    size: str = "1280x720",
    fps: float = 30.0,
    peers: int = 10,
    decode: bool = False,
    json_out: Path | None = None,
    scene: str = "camera",
) -> dict[str, Any]:
    """Measure and print server CPU for N WebRTC peers against N encodes; PASS when the peers cost less."""
    # First, before any thread: a namespace holds only the thread that enters it and what it starts afterwards.
    why_not = enter_private_network()
    from bench.latency import _Server, scene_env, serve_argv

    width, height = (int(side) for side in size.lower().split("x"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = Path(tempfile.mkdtemp(prefix="vergence-webrtc-"))
    os.environ.setdefault("VERGENCE_STATE__PATH", str(workdir / "state.json"))
    os.environ.setdefault("VERGENCE_WEBRTC__MAX_PEERS", str(max(peers, 32)))
    os.environ.setdefault("VERGENCE_WEBRTC__MAX_PEERS_PER_CLIENT", str(max(peers, 4)))  # every peer is this process
    base = f"http://127.0.0.1:{port}"
    argv = serve_argv(port, "--size", size, "--fps", f"{fps:g}")
    with _Server(argv, f"{base}/api/streams", workdir / "vergence.log", "vergence", env=scene_env(scene)) as server:
        assert server.proc is not None
        with _decoding_skipped(not decode):
            served = asyncio.run(_serve_and_measure(base, server.proc.pid, seconds, fps, peers, decode))
    encoded = _measure_encodes((width, height), fps, peers, round(fps * seconds), scene)

    increment = served["peers_cores"] - served["baseline_cores"]
    per_peer = increment / peers
    per_encode = encoded["per_encode_cores"]
    results: dict[str, Any] = {
        "size": size,
        "fps": fps,
        "seconds": seconds,
        "peers": peers,
        "clients_decode": decode,
        "private_network": why_not is None,
        "private_network_problem": why_not,
        **{key: round(value, 3) if isinstance(value, float) else value for key, value in served.items()},
        "peers_increment_cores": round(increment, 3),
        "per_peer_cores": round(per_peer, 4),
        "encodes": {key: round(value, 4) if isinstance(value, float) else value for key, value in encoded.items()},
        "per_peer_vs_per_encode": round(per_peer / per_encode, 4),
        "increment_vs_encodes": round(increment / encoded["encodes_cores"], 4),
        "pass": increment < encoded["encodes_cores"],
    }
    _print(results)
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2))
    return results


def _print(r: dict[str, Any]) -> None:
    encodes = r["encodes"]
    n = r["peers"]
    if r["private_network"]:
        print("private network: yes (peers use ICE on 10.203.0.0/24; nothing leaves the namespace)")
    else:
        print(f"private network: NO ({r['private_network_problem']}); ICE used this machine's own addresses")
    print(
        f"WebRTC fan-out vs encoding: {r['size']}@{r['fps']:g}, {r['seconds']:g} s per measurement, {n} peers "
        f"({'decoding' if r['clients_decode'] else 'not decoding: RTP/SRTP/RTCP only'}), {os.cpu_count()} cores"
    )
    rows = [
        ("server, 1 WebSocket viewer (encoder on)", r["baseline_cores"]),
        (f"server, + {n} WebRTC peers", r["peers_cores"]),
        (f"  increment for {n} peers", r["peers_increment_cores"]),
        ("  per peer", r["per_peer_cores"]),
        (f"{n} {encodes['encoder']} encodes of the same frames", encodes["encodes_cores"]),
        ("  per encode", encodes["per_encode_cores"]),
    ]
    print(f"{'':44} {'cores':>7}")
    for label, value in rows:
        print(f"{label:44} {value:7.3f}")
    print(f"per-peer cost / per-encode cost: {r['per_peer_vs_per_encode'] * 100:.1f} %")
    print(f"{n}-peer increment / {n} encodes:   {r['increment_vs_encodes'] * 100:.1f} %")
    received = r["received_fps_per_peer"]
    print(
        f"sent fps per peer {min(r['sent_fps_per_peer']):.1f}…{max(r['sent_fps_per_peer']):.1f}"
        + (f", received {received:.1f}" if received is not None else "")
        + f", peer drops {r['peer_drops']}, stream fps {r['stream_fps']}; bench process (clients) "
        f"{r['bench_process_cores_peers']:.2f} cores with peers; encodes took {encodes['cpu_s']} s CPU "
        f"in {encodes['wall_s']} s"
    )
    print("RESULT: " + ("PASS" if r["pass"] else "FAIL") + f" ({n} peers cost less than {n} encodes)")
