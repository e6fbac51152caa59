"""The media directory as a library: its recordings, clips and photos with what each holds (kind, stream, start,
duration, frames, size), read from the files themselves. Blocking I/O: call it from a thread, never on the loop."""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import struct
import threading
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

import av

from vergence.media.names import MediaNameError, check_media_file_name, is_media_file_name

log = logging.getLogger(__name__)

Kind = Literal["video", "clip", "photo"]

#: How segment.py and stills.py name files: `<base>-<YYYYmmdd-HHMMSS-mmm>[-clip][-N].<ext>`, base `[<name>-]<stream>`.
_STAMPED = re.compile(r"^(?P<base>.+?)-(?P<stamp>\d{8}-\d{6}-\d{3})(?P<clip>-clip)?(?:-\d+)?\.(?:mp4|mcap|jpg)$")
MEDIA_TYPES = {".mp4": "video/mp4", ".mcap": "application/x-mcap", ".jpg": "image/jpeg"}

# JPEG start-of-frame markers (baseline, progressive, lossless …); C4, C8 and CC are other segments.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_BOX_HEADER = struct.Struct(">I4s")


@dataclass(frozen=True, slots=True)
class NameInfo:
    """What a file name says: its kind, stream (best effort) and start (local time), when it carries a stamp."""

    kind: Kind
    stream: str | None
    started: datetime | None


@dataclass(frozen=True, slots=True)
class VideoProbe:
    """What demuxing an MP4 found (no decoding): frames, span, picture size, and bytes missing from its last box."""

    frames: int
    duration_s: float | None
    width: int | None
    height: int | None
    truncated_bytes: int
    error: str | None


def media_type(name: str) -> str:
    """The Content-Type of a media file by its extension."""
    return MEDIA_TYPES[os.path.splitext(name)[1]]


def media_path(directory: Path, name: str) -> Path:
    """The path of `name` inside `directory`; MediaNameError unless it is a media file name (vergence.media.names)
    that stays inside."""
    check_media_file_name(name)
    root = directory.resolve()
    path = (root / name).resolve()
    if path.parent != root:  # a symbolic link out of the directory
        raise MediaNameError(f"{name!r} is not a file of the media directory")
    return path


def parse_name(name: str, streams: Collection[str] = ()) -> NameInfo:
    """Kind, stream and start time from a file name; `streams` (the configured ids) settle names with dashes."""
    is_photo = name.endswith(".jpg")
    match = _STAMPED.fullmatch(name)
    if match is None:
        stem = os.path.splitext(name)[0]
        kind: Kind = "photo" if is_photo else ("clip" if stem.endswith("-clip") else "video")
        return NameInfo(kind, None, None)
    kind = "photo" if is_photo else ("clip" if match["clip"] else "video")
    try:
        started: datetime | None = datetime.strptime(match["stamp"], "%Y%m%d-%H%M%S-%f")
    except ValueError:  # digits that are no date (month 13)
        started = None
    return NameInfo(kind, _stream_of(match["base"], streams), started)


def _stream_of(base: str, streams: Collection[str]) -> str:
    """`cam0` → cam0; `flight-1-cam0` → cam0: the longest known id the base ends with, else its last dash part."""
    known = [stream for stream in streams if base == stream or base.endswith(f"-{stream}")]
    if known:
        return max(known, key=len)
    return base.rsplit("-", 1)[-1]


def probe_video(path: Path) -> VideoProbe:
    """Demux (without decoding) an MP4: frames, duration (last pts + one frame − first pts), picture size.

    Fragmented MP4s rarely carry a container duration, so the packets are counted. A file cut short (a process killed
    mid-write) yields what demuxes, and `truncated_bytes` says how much of its last box is missing.
    """
    truncated = _missing_box_bytes(path)
    frames = 0
    first_pts: int | None = None
    last_pts: int | None = None
    last_duration = 0
    width = height = None
    duration_s: float | None = None
    error: str | None = None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            video = container.streams.video[0]
            width, height = video.codec_context.width or None, video.codec_context.height or None
            time_base = video.time_base
            try:
                for packet in container.demux(video):
                    if packet.pts is None:  # the empty packet that ends demuxing
                        continue
                    frames += 1
                    first_pts = packet.pts if first_pts is None else min(first_pts, packet.pts)
                    if last_pts is None or packet.pts >= last_pts:
                        last_pts, last_duration = packet.pts, packet.duration or 0
            except av.error.FFmpegError as err:  # the readable part still counts
                error = f"unreadable after {frames} frames: {err}"
            if frames and first_pts is not None and last_pts is not None and time_base is not None:
                # One frame: the mean frame interval (the last packet's own duration is often a guess of the muxer).
                frame_ticks = (last_pts - first_pts) / (frames - 1) if frames > 1 else last_duration
                duration_s = round(float((last_pts - first_pts + frame_ticks) * time_base), 3)
            elif error is None:
                error = "no frames"
    except (av.error.FFmpegError, OSError, ValueError) as err:
        error = f"not a readable MP4: {err}"
    return VideoProbe(frames, duration_s, width, height, truncated, error)


def probe_mcap(path: Path) -> VideoProbe:
    """Read an MCAP segment linearly (no index: a file cut short reads to its last complete chunk): the frames on its
    video channel and their span; a file that ends inside a record says so in `error`."""
    try:
        from mcap.exceptions import McapError
        from mcap.reader import NonSeekingReader
    except ImportError:
        return VideoProbe(0, None, None, None, 0, "cannot read MCAP: pip install mcap")
    frames = 0
    first_ns: int | None = None
    last_ns: int | None = None
    truncated = False
    error: str | None = None
    try:
        with path.open("rb") as file:
            reader = NonSeekingReader(file)
            try:
                for _schema, channel, message in reader.iter_messages(log_time_order=False):
                    if not channel.topic.endswith("/video"):
                        continue
                    frames += 1
                    first_ns = message.log_time if first_ns is None else min(first_ns, message.log_time)
                    last_ns = message.log_time if last_ns is None else max(last_ns, message.log_time)
            except (McapError, EOFError, ValueError):  # cut short: what came before its last chunk counts
                truncated = True
    except OSError as err:
        error = f"cannot read: {err}"
    duration_s = None
    if frames and first_ns is not None and last_ns is not None:
        frame_ns = (last_ns - first_ns) / (frames - 1) if frames > 1 else 0
        duration_s = round((last_ns - first_ns + frame_ns) / 1e9, 3)
    if error is None and truncated:
        error = f"truncated: {frames} frames readable, to its last whole chunk"
    elif error is None and not frames:
        error = "no frames"
    return VideoProbe(frames, duration_s, None, None, 0, error)


def _missing_box_bytes(path: Path) -> int:
    """Bytes by which the last top-level MP4 box reaches past the end of the file (0 for a whole file)."""
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            offset = 0
            while offset + _BOX_HEADER.size <= size:
                file.seek(offset)
                box_size, _ = _BOX_HEADER.unpack(file.read(_BOX_HEADER.size))
                if box_size == 1:  # a 64-bit size follows the type
                    large = file.read(8)
                    if len(large) < 8:
                        return 8 - len(large)
                    box_size = struct.unpack(">Q", large)[0]
                elif box_size == 0:  # the box runs to the end of the file
                    return 0
                if box_size < _BOX_HEADER.size:
                    return 0  # not MP4 boxes: demuxing reports it
                offset += box_size
            if offset > size:
                return offset - size
            return _BOX_HEADER.size - (size - offset) if offset < size else 0  # cut inside a box header
    except OSError:
        return 0


def jpeg_size(file: BinaryIO) -> tuple[int, int] | None:
    """Width and height from a JPEG's start-of-frame segment (after any EXIF), or None when there is none."""
    if file.read(2) != b"\xff\xd8":
        return None
    while True:
        marker = file.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        if marker[1] == 0xFF:  # fill byte
            file.seek(-1, os.SEEK_CUR)
            continue
        length_bytes = file.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if marker[1] in _SOF_MARKERS:
            header = file.read(5)
            if len(header) < 5:
                return None
            height, width = struct.unpack(">xHH", header)
            return width, height
        if length < 2:
            return None
        file.seek(length - 2, os.SEEK_CUR)


class MediaLibrary:
    """List a media directory; what a video holds is cached by (path, size, mtime), so a listing reads new files only."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, int, VideoProbe]] = {}
        self._lock = threading.Lock()

    def describe(
        self, directory: Path, open_paths: Collection[Path] = (), streams: Collection[str] = ()
    ) -> dict[str, Any]:
        """`{"dir", "free_bytes", "files"}`: every file of `files`, and the free space of the directory's disk."""
        try:
            free_bytes: int | None = shutil.disk_usage(directory).free
        except OSError:  # not created yet
            free_bytes = None
        return {"dir": str(directory), "free_bytes": free_bytes, "files": self.files(directory, open_paths, streams)}

    def files(
        self, directory: Path, open_paths: Collection[Path] = (), streams: Collection[str] = ()
    ) -> list[dict[str, Any]]:
        """The recordings, clips and photos of `directory` (not its subdirectories), newest first."""
        writing = {_resolved(path) for path in open_paths}
        try:
            entries = list(os.scandir(directory))
        except OSError:  # no directory yet: nothing recorded
            return []
        files: list[tuple[datetime, dict[str, Any]]] = []
        for entry in entries:
            if not is_media_file_name(entry.name):  # hidden, temporary, other kinds
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:  # deleted meanwhile
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            path = Path(entry.path)
            files.append(self._describe_file(path, info, _resolved(path) in writing, streams))
        self._forget(directory, {entry.path for entry in entries})
        files.sort(key=lambda pair: (pair[0], pair[1]["name"]), reverse=True)
        return [described for _, described in files]

    def _describe_file(
        self, path: Path, info: os.stat_result, recording: bool, streams: Collection[str]
    ) -> tuple[datetime, dict[str, Any]]:
        name = parse_name(path.name, streams)
        started = (name.started or datetime.fromtimestamp(info.st_mtime)).astimezone()
        described: dict[str, Any] = {
            "name": path.name,
            "kind": name.kind,
            "stream": name.stream,
            "size_bytes": info.st_size,
            "started": started.isoformat(timespec="milliseconds"),
            "duration_s": None,
            "frames": None,
            "width": None,
            "height": None,
            "recording": recording,
            "error": None,
        }
        if name.kind == "photo":
            described.update(self._photo(path))
            return started, described
        probe = self._probe(path, info)
        described.update(frames=probe.frames, duration_s=probe.duration_s, width=probe.width, height=probe.height)
        if not recording:  # a file being written always ends in a box still growing
            if probe.truncated_bytes:
                described["error"] = f"truncated: the last {probe.truncated_bytes} bytes are missing"
                if probe.frames:
                    described["error"] += f" ({probe.frames} frames readable)"
            elif probe.error:
                described["error"] = probe.error
        return started, described

    def _probe(self, path: Path, info: os.stat_result) -> VideoProbe:
        key = str(path)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[:2] == (info.st_size, info.st_mtime_ns):
            return cached[2]
        probe = probe_mcap(path) if path.suffix == ".mcap" else probe_video(path)
        with self._lock:
            self._cache[key] = (info.st_size, info.st_mtime_ns, probe)
        return probe

    def _forget(self, directory: Path, present: set[str]) -> None:
        """Drop cached probes of files of `directory` that are gone."""
        prefix = os.path.join(str(directory), "")
        with self._lock:
            for key in [key for key in self._cache if key.startswith(prefix) and key not in present]:
                del self._cache[key]

    @staticmethod
    def _photo(path: Path) -> dict[str, Any]:
        try:
            with path.open("rb") as file:
                size = jpeg_size(file)
        except OSError as err:
            return {"error": f"cannot read: {err}"}
        if size is None:
            return {"error": "not a readable JPEG"}
        return {"width": size[0], "height": size[1]}


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path
