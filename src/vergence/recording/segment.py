"""One MP4 segment: H.264 access units muxed as they were encoded (no re-encoding), fragmented so that a crash or a pulled
power cable loses at most the last fragment (about a second)."""

from __future__ import annotations

import errno
import logging
import os
from datetime import datetime
from pathlib import Path

import av
import av.error

from vergence.media import h264
from vergence.media.frame import TIME_BASE, EncodedPacket
from vergence.media.names import media_file_name

log = logging.getLogger(__name__)

# An empty moov up front and a moof+mdat per keyframe or per FRAGMENT_US: every complete fragment on disk plays.
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
FRAGMENT_US = 1_000_000
# Each packet goes to the kernel as it is muxed: a killed process leaves the file as far as its last fragment.
MUX_OPTIONS = {"movflags": MOVFLAGS, "frag_duration": str(FRAGMENT_US), "flush_packets": "1"}
NAME_ATTEMPTS = 100


class SegmentError(Exception):
    """Writing a segment failed; `code` is `disk_full` or `io_error`."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def segment_path(directory: Path, base: str, started: datetime, suffix: str = "", extension: str = ".mp4") -> Path:
    """Create and return a new, empty `<base>-<YYYYmmdd-HHMMSS-mmm><suffix><extension>`; an existing file is never
    reused.

    MediaNameError when that is no media file name (vergence.media.names): the recordings API could not list it."""
    stamp = f"{started.strftime('%Y%m%d-%H%M%S')}-{started.microsecond // 1000:03d}"
    directory.mkdir(parents=True, exist_ok=True)
    for attempt in range(NAME_ATTEMPTS):
        extra = f"-{attempt + 1}" if attempt else ""
        path = directory / media_file_name(f"{base}-{stamp}{suffix}{extra}", extension)
        try:
            path.open("xb").close()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{directory / base}-{stamp}{suffix}-*{extension}: {NAME_ATTEMPTS} files exist")


class SegmentWriter:
    """Mux one segment. It opens at a keyframe with SPS/PPS; `write` raises SegmentError when the disk fails."""

    def __init__(self, path: Path, width: int, height: int, first: EncodedPacket, frame_pts: int) -> None:
        if not (first.keyframe and first.config):
            raise ValueError("a segment starts at a keyframe that carries SPS/PPS")
        self.path = path
        self.parameter_sets = h264.parameter_sets(first.data)
        self.frames = 0
        self.bytes = 0
        self.first_capture_ns = first.capture_ns
        self.last_capture_ns = first.capture_ns
        self._first_pts = first.pts
        self._last_pts = -1
        self._frame_pts = max(1, frame_pts)  # one frame period in TIME_BASE units, for timestamps that go back
        self._offset = 0
        self._container: av.container.OutputContainer | None = None
        try:
            self._container = av.open(str(path), "w", format="mp4", options=MUX_OPTIONS)
            # No extradata: PyAV takes SPS/PPS from the first keyframe before FFmpeg writes the (empty) moov.
            self._video = self._container.add_mux_stream("h264", width=width, height=height, time_base=TIME_BASE)
        except (av.error.FFmpegError, OSError) as err:
            raise segment_error(path, err) from err

    @property
    def duration_s(self) -> float:
        return max(0, self._last_pts) * float(TIME_BASE)

    def write(self, packet: EncodedPacket) -> None:
        """Mux one access unit; timestamps that do not increase (a restarted source) continue one frame on."""
        pts = packet.pts - self._first_pts + self._offset
        if pts <= self._last_pts:
            self._offset += self._last_pts + self._frame_pts - pts
            pts = self._last_pts + self._frame_pts
        av_packet = av.Packet(packet.data)
        av_packet.stream = self._video
        av_packet.time_base = TIME_BASE
        av_packet.pts = av_packet.dts = pts
        av_packet.is_keyframe = packet.keyframe
        assert self._container is not None, "write after close"
        try:
            self._container.mux(av_packet)
        except (av.error.FFmpegError, OSError) as err:
            raise segment_error(self.path, err) from err
        self._last_pts = pts
        self.frames += 1
        self.bytes += len(packet.data)
        self.last_capture_ns = packet.capture_ns

    def close(self) -> None:
        """Write the last fragment and close; after a failed write this only releases what it can."""
        container, self._container = self._container, None
        if container is None:
            return
        try:
            container.close()
        except (av.error.FFmpegError, OSError) as err:
            raise segment_error(self.path, err) from err

    def file_size(self) -> int:
        return file_size(self.path)


def file_size(path: Path) -> int:
    """A segment's size on disk (0 when it cannot be read)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def segment_error(path: Path, err: Exception) -> SegmentError:
    number = getattr(err, "errno", None)
    if number in (errno.ENOSPC, errno.EDQUOT):
        return SegmentError(f"disk full writing {path}", "disk_full")
    return SegmentError(f"cannot write {path}: {err}", "io_error")
