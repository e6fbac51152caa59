"""Media helpers for tests: H.264 made in memory with PyAV, decoding, time-code reading."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vergence.media import timecode


def encode_h264(frames: int = 10, width: int = 320, height: int = 240, gop: int = 5) -> list[bytes]:
    """Return `frames` Annex-B access units of a moving picture, with SPS/PPS on every keyframe."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": f"repeat-headers=1:keyint={gop}"}
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (height * 3 // 2, width), dtype=np.uint8)
    units = []
    for i in range(frames):
        image = np.roll(image, 4, axis=1)
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = i
        units += [bytes(packet) for packet in ctx.encode(frame)]
    return units


class H264Decoder:
    """Decode Annex-B access units one at a time; raises on data the decoder rejects."""

    def __init__(self) -> None:
        self._ctx = av.CodecContext.create("h264", "r")

    def decode(self, access_unit: bytes) -> list[av.VideoFrame]:
        return list(self._ctx.decode(av.Packet(access_unit)))


def read_timecode(frame: av.VideoFrame) -> int | None:
    """Capture time painted in a decoded test-pattern frame."""
    return timecode.read(frame.to_ndarray(format="gray"))


def write_feed(path: Path, frames: int = 15) -> None:
    """A raw H.264 stream (Annex B, no container): it has no duration, so vergence reads it as a live feed, taking
    frames as they come and opening it again when it ends, as it would an RTSP camera that drops out."""
    path.write_bytes(b"".join(encode_h264(frames)))


def write_clip(path: Path, frames: int = 15, fps: int = 30) -> None:
    """A small 320x240 H.264 file without a time code: a green bar sweeping over black."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(frames):
            image = np.zeros((240, 320, 3), np.uint8)
            image[:, (i * 20) % 320 :] = (0, 200, 50)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
