"""Record a stream's H.264 to an MP4 file as it was encoded (no re-encoding), on a thread of its own."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import av.error

from vergence.errors import CommandError
from vergence.hub import Item
from vergence.media.frame import TIME_BASE, EncodedPacket
from vergence.outputs.base import ThreadedConsumer

if TYPE_CHECKING:
    from vergence.stream import Stream

log = logging.getLogger(__name__)

# Fragmented at every keyframe with an empty moov: the file is playable up to the last fragment even if the power goes.
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


class Recorder:
    """One stream's recorder: `start(name)` writes `<media dir>/<name>.mp4` from the next keyframe, `stop()` closes it."""

    def __init__(self, stream: Stream, directory: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.stream = stream
        self.directory = directory
        self._loop = loop
        self._consumer: ThreadedConsumer | None = None
        self._lock = threading.Lock()  # the consumer thread muxes, stop() closes: never at once
        self._container: av.container.OutputContainer | None = None
        self._video: av.stream.Stream | None = None
        self._first_pts = 0
        self.path: Path | None = None
        self.frames = 0
        self.bytes = 0
        self.started_ns = 0
        self.error: str | None = None

    @property
    def recording(self) -> bool:
        return self._consumer is not None

    async def start(self, name: str) -> dict[str, Any]:
        """Begin a recording; CommandError when one runs or the file exists."""
        if self._consumer is not None:
            raise CommandError(f"{self.stream.id} is already recording to {self.path}")
        path = self.directory / f"{name}.mp4"
        try:
            await asyncio.to_thread(_create_new, path)
        except FileExistsError:
            raise CommandError(f"{path} already exists") from None
        except OSError as err:
            raise CommandError(f"cannot write {path}: {err}", code="io_error") from None
        self.path, self.frames, self.bytes, self.error = path, 0, 0, None
        self.started_ns = time.time_ns()
        consumer = ThreadedConsumer(self.stream.h264, f"rec-{self.stream.id}", self._on_item, self._loop)
        self._consumer = consumer
        consumer.start()
        log.info("recording %s to %s", self.stream.id, path)
        return self.describe()

    async def stop(self) -> dict[str, Any]:
        """Close the file (what was written stays playable); a no-op when not recording."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.stop()
            await asyncio.to_thread(self._close)
            log.info("recorded %d frames of %s to %s", self.frames, self.stream.id, self.path)
        return self.describe()

    def describe(self) -> dict[str, Any]:
        return {
            "stream": self.stream.id,
            "recording": self.recording,
            "path": str(self.path) if self.path else None,
            "frames": self.frames,
            "bytes": self.bytes,
            "started_ns": self.started_ns,
            "error": self.error,
        }

    def _on_item(self, item: Item) -> None:
        if not isinstance(item, EncodedPacket):
            return
        with self._lock:
            if self.path is None or (self._container is None and not (item.keyframe and item.config)):
                return  # a file starts at a keyframe that carries SPS/PPS
            try:
                if self._container is None:
                    self._open(item)
                self._mux(item)
            except (av.error.FFmpegError, OSError, ValueError) as err:
                self.error = str(err)
                log.error("recording %s failed: %s", self.stream.id, err)
                self._close_locked()
                self.path = None

    def _open(self, packet: EncodedPacket) -> None:
        assert self.path is not None
        container = av.open(str(self.path), "w", format="mp4", options={"movflags": MOVFLAGS})
        self._video = container.add_mux_stream(
            "h264", width=self.stream.info.width, height=self.stream.info.height, time_base=TIME_BASE
        )
        self._container = container
        self._first_pts = packet.pts

    def _mux(self, packet: EncodedPacket) -> None:
        assert self._container is not None and self._video is not None
        av_packet = av.Packet(packet.data)
        av_packet.stream = self._video
        av_packet.time_base = TIME_BASE
        av_packet.pts = av_packet.dts = packet.pts - self._first_pts
        av_packet.is_keyframe = packet.keyframe
        self._container.mux(av_packet)
        self.frames += 1
        self.bytes += len(packet.data)

    def _close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        container, self._container = self._container, None
        self._video = None
        if container is not None:
            try:
                container.close()
            except av.error.FFmpegError as err:
                log.warning("closing the recording of %s: %s", self.stream.id, err)


def _create_new(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.open("xb").close()
