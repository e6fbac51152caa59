"""Raw BGR pixels for programs that want arrays, not JPEGs (ZeroMQ `format = "raw"`): a colour conversion, no coding."""

from __future__ import annotations

import cv2

from vergence.encoders.base import Encoder
from vergence.media.frame import EncodedPacket, Frame


class RawEncoder(Encoder):
    """Every frame becomes one packet of packed BGR bytes (height × width × 3, uint8) with its size in the packet."""

    format = "raw"

    def encode(self, frame: Frame) -> list[EncodedPacket]:
        if frame.pix_fmt == "yuv420p":
            bgr = cv2.cvtColor(frame.image, cv2.COLOR_YUV2BGR_I420)
        else:
            bgr = frame.image
        return [EncodedPacket.picture(frame, bgr.tobytes())]
