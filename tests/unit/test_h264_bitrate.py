"""The default H.264 bitrate follows the picture: 0.2 bit per pixel of every frame unless `[h264] bitrate_bps` is set,
and the encoder encodes at it (its output over a few seconds is near it)."""

from __future__ import annotations

import time

from vergence.config import CameraSettings, H264Settings
from vergence.encoders.h264 import H264Encoder, auto_bitrate_bps, bitrate_for
from vergence.media.frame import TIME_BASE, Frame
from vergence.sources.testpattern import TestPatternSource


def test_the_automatic_bitrate_by_size_and_rate():
    assert auto_bitrate_bps(1280, 720, 30) == 5_500_000
    assert auto_bitrate_bps(1920, 1080, 30) == 12_400_000
    assert auto_bitrate_bps(640, 480, 30) == 1_800_000
    assert auto_bitrate_bps(160, 120, 5) == 300_000  # the floor
    assert auto_bitrate_bps(3840, 2160, 60) == 25_000_000  # the ceiling
    assert bitrate_for(H264Settings(bitrate_bps=2_000_000), 1920, 1080, 30) == 2_000_000  # a set one wins


def test_the_encoder_encodes_at_the_automatic_bitrate():
    source = TestPatternSource(CameraSettings(size="640x480", fps=30, options={"scene": "camera"}))
    source.open()
    encoder = H264Encoder("cam0", H264Settings(encoder="libx264"), lambda packet: None, lambda: 30.0)
    sent = 0
    for index in range(90):
        source._slot = index
        frame = Frame(source._draw(time.time_ns()), "yuv420p", 640, 480, index, index * 3000, time.time_ns())
        sent += sum(len(packet.data) for packet in encoder.encode(frame))
    encoder.reset()
    source.close()
    assert TIME_BASE.denominator == 90_000
    assert 0.7 * 1_800_000 < sent * 8 / 3 < 1.3 * 1_800_000, sent * 8 / 3  # three seconds at about 1.8 Mbit/s
