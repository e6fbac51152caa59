"""JPEG through simplejpeg (libjpeg-turbo), straight from I420 planes without a colour conversion."""

from __future__ import annotations

import simplejpeg

from vergence.config import JpegSettings
from vergence.encoders.base import Encoder, PacketSink
from vergence.media.frame import EncodedPacket, Frame, full_range_planes, i420_planes
from vergence.media.i420 import scale_frame


def encode_jpeg(frame: Frame, quality: int) -> bytes:
    """Return one JPEG of a frame."""
    if frame.pix_fmt == "yuv420p":
        y, u, v = i420_planes(frame.image, frame.width, frame.height)
        if frame.limited_range:
            y, u, v = full_range_planes(y, u, v)
        return simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=quality, fastdct=True)
    return simplejpeg.encode_jpeg(frame.image, quality=quality, colorspace="BGR", colorsubsampling="420", fastdct=True)


def jpeg_packet(frame: Frame, quality: int) -> EncodedPacket:
    """One JPEG of a frame as a packet."""
    return EncodedPacket.picture(frame, encode_jpeg(frame, quality))


class JpegEncoder(Encoder):
    """Every frame becomes a keyframe JPEG packet."""

    format = "jpeg"

    def __init__(self, stream_id: str, settings: JpegSettings, sink: PacketSink) -> None:
        super().__init__(stream_id, sink)
        self.settings = settings

    def encode(self, frame: Frame) -> list[EncodedPacket]:
        return [jpeg_packet(frame, self.settings.quality)]


class ScaledJpegEncoder(Encoder):
    """JPEGs of one size and quality from a stream's newest frame, scaled and encoded on the encoder's thread."""

    format = "jpeg"

    def __init__(self, stream_id: str, width: int, height: int, quality: int, sink: PacketSink) -> None:
        super().__init__(stream_id, sink)
        self.width, self.height, self.quality = width, height, quality
        self.format = f"jpeg-{width}x{height}-q{quality}"  # names the thread

    def encode(self, frame: Frame) -> list[EncodedPacket]:
        return [jpeg_packet(scale_frame(frame, self.width, self.height), self.quality)]
