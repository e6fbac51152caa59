"""The records that travel the data path: raw Frames and EncodedPackets, and the binary frame header."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

#: Time base of every `pts` in vergence: the 90 kHz clock of RTP and MPEG-TS.
TIME_BASE = Fraction(1, 90_000)

#: Binary frame header of the video and MSE WebSockets (docs/protocol.md): version, flags, header length, seq,
#: capture_ns, send_ns.
HEADER = struct.Struct(">BBHIQQ")
HEADER_VERSION = 1
FLAG_KEYFRAME = 0x01
FLAG_CONFIG = 0x02
FLAG_INIT = 0x04


@dataclass(slots=True)
class Frame:
    """One raw picture: `image` is I420 (`yuv420p`, shape (h*3/2, w)) or `bgr24` (shape (h, w, 3))."""

    image: np.ndarray
    pix_fmt: str
    width: int
    height: int
    seq: int
    pts: int
    capture_ns: int
    camera: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: I420 in video (limited) range, luma 16–235: what a Raspberry Pi camera's video modes deliver. JPEG is full range,
    #: so a JPEG of such a frame is expanded first (`full_range_planes`); H.264 carries limited range as it is.
    limited_range: bool = False
    #: The part of the sensor (or of the decoded picture) this picture shows, as (x, y, width, height) in sensor pixels
    #: (a source that crops at the sensor says which crop this very frame has; a crop lands frames after it is asked
    #: for). None: the whole sensor, or unknown. The tracker maps what it sees back to the sensor with it.
    crop: tuple[int, int, int, int] | None = None
    #: A stereo pair's side-by-side picture: each eye's `crop` (left, right).
    eye_crops: tuple[tuple[int, int, int, int] | None, tuple[int, int, int, int] | None] | None = None

    def gray(self) -> np.ndarray:
        """Return the luma plane (a view for I420, a conversion for BGR)."""
        if self.pix_fmt == "yuv420p":
            return self.image[: self.height]
        import cv2

        return cv2.cvtColor(self.image, cv2.COLOR_BGR2GRAY)


@dataclass(slots=True)
class EncodedPacket:
    """One encoded unit: an H.264 Annex-B access unit, a JPEG, an fMP4 fragment, or raw BGR pixels."""

    data: bytes
    keyframe: bool
    seq: int
    pts: int
    capture_ns: int
    config: bool = False
    width: int = 0  # of the picture, where the consumer needs it (raw pixels)
    height: int = 0
    init: bool = False
    encode_ms: float = 0.0
    send_ns: int = 0
    _framed: bytes | None = None
    #: This packet as a consumer puts it on the wire (e.g. a whole WebSocket message), by the consumer's key: built by
    #: the first of its viewers and shared by the others.
    wire: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def picture(cls, frame: Frame, data: bytes) -> EncodedPacket:
        """A picture that decodes alone (a JPEG, raw pixels) of `frame`: a keyframe with its numbering, time and size."""
        return cls(
            data=data,
            keyframe=True,
            seq=frame.seq,
            pts=frame.pts,
            capture_ns=frame.capture_ns,
            width=frame.width,
            height=frame.height,
        )

    def framed(self) -> bytes:
        """Return header + payload, built once per packet and shared by every subscriber."""
        if self._framed is None:
            flags = (
                (FLAG_KEYFRAME if self.keyframe else 0)
                | (FLAG_CONFIG if self.config else 0)
                | (FLAG_INIT if self.init else 0)
            )
            header = HEADER.pack(
                HEADER_VERSION, flags, HEADER.size, self.seq & 0xFFFFFFFF, self.capture_ns, self.send_ns
            )
            self._framed = header + self.data
        return self._framed


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """A parsed frame header."""

    version: int
    flags: int
    header_len: int
    seq: int
    capture_ns: int
    send_ns: int

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & FLAG_KEYFRAME)

    @property
    def init(self) -> bool:
        return bool(self.flags & FLAG_INIT)


def parse_header(message: bytes) -> tuple[FrameHeader, bytes]:
    """Split a binary WS message into its header and payload."""
    if len(message) < HEADER.size:
        raise ValueError(f"message of {len(message)} bytes is shorter than the {HEADER.size}-byte header")
    header = FrameHeader(*HEADER.unpack_from(message))
    if header.version != HEADER_VERSION:
        raise ValueError(f"unknown header version {header.version}")
    return header, message[header.header_len :]


def _expansion_luts() -> tuple[np.ndarray, np.ndarray]:
    values = np.arange(256, dtype=np.float32)
    luma = np.clip(np.rint((values - 16) * 255 / 219), 0, 255).astype(np.uint8)
    chroma = np.clip(np.rint(128 + (values - 128) * 255 / 224), 0, 255).astype(np.uint8)
    return luma, chroma


_LUMA_TO_FULL, _CHROMA_TO_FULL = _expansion_luts()


def full_range_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return limited-range (16–235, chroma 16–240) I420 planes expanded to full range (0–255), as JPEG wants them."""
    return _LUMA_TO_FULL[y], _CHROMA_TO_FULL[u], _CHROMA_TO_FULL[v]


def i420_planes(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return views of the Y, U and V planes of an I420 image of shape (height * 3/2, width)."""
    quarter = (height // 2) * (width // 2)
    chroma = image[height:].reshape(-1)
    return (
        image[:height],
        chroma[:quarter].reshape(height // 2, width // 2),
        chroma[quarter:].reshape(height // 2, width // 2),
    )
