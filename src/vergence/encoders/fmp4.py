"""Fragmented MP4 for Media Source Extensions, muxed by FFmpeg (PyAV): an init segment, then one fragment per frame."""

from __future__ import annotations

import logging
from collections.abc import Callable

import av
import av.error

from vergence.hub import Channel
from vergence.media import h264
from vergence.media.frame import TIME_BASE, EncodedPacket
from vergence.media.writes import Writes

log = logging.getLogger(__name__)

# empty_moov: the init segment carries no samples; frag_every_frame: one moof+mdat per frame; default_base_moof: what MSE
# expects for data offsets.
MOVFLAGS = "empty_moov+default_base_moof+frag_every_frame"


class Fmp4Muxer:
    """Producer of a stream's `fmp4` channel: listens to its H.264 channel and remuxes every packet without re-encoding.

    FFmpeg closes fragment N when packet N+1 arrives (only then is N's duration known), so each fragment leaves one frame
    after its packet. Muxing a packet into memory takes well under a millisecond, so it runs on the event loop.
    """

    def __init__(
        self, h264_channel: Channel, publish: Callable[[EncodedPacket], None], size: Callable[[], tuple[int, int]]
    ) -> None:
        self._h264 = h264_channel
        self._size = size
        self._publish = publish
        self._container: av.container.OutputContainer | None = None
        self._stream: av.stream.Stream | None = None
        self._file: Writes | None = None
        self._pending: EncodedPacket | None = None  # the packet whose fragment the muxer still holds
        self._first_pts = 0
        self._parameter_sets = b""
        self._init_sent = False
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
        self._close()

    def request_keyframe(self) -> None:
        self._h264.request_keyframe()

    def _on_packet(self, packet: EncodedPacket) -> None:
        if self._container is None:
            if not (packet.keyframe and packet.config):
                return  # a container starts at a keyframe that carries SPS/PPS
            self._open(packet)
        elif packet.config and h264.parameter_sets(packet.data) != self._parameter_sets:
            self._close()  # new SPS (size change): a new init segment
            self._open(packet)
        try:
            self._mux(packet)
        except (av.error.FFmpegError, ValueError) as err:
            log.warning("fMP4 mux of %s failed (%s); restarting at the next keyframe", self._h264.stream_id, err)
            self._close()
            self._h264.request_keyframe()

    def _open(self, packet: EncodedPacket) -> None:
        self._file = Writes()
        self._parameter_sets = h264.parameter_sets(packet.data)
        container = av.open(self._file, "w", format="mp4", options={"movflags": MOVFLAGS})
        width, height = self._size()
        # No extradata given: PyAV extracts SPS/PPS from the first keyframe before FFmpeg writes the init segment.
        self._stream = container.add_mux_stream("h264", width=width, height=height, time_base=TIME_BASE)
        self._container = container
        self._first_pts = packet.pts
        self._pending = None
        self._init_sent = False

    def _mux(self, packet: EncodedPacket) -> None:
        assert self._container is not None and self._stream is not None and self._file is not None
        av_packet = av.Packet(packet.data)
        av_packet.stream = self._stream
        av_packet.time_base = TIME_BASE
        av_packet.pts = av_packet.dts = packet.pts - self._first_pts
        av_packet.is_keyframe = packet.keyframe
        self._container.mux(av_packet)
        written = b"".join(self._file.take())
        if not self._init_sent and written:
            init, written = split_init_segment(written)
            self._init_sent = True
            self._publish(
                EncodedPacket(data=init, keyframe=True, init=True, seq=packet.seq, pts=0, capture_ns=packet.capture_ns)
            )
        previous, self._pending = self._pending, packet
        if written and previous is not None:
            self._publish(
                EncodedPacket(
                    data=written,
                    keyframe=previous.keyframe,
                    seq=previous.seq,
                    pts=previous.pts - self._first_pts,
                    capture_ns=previous.capture_ns,
                )
            )

    def _close(self) -> None:
        container, self._container = self._container, None
        self._stream = None
        self._pending = None
        if container is not None:
            try:
                container.close()
            except av.error.FFmpegError:
                pass


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
