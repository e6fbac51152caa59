"""Fragmented MP4 for Media Source Extensions: an init segment (FFmpeg's, PyAV), then one fragment per frame, written
here the moment its frame arrives."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

import av
import av.error

from vergence.hub import Channel
from vergence.media import h264
from vergence.media.frame import TIME_BASE, EncodedPacket
from vergence.media.writes import Writes

log = logging.getLogger(__name__)

# empty_moov: the init segment carries no samples; default_base_moof: what MSE expects for data offsets.
MOVFLAGS = "empty_moov+default_base_moof+frag_every_frame"
TIMESCALE_FALLBACK = 90_000
# trun flags: data offset, then per sample its duration, size and flags.
TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400
KEY_SAMPLE = 0x02000000  # depends on no other sample
DELTA_SAMPLE = 0x01010000  # depends on others; not a sync sample


class Fmp4Muxer:
    """Producer of a stream's `fmp4` channel: listens to its H.264 channel and repackages every packet, no re-encoding.

    FFmpeg makes the init segment (it builds the `avcC` from the first keyframe's SPS and PPS). The fragments are
    written here: FFmpeg's mp4 muxer closes a fragment only when the next packet arrives (its duration is known only
    then), which held every frame back one frame interval (33 ms at 30 fps). Each fragment here leaves with its own
    packet. Their times are a frame count on the stream's nominal rate, not the capture clock: a skipped frame then
    leaves no gap in the timeline, and a gap of more than two frame durations would make MSE drop every frame until
    the next keyframe. The capture time of each fragment travels in its frame header.
    """

    def __init__(
        self,
        h264_channel: Channel,
        publish: Callable[[EncodedPacket], None],
        size: Callable[[], tuple[int, int]],
        fps: Callable[[], float] = lambda: 30.0,
    ) -> None:
        self._h264 = h264_channel
        self._size = size
        self._fps = fps
        self._publish = publish
        self._open_track: _Track | None = None
        self._parameter_sets = b""
        self._listening = False

    def start(self) -> None:
        if not self._listening:
            self._listening = True
            self._h264.add_listener(self._on_packet)
            self._h264.request_keyframe(force=True)  # start the container without waiting out a GOP

    def stop(self) -> None:
        if self._listening:
            self._listening = False
            self._h264.remove_listener(self._on_packet)
        self._open_track = None

    def request_keyframe(self) -> None:
        self._h264.request_keyframe()

    def _on_packet(self, packet: EncodedPacket) -> None:
        track = self._open_track
        new_parameters = packet.config and h264.parameter_sets(packet.data) != self._parameter_sets
        if track is None or new_parameters:  # the first keyframe, or a new SPS (size change): a new init segment
            if not (packet.keyframe and packet.config):
                self._open_track = None
                return  # a track starts at a keyframe that carries SPS/PPS
            try:
                track = self._open(packet)
            except (av.error.FFmpegError, ValueError) as err:
                log.warning("fMP4 init of %s failed (%s); trying at the next keyframe", self._h264.stream_id, err)
                self._open_track = None
                self._h264.request_keyframe()
                return
        data = fragment(
            track.sequence, track.decode_time, track.duration, avcc_sample(packet.data), packet.keyframe, track.track_id
        )
        self._publish(
            EncodedPacket(
                data=data,
                keyframe=packet.keyframe,
                seq=packet.seq,
                pts=track.decode_time,
                capture_ns=packet.capture_ns,
            )
        )
        track.sequence += 1
        track.decode_time += track.duration

    def _open(self, packet: EncodedPacket) -> _Track:
        """Publish FFmpeg's init segment for the stream that starts with `packet`; return the track to write to."""
        self._parameter_sets = h264.parameter_sets(packet.data)
        written = Writes()
        container = av.open(written, "w", format="mp4", options={"movflags": MOVFLAGS})
        width, height = self._size()
        # No extradata given: PyAV extracts SPS/PPS from the first keyframe before FFmpeg writes the init segment.
        stream = container.add_mux_stream("h264", width=width, height=height, time_base=TIME_BASE)
        av_packet = av.Packet(packet.data)
        av_packet.stream = stream
        av_packet.time_base = TIME_BASE
        av_packet.pts = av_packet.dts = 0
        av_packet.is_keyframe = True
        container.mux(av_packet)
        init, _ = split_init_segment(b"".join(written.take()))
        try:
            container.close()
        except av.error.FFmpegError:
            pass
        track_id, timescale = init_track(init)
        duration = max(1, round(timescale / max(self._fps(), 1.0)))
        track = _Track(track_id, timescale, duration)
        self._open_track = track
        self._publish(
            EncodedPacket(data=init, keyframe=True, init=True, seq=packet.seq, pts=0, capture_ns=packet.capture_ns)
        )
        return track


class _Track:
    """Where the next fragment of the current init segment goes."""

    def __init__(self, track_id: int, timescale: int, duration: int) -> None:
        self.track_id = track_id
        self.timescale = timescale
        self.duration = duration  # one frame at the stream's nominal rate, in the track's timescale
        self.sequence = 1
        self.decode_time = 0


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def _moof(sequence: int, decode_time: int, duration: int, size: int, keyframe: bool, track_id: int) -> bytes:
    """The `moof` of a one-sample fragment whose `mdat` follows it at once (ISO/IEC 14496-12)."""
    sample = struct.pack(">iIII", MOOF_BYTES + 8, duration, size, KEY_SAMPLE if keyframe else DELTA_SAMPLE)
    traf = _box(
        b"traf",
        _full_box(b"tfhd", 0, 0x020000, struct.pack(">I", track_id))  # default-base-is-moof
        + _full_box(b"tfdt", 1, 0, struct.pack(">Q", decode_time))
        + _full_box(b"trun", 0, TRUN_FLAGS, struct.pack(">I", 1) + sample),
    )
    return _box(b"moof", _full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)) + traf)


# Every field of that moof has a fixed size: mfhd 16 + traf (8 + tfhd 16 + tfdt 20 + trun 32) + its own 8.
MOOF_BYTES = 100


def fragment(sequence: int, decode_time: int, duration: int, sample: bytes, keyframe: bool, track_id: int = 1) -> bytes:
    """One `moof` + `mdat` holding one sample: its decode time, duration, size and sync flag."""
    return _moof(sequence, decode_time, duration, len(sample), keyframe, track_id) + _box(b"mdat", sample)


def avcc_sample(annexb: bytes) -> bytes:
    """An access unit as MP4 stores it: each NAL unit after its 4-byte length instead of a start code."""
    return b"".join(struct.pack(">I", len(nal)) + nal for nal in h264.iter_nal_units(annexb) if nal)


def child_box(data: bytes, *path: str) -> bytes | None:
    """The body of the first box along `path` (`"moov", "trak", "tkhd"`), or None where one is missing."""
    for kind in path:
        found = next(((start, end) for name, start, end in iter_boxes(data) if name == kind), None)
        if found is None:
            return None
        data = data[found[0] + 8 : found[1]]
    return data


def init_track(init: bytes) -> tuple[int, int]:
    """The first track's id (`tkhd`) and timescale (`mdhd`) in an init segment (1 and 90 kHz where unreadable): the
    muxer writes one video track."""
    tkhd, mdhd = child_box(init, "moov", "trak", "tkhd"), child_box(init, "moov", "trak", "mdia", "mdhd")
    track_id = _version_field(tkhd, 12, 20) or 1
    timescale = _version_field(mdhd, 12, 20) or TIMESCALE_FALLBACK
    return track_id, timescale


def _version_field(body: bytes | None, at_v0: int, at_v1: int) -> int | None:
    """A 32-bit field of a full box that sits at `at_v0` in version 0 and at `at_v1` in version 1."""
    if not body:
        return None
    at = at_v0 if body[0] == 0 else at_v1
    return int.from_bytes(body[at : at + 4], "big") if len(body) >= at + 4 else None


def iter_boxes(data: bytes) -> list[tuple[str, int, int]]:
    """Return (type, start, end) of the top-level ISO BMFF boxes in `data`."""
    boxes = []
    at = 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        kind = data[at + 4 : at + 8].decode("latin-1")
        if size == 1 and at + 16 <= len(data):
            size = int.from_bytes(data[at + 8 : at + 16], "big")
        if size < 8:
            break
        boxes.append((kind, at, min(at + size, len(data))))
        at += size
    return boxes


def split_init_segment(data: bytes) -> tuple[bytes, bytes]:
    """Split muxer output into the init segment (ftyp, moov) and what follows (fragments)."""
    for kind, start, _ in iter_boxes(data):
        if kind in ("moof", "styp", "sidx"):
            return data[:start], data[start:]
    return data, b""
