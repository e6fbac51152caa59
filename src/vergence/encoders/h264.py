"""H.264 through PyAV: the V4L2 memory-to-memory hardware encoder where it opens, else libx264 tuned for latency."""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction
from typing import cast

import av
import av.error
from av.video.frame import PictureType

from vergence.config import H264Settings
from vergence.encoders.base import Encoder, PacketSink
from vergence.errors import EncoderError
from vergence.media import h264
from vergence.media.frame import TIME_BASE, EncodedPacket, Frame

log = logging.getLogger(__name__)


# The default bitrate, in bits per pixel of every frame: measured on the test camera's camera-like scene (grain noise,
# fine texture, motion; `vergence bench quality`), the least that keeps libx264 ultrafast above 40 dB mean PSNR with
# no frame below 38 at 720p30 and 1080p30 (docs/benchmarks.md). 2.5 Mbit/s, the old default for every size, gave 39.2 dB
# at 720p and 38.3 dB at 1080p there, a frame at 33.5 dB.
BITS_PER_PIXEL = 0.2
MIN_AUTO_BPS, MAX_AUTO_BPS = 300_000, 25_000_000


def auto_bitrate_bps(width: int, height: int, fps: float) -> int:
    """The bitrate a stream of this size and rate encodes at when `[h264] bitrate_bps` is unset."""
    wanted = round(BITS_PER_PIXEL * width * height * fps, -5)
    return int(min(MAX_AUTO_BPS, max(MIN_AUTO_BPS, wanted)))


def bitrate_for(settings: H264Settings, width: int, height: int, fps: float) -> int:
    """The bitrate these settings mean for a picture of this size and rate: the one set, else the automatic one."""
    return settings.bitrate_bps or auto_bitrate_bps(width, height, fps)


def _libx264_options(settings: H264Settings, fps: float, bitrate_bps: int) -> dict[str, str]:
    # zerolatency: no lookahead, no B-frames, one packet out per frame in. Slice threads split each frame across cores;
    # frame threads would add a frame of delay per thread. repeat-headers puts SPS/PPS in front of every IDR, so any
    # keyframe is a valid starting point for a late joiner. forced-idr makes a requested keyframe an IDR.
    params = [
        f"threads={settings.threads}",
        "sliced-threads=1",
        "repeat-headers=1",
        "annexb=1",
        "aud=0",
        f"keyint={settings.gop_frames}",
        f"min-keyint={min(settings.gop_frames, max(1, round(fps)))}",
        "scenecut=0",
        # Half a second of VBV: caps bursts for a Wi-Fi link, yet leaves room after a keyframe. A buffer of a few frames
        # measured PSNR dips to 31 dB (visible blocks) on the simple test pattern; half a second keeps every frame above
        # 43 dB there, and above 38.7 dB on the camera-like scene at the default bitrate (keyframes included).
        f"vbv-maxrate={bitrate_bps // 1000}",
        f"vbv-bufsize={max(1, bitrate_bps // 2000)}",
    ]
    return {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "profile": settings.profile,
        "forced-idr": "1",
        "x264-params": ":".join(params),
    }


class H264Encoder(Encoder):
    """Encode to Annex-B access units, one packet per frame; keyframes always carry SPS and PPS."""

    format = "h264"

    def __init__(
        self, stream_id: str, settings: H264Settings, sink: PacketSink, fps: Callable[[], float] = lambda: 30.0
    ) -> None:
        super().__init__(stream_id, sink)
        self.settings = settings
        self._fps = fps
        self.codec_name: str | None = None
        self._ctx: av.VideoCodecContext | None = None
        self._size: tuple[int, int, str] | None = None
        self._keyframe_wanted = True
        self._reopen = False
        self._parameter_sets = b""
        self._frames: dict[int, tuple[int, int]] = {}  # pts → (seq, capture_ns), for encoders that delay output

    def request_keyframe(self) -> None:
        self._keyframe_wanted = True

    def set_bitrate(self, bitrate_bps: int) -> None:
        """Encode at `bitrate_bps` from the next frame on (the codec reopens: the next packet is a keyframe)."""
        # Settings are shared by every stream's encoder: this one gets a copy of its own.
        self.settings = self.settings.model_copy(update={"bitrate_bps": bitrate_bps})
        self._reopen = True

    def _candidates(self) -> list[str]:
        if self.settings.encoder == "auto":
            return ["h264_v4l2m2m", "libx264"]
        return [self.settings.encoder]

    def _open(self, frame: Frame) -> av.VideoCodecContext:
        errors = []
        fps = self._fps()
        for name in self._candidates():
            try:
                ctx = cast(av.VideoCodecContext, av.CodecContext.create(name, "w"))
                ctx.width, ctx.height = frame.width, frame.height
                ctx.pix_fmt = "yuv420p"
                ctx.time_base = TIME_BASE
                ctx.framerate = Fraction(fps).limit_denominator(1001)
                bitrate = bitrate_for(self.settings, frame.width, frame.height, fps)
                ctx.bit_rate = bitrate
                ctx.gop_size = self.settings.gop_frames
                if name == "libx264":
                    ctx.options = _libx264_options(self.settings, fps, bitrate)
                else:
                    ctx.options = {"repeat_sequence_header": "1"}
                ctx.open()
            except (av.error.FFmpegError, ValueError, OSError) as err:
                errors.append(f"{name}: {err}")
                continue
            if name != self.codec_name:
                log.info("stream %s encodes H.264 with %s (%dx%d)", self.stream_id, name, frame.width, frame.height)
            self.codec_name = name
            return ctx
        raise EncoderError("no H.264 encoder opens: " + "; ".join(errors))

    def encode(self, frame: Frame) -> list[EncodedPacket]:
        size = (frame.width, frame.height, frame.pix_fmt)
        if self._ctx is None or size != self._size or self._reopen:
            self._reopen = False
            self.reset()
            self._ctx = self._open(frame)
            self._size = size
            self._keyframe_wanted = True
        if frame.pix_fmt == "yuv420p" and frame.image.flags.c_contiguous:
            # No copy (0.3 ms per 720p frame saved): libx264 copies the picture into its own buffers during encode(),
            # and a Frame's image is never written after the source hands it on.
            video = av.VideoFrame.from_numpy_buffer(frame.image, format="yuv420p")
        else:
            video = av.VideoFrame.from_ndarray(frame.image, format=frame.pix_fmt).reformat(format="yuv420p")
        video.pts = frame.pts
        video.time_base = TIME_BASE
        if self._keyframe_wanted:
            video.pict_type = PictureType.I
            self._keyframe_wanted = False
        self._frames[frame.pts] = (frame.seq, frame.capture_ns)
        try:
            packets = self._ctx.encode(video)
        except av.error.FFmpegError as err:
            raise EncoderError(f"H.264 encode failed: {err}") from err
        return [self._packet(packet) for packet in packets]

    def _packet(self, packet: av.Packet) -> EncodedPacket:
        data = bytes(packet)
        types = h264.nal_types(data)
        keyframe = h264.NAL_IDR in types
        config = h264.NAL_SPS in types
        if config:
            self._parameter_sets = h264.parameter_sets(data)
        elif keyframe and self._parameter_sets:  # some hardware encoders send SPS/PPS only once
            data = self._parameter_sets + data
            config = True
        seq, capture_ns = self._frames.pop(packet.pts, (0, 0)) if packet.pts is not None else (0, 0)
        if len(self._frames) > 64:  # entries of frames the encoder dropped
            self._frames.clear()
        return EncodedPacket(
            data=data, keyframe=keyframe, config=config, seq=seq, pts=packet.pts or 0, capture_ns=capture_ns
        )

    def reset(self) -> None:
        self._ctx = None
        self._size = None
        self._frames.clear()
