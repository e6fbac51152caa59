"""A recording: one stream's H.264, as encoded, written to MP4 segments on a thread of its own.

A recording reads its own hub subscription (a clip reads the pre-event buffer, then follows it), so starting, stopping or
losing any network output never touches it. Segments roll at the first keyframe past the size or duration limit; each
is named after its camera and the capture time of its first frame, and no file is ever overwritten. A full disk or an
I/O error ends this recording only, in state `error`, with what was written before intact.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from vergence.config import RecordingSettings
from vergence.hub import Item
from vergence.media import h264
from vergence.media.frame import TIME_BASE, EncodedPacket
from vergence.media.names import MediaNameError
from vergence.outputs.base import ThreadedConsumer
from vergence.recording.mcap_segment import McapSegmentWriter
from vergence.recording.prebuffer import PreEventBuffer
from vergence.recording.segment import SegmentError, SegmentWriter, segment_path

log = logging.getLogger(__name__)

State = Literal["waiting", "recording", "stopped", "error"]
Kind = Literal["recording", "clip"]
# Packets a recording may fall behind the encoder (a slow SD card) before the hub cuts it to the next keyframe.
BACKLOG_PACKETS = 900
FREE_SPACE_CHECK_S = 1.0


class Recording:
    """One recording of one stream, from `start()` until `stop()`, a clip's end, or an error.

    `on_event` is called on the event loop with each change: `recording` (first segment open), `segment` (one closed),
    `stopped`, `error`.
    """

    def __init__(
        self,
        stream: Any,
        directory: Path,
        base: str,
        settings: RecordingSettings,
        loop: asyncio.AbstractEventLoop,
        on_event: Callable[[Recording, dict[str, Any]], None],
        kind: Kind = "recording",
    ) -> None:
        self.stream = stream
        self.directory = directory
        self.base = base
        self.kind = kind
        self.settings = settings
        self._loop = loop
        self._on_event = on_event
        self.state: State = "waiting"
        self.error: str | None = None
        self.error_code: str | None = None
        self.started_ns = time.time_ns()
        self.stop_at_ns: int | None = None  # a clip ends with the first packet captured after this
        self.segments: list[dict[str, Any]] = []  # closed ones
        self.frames = 0
        self.bytes = 0
        self.skipped = 0  # packets before the first keyframe
        self._writer: SegmentWriter | McapSegmentWriter | None = None
        self._last_seq = -1
        self._lock = threading.Lock()  # the writing thread and stop() never touch the file at once
        self._done = False
        self._next_space_check = 0.0
        self._consumer: ThreadedConsumer | None = None
        self._queue: queue.SimpleQueue[EncodedPacket | None] | None = None
        self._prebuffer: PreEventBuffer | None = None
        self._thread: threading.Thread | None = None
        self.drops = 0  # packets a clip's writer fell too far behind for (it resumes at a keyframe)
        self._resync = False

    # ---- life (event loop)

    @property
    def active(self) -> bool:
        return self.state in ("waiting", "recording")

    def start(self) -> None:
        """Record from the stream's hub subscription (which starts at the cached keyframe)."""
        self._consumer = ThreadedConsumer(
            self.stream.h264,
            f"rec-{self.stream.id}",
            self._on_item,
            self._loop,
            max_packets=BACKLOG_PACKETS,
            kind="rec",
        )
        self._consumer.start()

    def start_from(self, prebuffer: PreEventBuffer) -> None:
        """Record what the pre-event buffer holds, then every packet it receives (no gap, no repeat)."""
        self._prebuffer = prebuffer
        self._queue = queue.SimpleQueue()
        backlog = prebuffer.snapshot()
        prebuffer.follow(self._follow)
        self._thread = threading.Thread(
            target=self._drain, args=(backlog, self._queue), name=f"clip-{self.stream.id}", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Close the open segment (it stays playable); a no-op once ended."""
        self._detach()
        await asyncio.to_thread(self._finish, "stopped", None, None)

    def _detach(self) -> None:
        if self._consumer is not None:
            self._consumer.stop()
        if self._prebuffer is not None and self._queue is not None:
            self._prebuffer.unfollow(self._follow)
            self._queue.put(None)

    def _follow(self, packet: EncodedPacket) -> None:
        """On the loop: queue a packet for the clip's thread; one that falls too far behind skips to a keyframe."""
        assert self._queue is not None
        if self._queue.qsize() >= BACKLOG_PACKETS or (self._resync and not packet.keyframe):
            self._resync = True
            self.drops += 1
            return
        self._resync = False
        self._queue.put(packet)

    def _ended(self, event: dict[str, Any]) -> None:
        """On the loop, after the writing thread ended the recording itself (clip done, disk error)."""
        self._detach()
        self._on_event(self, event)

    # ---- writing (its own thread)

    def _on_item(self, item: Item) -> None:
        if isinstance(item, EncodedPacket):
            self._write(item)

    def _drain(self, backlog: Iterable[EncodedPacket], packets: queue.SimpleQueue[EncodedPacket | None]) -> None:
        for packet in backlog:
            if not self._write(packet):
                return
        while (queued := packets.get()) is not None:
            if not self._write(queued):
                return

    def _write(self, packet: EncodedPacket) -> bool:
        """Write one packet; return False once the recording has ended."""
        with self._lock:
            if self._done:
                return False
            if packet.seq <= self._last_seq:
                return True  # the hub's replay of what a clip's backlog already held
            if self.stop_at_ns is not None and packet.capture_ns > self.stop_at_ns and self._writer is not None:
                self._finish_locked("stopped", None, None)
                return False
            try:
                self._write_locked(packet)
            except SegmentError as err:
                self._finish_locked("error", str(err), err.code)
                return False
            return True

    def _write_locked(self, packet: EncodedPacket) -> None:
        writer = self._writer
        if writer is None:
            if not (packet.keyframe and packet.config):
                self.skipped += 1
                return
            self._open(packet)
        elif packet.keyframe and packet.config and self._should_roll(writer, packet):
            self._close_segment()
            self._open(packet)
        elif time.monotonic() >= self._next_space_check:
            self._check_space()
        assert self._writer is not None
        self._writer.write(packet)
        self._last_seq = packet.seq
        self.frames += 1
        self.bytes += len(packet.data)

    def log_event(self, event: dict[str, Any]) -> None:
        """On the loop: an event for an MCAP segment's side channels (an MP4 has none)."""
        writer = self._writer
        if isinstance(writer, McapSegmentWriter):
            writer.log_event(event)

    def _should_roll(self, writer: SegmentWriter | McapSegmentWriter, packet: EncodedPacket) -> bool:
        if writer.bytes >= self.settings.segment_mb * 1e6:
            return True
        if self.settings.segment_s and writer.duration_s >= self.settings.segment_s:
            return True
        return h264.parameter_sets(packet.data) != writer.parameter_sets  # a new picture size: a new file

    def _open(self, packet: EncodedPacket) -> None:
        self._check_space()
        suffix = "-clip" if self.kind == "clip" else ""
        started = datetime.fromtimestamp(packet.capture_ns / 1e9) if packet.capture_ns else datetime.now()
        try:
            path = segment_path(self.directory, self.base, started, suffix, f".{self.settings.format}")
        except (OSError, MediaNameError) as err:
            raise SegmentError(f"cannot create a file in {self.directory}: {err}", "io_error") from err
        info = self.stream.info
        frame_pts = round(1 / (info.fps or 30) / float(TIME_BASE))
        if self.settings.format == "mcap":
            self._writer = McapSegmentWriter(path, self.stream.id, packet, frame_pts)
        else:
            self._writer = SegmentWriter(path, info.width, info.height, packet, frame_pts)
        first = self.state == "waiting"
        self.state = "recording"
        log.info("%s %s: writing %s", self.stream.id, self.kind, path.name)
        if first:
            self._emit({"state": "recording", "path": str(path)})

    def _check_space(self) -> None:
        self._next_space_check = time.monotonic() + FREE_SPACE_CHECK_S
        minimum = self.settings.min_free_mb * 1e6
        if minimum <= 0:
            return
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError as err:
            raise SegmentError(f"cannot read the free space of {self.directory}: {err}", "io_error") from err
        if free < minimum:
            raise SegmentError(
                f"only {free / 1e6:.0f} MB free in {self.directory} (minimum {self.settings.min_free_mb:g} MB)",
                "low_disk_space",
            )

    def _close_segment(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        summary = {
            "path": str(writer.path),
            "frames": writer.frames,
            "duration_s": round(writer.duration_s, 3),
            "started_ns": writer.first_capture_ns,
        }
        try:
            writer.close()
        finally:
            summary["bytes"] = writer.file_size()  # after close: the last fragment is written then
            self.segments.append(summary)
            self._emit({"state": "segment", **summary})

    def _finish(self, state: State, error: str | None, code: str | None) -> None:
        with self._lock:
            self._finish_locked(state, error, code, from_loop=True)

    def _finish_locked(self, state: State, error: str | None, code: str | None, from_loop: bool = False) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._close_segment()
        except SegmentError as err:  # the disk failed on the last fragment: that is this recording's error
            if state != "error":
                state, error, code = "error", str(err), err.code
        self.state, self.error, self.error_code = state, error, code
        event: dict[str, Any] = {"state": state}
        if error:
            event.update(error=error, code=code)
            log.error("%s %s stopped: %s", self.stream.id, self.kind, error)
        else:
            log.info("%s %s: %d frames in %d segment(s)", self.stream.id, self.kind, self.frames, len(self.segments))
        if from_loop:
            self._loop.call_soon_threadsafe(self._on_event, self, event)
        else:
            self._loop.call_soon_threadsafe(self._ended, event)

    def _emit(self, event: dict[str, Any]) -> None:
        self._loop.call_soon_threadsafe(self._on_event, self, event)

    # ---- reporting

    def describe(self) -> dict[str, Any]:
        writer = self._writer
        subscription = self._consumer.subscription if self._consumer is not None else None
        return {
            "stream": self.stream.id,
            "kind": self.kind,
            "state": self.state,
            "recording": self.active,
            "path": str(writer.path) if writer is not None else (self.segments[-1]["path"] if self.segments else None),
            "segments": [*self.segments, *([{"path": str(writer.path), "open": True}] if writer is not None else [])],
            "frames": self.frames,
            "bytes": self.bytes,
            "started_ns": self.started_ns,
            "drops": subscription.drops if subscription is not None else self.drops,
            "error": self.error,
            "code": self.error_code,
        }
