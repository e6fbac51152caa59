"""The latency floor: the barest WebSocket → PyAV libx264 → WebCodecs pipeline, with no vergence code.

`vergence bench latency` runs this file as its own process (`python floor.py --port N`) and measures it in the same
headless Chromium as the vergence players, so the ratio vergence/floor says how much vergence itself adds on this
machine.

What it does, and nothing more:

- a thread makes 1280×720 yuv420p frames at 30 fps from a monotonic clock (a colourful scene that pans 120 px/s with a
  bright box sweeping across it: content of the same difficulty as vergence's simple test pattern; or, with
  `--scene-file`, the test camera's scene exported by the latency bench, its grain added fresh to every frame as the
  camera adds it), stamps `time.time_ns()` as
  the capture time when it starts a frame, and encodes it with PyAV libx264 with the same options as vergence's encoder
  (values copied here, not imported);
- each access unit goes to every WebSocket client at `/ws` as one binary message: a 24-byte header laid out like
  vergence's (`>BBHIQQ`: version, flags, header length, seq, capture_ns, send_ns) so the browser side parses both alike,
  then the Annex-B bytes;
- the page at `/` feeds them to a plain `VideoDecoder` and, in its output callback, records capture → decoded latency
  as `performance.timeOrigin + performance.now() − capture_ms` (same machine, so the clocks agree: no ping/pong offset),
  draws the frame to a 2D canvas as vergence's page does, and closes it;
- `GET /stats` answers JSON counters (frames, mean encode time, bitrate) for the benchmark's report.

This module imports only the standard library, numpy, PyAV and websockets.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import struct
import threading
import time
from fractions import Fraction
from http import HTTPStatus

import av
import numpy as np
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

HEADER = struct.Struct(">BBHIQQ")  # version, flags (bit 0 keyframe), header length, seq, capture_ns, send_ns
TIME_BASE = Fraction(1, 90_000)
PAN_PX_PER_S = 120
SWEEP_S = 4.0

# The H.264 settings of vergence's defaults (config.H264Settings) and the options its libx264 encoder builds from them
# (encoders/h264.py, _libx264_options), copied as values: the bitrate is the automatic one of 1280x720 @ 30.
BITRATE_BPS = 5_500_000
GOP_FRAMES = 60
THREADS = 2


def libx264_options(fps: float) -> dict[str, str]:
    rate = max(1, round(fps))
    params = [
        f"threads={THREADS}",
        "sliced-threads=1",
        "repeat-headers=1",
        "annexb=1",
        "aud=0",
        f"keyint={GOP_FRAMES}",
        f"min-keyint={min(GOP_FRAMES, rate)}",
        "scenecut=0",
        f"vbv-maxrate={BITRATE_BPS // 1000}",
        f"vbv-bufsize={max(1, BITRATE_BPS // 2000)}",  # half a second
    ]
    return {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "profile": "baseline",
        "forced-idr": "1",
        "x264-params": ":".join(params),
    }


def make_scene(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A colourful yuv420p scene that tiles horizontally: hue sweep, grid, random discs. Planes twice as wide, so any
    window [x, x + width) is one slice."""
    cw, ch = width // 2, height // 2
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)
    luma = np.broadcast_to(60 + 140 * ys[:, None] / height + 20 * np.sin(xs * 2 * np.pi / width * 3), (height, width))
    luma = luma.astype(np.float32).copy()
    cx = np.arange(cw, dtype=np.float32) * 2 * np.pi / cw  # one full hue turn across the width
    u = np.broadcast_to(128 + 90 * np.cos(cx), (ch, cw)).astype(np.float32).copy()
    v = np.broadcast_to(128 + 90 * np.sin(cx), (ch, cw)).astype(np.float32).copy()
    step = max(16, width // 20)
    luma[:, ::step] = 40
    luma[::step, :] = 40
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(24):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(step // 4, step))
        dx = np.minimum(np.abs(xx - x0), width - np.abs(xx - x0))  # wrap around: the scene tiles
        disc = dx * dx + (yy - y0) ** 2 <= r * r
        luma[disc] = rng.integers(16, 236)
        cdisc = disc[::2, ::2]
        u[cdisc] = rng.integers(16, 241)
        v[cdisc] = rng.integers(16, 241)
    planes = [np.clip(p, 0, 255).astype(np.uint8) for p in (luma, u, v)]
    return tuple(np.ascontiguousarray(np.hstack([p, p])) for p in planes)  # type: ignore[return-value]


NOISE_MARGIN_PX = 64  # the noise banks are this much larger than the planes each way


def load_scene(path: str, width: int, height: int) -> tuple[tuple[np.ndarray, ...], list[np.ndarray]]:
    """The test camera's scene as `vergence bench latency` exported it: planes twice as wide (as make_scene's) and
    noise banks around 128. The planes are kept 12 levels inside 0…255 and the noise is turned into wrapping offsets, so
    one uint8 add per plane is the camera's saturating add (the grain never reaches ±12)."""
    data = np.load(path)
    planes = tuple(np.ascontiguousarray(np.clip(data[name], 12, 243)) for name in ("y", "u", "v"))
    if planes[0].shape != (height, 2 * width):
        raise SystemExit(f"{path}: a scene of {planes[0].shape[1] // 2}x{planes[0].shape[0]}, not {width}x{height}")
    noise = [
        (np.clip(data[f"noise_{name}"].astype(np.int16), 116, 140) - 128).astype(np.int8).view(np.uint8)
        for name in "yuv"
        if f"noise_{name}" in data
    ]
    return planes, noise


class Floor:
    """Frame thread (make, stamp, encode) → asyncio loop (broadcast to WebSocket clients)."""

    def __init__(self, width: int, height: int, fps: float, scene_file: str | None = None) -> None:
        if width % 2 or height % 2:
            raise ValueError("width and height must be even")
        self.width, self.height, self.fps = width, height, fps
        self.clients: set[ServerConnection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop = threading.Event()
        self.frames = 0
        self.bytes = 0
        self.encode_ms: collections.deque[float] = collections.deque(maxlen=90)  # the last 3 s at 30 fps
        self.started = time.monotonic()
        self._scene = make_scene(width, height)
        self._noise: list[np.ndarray] = []
        if scene_file is not None:
            self._scene, self._noise = load_scene(scene_file, width, height)
        self._rng = np.random.default_rng()

    # ---- frame thread -------------------------------------------------------------------------------------------
    def _codec(self) -> av.VideoCodecContext:
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = self.width, self.height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = TIME_BASE
        ctx.framerate = Fraction(self.fps).limit_denominator(1001)
        ctx.bit_rate = BITRATE_BPS
        ctx.gop_size = GOP_FRAMES
        ctx.options = libx264_options(self.fps)
        ctx.open()
        return ctx

    def _draw(self, slot: int) -> np.ndarray:
        w, h = self.width, self.height
        image = np.empty((h * 3 // 2, w), np.uint8)
        luma = image[:h]
        chroma = image[h:].reshape(2, h // 2, w // 2)
        offset = int(slot / self.fps * PAN_PX_PER_S) % w & ~1
        sy, su, sv = self._scene
        luma[:] = sy[:, offset : offset + w]
        chroma[0] = su[:, offset // 2 : offset // 2 + w // 2]
        chroma[1] = sv[:, offset // 2 : offset // 2 + w // 2]
        box = max(8, h // 8) & ~1
        phase = (slot / self.fps % SWEEP_S) / SWEEP_S
        bx = int((w - box) * (1 - abs(2 * phase - 1))) & ~1
        by = (h - box - box // 2) & ~1
        luma[by : by + box, bx : bx + box] = 235
        if self._noise:  # fresh grain in every frame: the noise banks at a random offset, added without overflow
            dy, dx = (int(n) for n in self._rng.integers(0, NOISE_MARGIN_PX, 2))
            for plane, bank, scale in zip((luma, chroma[0], chroma[1]), self._noise, (1, 2, 2), strict=True):
                oy, ox = dy // scale, dx // scale
                np.add(plane, bank[oy : oy + plane.shape[0], ox : ox + plane.shape[1]], out=plane)
        return image

    def run_frames(self) -> None:
        ctx = self._codec()
        period = 1.0 / self.fps
        pts_step = round(TIME_BASE.denominator / self.fps)
        t0 = time.monotonic()
        slot = seq = 0
        while not self.stop.is_set():
            due = t0 + slot * period
            delay = due - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                break
            late = int((time.monotonic() - due) / period)
            if late > 1:  # stalled: skip the missed slots rather than burst
                slot += late
            capture_ns = time.time_ns()
            started = time.perf_counter()
            frame = av.VideoFrame.from_ndarray(self._draw(slot), format="yuv420p")
            frame.pts = slot * pts_step
            frame.time_base = TIME_BASE
            packets = ctx.encode(frame)
            self.encode_ms.append((time.perf_counter() - started) * 1000)
            for packet in packets:
                data = bytes(packet)
                self.frames += 1
                self.bytes += len(data)
                assert self.loop is not None
                self.loop.call_soon_threadsafe(self._send, seq, capture_ns, packet.is_keyframe, data)
            slot += 1
            seq += 1

    # ---- asyncio loop -------------------------------------------------------------------------------------------
    def _send(self, seq: int, capture_ns: int, key: bool, data: bytes) -> None:
        if self.clients:
            header = HEADER.pack(1, 1 if key else 0, HEADER.size, seq & 0xFFFFFFFF, capture_ns, time.time_ns())
            broadcast(self.clients, header + data)  # skips a client whose socket buffer is full, never waits

    def stats(self) -> dict[str, float | int]:
        elapsed = max(1e-9, time.monotonic() - self.started)
        recent = list(self.encode_ms)
        return {
            "frames": self.frames,
            "fps": round(self.frames / elapsed, 2),
            "bitrate_bps": round(self.bytes * 8 / elapsed),
            "encode_ms_mean": round(sum(recent) / max(1, len(recent)), 3),  # draw + encode, last 90
            "clients": len(self.clients),
        }

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            return None  # go on with the WebSocket handshake
        if path == "/":
            return _response(
                connection,
                PAGE.replace("__W__", str(self.width)).replace("__H__", str(self.height)),
                "text/html; charset=utf-8",
            )
        if path == "/stats":
            return _response(connection, json.dumps(self.stats()), "application/json")
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")

    async def handler(self, connection: ServerConnection) -> None:
        self.clients.add(connection)
        try:
            await connection.wait_closed()
        finally:
            self.clients.discard(connection)

    async def serve(self, host: str, port: int) -> None:
        self.loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(sig, done.set)
        async with serve(self.handler, host, port, process_request=self.process_request, compression=None):
            self.started = time.monotonic()
            thread = threading.Thread(target=self.run_frames, name="floor-frames", daemon=True)
            thread.start()
            print(f"floor: page at http://localhost:{port}/", flush=True)
            await done.wait()
            self.stop.set()
            await asyncio.to_thread(thread.join, 5)


def _response(connection: ServerConnection, body: str, content_type: str) -> Response:
    response = connection.respond(HTTPStatus.OK, body)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    response.headers["Cache-Control"] = "no-store"
    return response


PAGE = """<!doctype html>
<meta charset="utf-8">
<title>latency floor</title>
<style>html,body{margin:0;background:#000}canvas{display:block;width:100vw;height:auto}</style>
<canvas id="canvas" width="__W__" height="__H__"></canvas>
<script>
// Plain WebSocket -> WebCodecs VideoDecoder -> 2D canvas. Same machine as the server: no clock offset.
const canvas = document.getElementById('canvas');
const ctx2d = canvas.getContext('2d', { alpha: false, desynchronized: true });
const stats = {
  frames: 0, decoded: 0, dropped: 0, latencies: [], codec: null, error: null,
  shown(seq, latencyMs) {
    this.decoded++;
    if (this.latencies.length >= 10000) this.latencies.splice(0, 1000);
    if (latencyMs !== null) this.latencies.push(latencyMs);
  },
};
window.floor = { player: 'floor', stats };
const pending = new Map(); // chunk timestamp -> {seq, captureMs}
let decoder = null;
let index = 0;

function nsToMs(ns) {
  const whole = ns / 1000000n;
  return Number(whole) + Number(ns - whole * 1000000n) / 1e6;
}

function codecOf(bytes) { // avc1.PPCCLL from the first SPS of an Annex-B access unit
  for (let i = 0; i + 6 < bytes.length; i++) {
    if (bytes[i] === 0 && bytes[i + 1] === 0 && bytes[i + 2] === 1 && (bytes[i + 3] & 0x1f) === 7) {
      const hex = (b) => b.toString(16).padStart(2, '0').toUpperCase();
      return 'avc1.' + hex(bytes[i + 4]) + hex(bytes[i + 5]) + hex(bytes[i + 6]);
    }
  }
  return null;
}

function onFrame(frame) {
  const decodedAt = performance.timeOrigin + performance.now();
  const meta = pending.get(frame.timestamp);
  for (const key of pending.keys()) { if (key > frame.timestamp) break; pending.delete(key); }
  if (canvas.width !== frame.displayWidth || canvas.height !== frame.displayHeight) {
    canvas.width = frame.displayWidth;
    canvas.height = frame.displayHeight;
  }
  ctx2d.drawImage(frame, 0, 0);
  frame.close();
  stats.shown(meta ? meta.seq : null, meta ? decodedAt - meta.captureMs : null);
}

const ws = new WebSocket(`ws://${location.host}/ws`);
ws.binaryType = 'arraybuffer';
ws.onmessage = (event) => {
  const view = new DataView(event.data);
  const key = (view.getUint8(1) & 1) !== 0;
  const payload = new Uint8Array(event.data, view.getUint16(2));
  const seq = view.getUint32(4);
  const captureMs = nsToMs(view.getBigUint64(8));
  stats.frames++;
  if (!decoder) {
    const codec = key ? codecOf(payload) : null;
    if (!codec) { stats.dropped++; return; }
    stats.codec = codec;
    decoder = new VideoDecoder({ output: onFrame, error: (err) => { stats.error = String(err); decoder = null; } });
    decoder.configure({ codec, optimizeForLatency: true, codedWidth: __W__, codedHeight: __H__ });
  }
  const timestamp = index++;
  pending.set(timestamp, { seq, captureMs });
  decoder.decode(new EncodedVideoChunk({ type: key ? 'key' : 'delta', timestamp, data: payload }));
};
</script>
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--scene-file", default=None, help="the test camera's scene, exported by the latency bench")
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.lower().split("x"))
    asyncio.run(Floor(width, height, args.fps, args.scene_file).serve(args.host, args.port))


if __name__ == "__main__":
    main()
