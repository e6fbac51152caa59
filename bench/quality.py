"""`vergence bench quality`: picture quality of vergence's H.264 settings on the test camera's scenes.

The test camera renders `seconds` of its scene (the camera-like one by default) frame by frame on its own clock (not
paced: the encoder sees exactly the frames a live camera would, as fast as they can be made), vergence's libx264
options (encoders/h264.py, for the settings given) encode them, PyAV decodes them, and each decoded picture's luma is
compared with what went in: PSNR per frame, its mean and its minimum (a keyframe starved by the VBV shows there), the
bitrate that came out and the largest frame (the burst a link must carry).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from vergence.config import CameraSettings, H264Settings
from vergence.encoders.h264 import H264Encoder, bitrate_for
from vergence.media.frame import TIME_BASE, Frame
from vergence.sources.testpattern import TestPatternSource


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def measure(size: str, fps: float, h264: H264Settings, seconds: float, scene: str) -> dict[str, Any]:
    """Encode (vergence's own H264Encoder, called in line) and decode `seconds` of the scene at these settings; the
    quality and size of what came out."""
    camera = CameraSettings(id="cam0", size=size, fps=fps, options={"scene": scene})
    source = TestPatternSource(camera)
    info = source.open()
    width, height = info.width, info.height
    encoder = H264Encoder("cam0", h264.model_copy(update={"encoder": "libx264"}), lambda packet: None, lambda: fps)
    decoder = av.CodecContext.create("h264", "r")
    sent: list[np.ndarray] = []
    scores: list[float] = []
    sizes: list[int] = []
    encode_s = 0.0
    count = round(seconds * fps)
    step = round(TIME_BASE.denominator / fps)
    for index in range(count):
        source._slot = index  # the scene at this frame's instant, without waiting for it
        image = source._draw(time.time_ns())
        sent.append(image[:height].copy())
        frame = Frame(image, "yuv420p", width, height, index, index * step, time.time_ns(), "cam0")
        started = time.perf_counter()
        packets = encoder.encode(frame)
        encode_s += time.perf_counter() - started
        for packet in packets:
            sizes.append(len(packet.data))
            for picture in decoder.decode(av.Packet(packet.data)):
                luma = picture.to_ndarray(format="yuv420p")[: picture.height]  # as decoded: no range conversion
                scores.append(psnr(luma, sent.pop(0)))
    for picture in decoder.decode(None):
        scores.append(psnr(picture.to_ndarray(format="yuv420p")[: picture.height], sent.pop(0)))
    encoder.reset()
    source.close()
    return {
        "size": size,
        "fps": fps,
        "scene": scene,
        "bitrate_bps": bitrate_for(h264, width, height, fps),
        "gop_frames": h264.gop_frames,
        "frames": len(scores),
        "psnr_mean_db": round(sum(scores) / len(scores), 2),
        "psnr_min_db": round(min(scores), 2),
        "psnr_p1_db": round(sorted(scores)[len(scores) // 100], 2),
        "out_bitrate_bps": round(sum(sizes) * 8 * fps / len(sizes)),
        "largest_frame_bytes": max(sizes),
        "encode_ms_mean": round(1000 * encode_s / count, 2),
    }


def run(
    sizes: list[str],
    bitrates: list[int] | None = None,
    fps: float = 30.0,
    seconds: float = 10.0,
    scene: str = "camera",
    json_out: Path | None = None,
) -> list[dict[str, Any]]:
    """Measure each size at each bitrate (default: the configured default bitrate for that size)."""
    results = []
    for size in sizes:
        for bitrate in bitrates or [None]:  # type: ignore[list-item]
            settings = H264Settings() if bitrate is None else H264Settings(bitrate_bps=bitrate)
            row = measure(size, fps, settings, seconds, scene)
            results.append(row)
            print(
                f"{size}@{fps:g} {scene} at {row['bitrate_bps'] / 1e6:.2f} Mbit/s: PSNR mean {row['psnr_mean_db']} dB, "
                f"min {row['psnr_min_db']} dB, 1st percentile {row['psnr_p1_db']} dB; out "
                f"{row['out_bitrate_bps'] / 1e6:.2f} Mbit/s, largest frame {row['largest_frame_bytes'] / 1000:.0f} kB, "
                f"encode {row['encode_ms_mean']} ms",
                flush=True,
            )
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2))
    return results
