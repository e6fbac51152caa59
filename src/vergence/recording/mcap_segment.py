"""One MCAP segment (`[recording] format = "mcap"`): the stream's H.264 access units as `foxglove.CompressedVideo` (no
re-encoding) on `/<stream>/video`, and beside them, on their own JSON channels, what happened while it recorded:
`/ptz` (and `/stereo`), `/tracking`, `/plugin_results`, `/gps`. Every message is logged at the capture time of its
frame (events: when they happened).

Written by foxglove-sdk's MCAP writer into chunks that each end at least once a second (`flush`, by capture time), so
a crash or a pulled cable loses at most the chunk being written; a linear reader (`mcap`'s `NonSeekingReader` with
`log_time_order=False`, or `StreamReader`) reads such a file to its last complete chunk. The same interface as the MP4
`SegmentWriter`, so the recorder rolls, closes and reports either alike.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from vergence.errors import ConfigError
from vergence.media import h264
from vergence.media.frame import TIME_BASE, EncodedPacket
from vergence.recording.segment import SegmentError, file_size, segment_error

#: A chunk ends after this much capture time at most (the loss a crash can cause), or at CHUNK_BYTES.
CHUNK_S = 1.0
CHUNK_BYTES = 4 * 1024 * 1024
EVENT_TOPICS = {"ptz": "/ptz", "stereo": "/stereo", "tracking": "/tracking", "plugin_result": "/plugin_results",
                "gps": "/gps"}  # fmt: skip


def import_foxglove() -> Any:
    try:
        import foxglove
        import foxglove.channels
        import foxglove.mcap
        import foxglove.messages
    except ImportError as err:
        raise ConfigError('[recording] format = "mcap" needs foxglove-sdk: pip install foxglove-sdk') from err
    return foxglove


class McapSegmentWriter:
    """Write one MCAP segment. It opens at a keyframe with SPS/PPS; `write` raises SegmentError when the disk fails."""

    def __init__(self, path: Path, stream_id: str, first: EncodedPacket, frame_pts: int) -> None:
        if not (first.keyframe and first.config):
            raise ValueError("a segment starts at a keyframe that carries SPS/PPS")
        foxglove = import_foxglove()
        self.path = path
        self.stream_id = stream_id
        self.parameter_sets = h264.parameter_sets(first.data)
        self.frames = 0
        self.bytes = 0
        self.first_capture_ns = first.capture_ns
        self.last_capture_ns = first.capture_ns
        self._frame_pts = max(1, frame_pts)
        self._flushed_ns = first.capture_ns
        self._messages = foxglove.messages
        options = foxglove.mcap.MCAPWriteOptions(chunk_size=CHUNK_BYTES)
        self._context = foxglove.Context()  # this file's own: its channels reach no other sink
        try:
            self._writer: Any = foxglove.open_mcap(
                str(path), allow_overwrite=True, context=self._context, writer_options=options
            )
        except Exception as err:  # the SDK's own error type around an OSError
            raise segment_error(path, err) from err
        self._video = foxglove.channels.CompressedVideoChannel(f"/{stream_id}/video", context=self._context)
        self._events = {
            kind: foxglove.Channel(topic, message_encoding="json", context=self._context)
            for kind, topic in EVENT_TOPICS.items()
        }

    @property
    def duration_s(self) -> float:
        frames_s = self._frame_pts * float(TIME_BASE)
        return (self.last_capture_ns - self.first_capture_ns) / 1e9 + (frames_s if self.frames else 0.0)

    def write(self, packet: EncodedPacket) -> None:
        """Log one access unit at its capture time; end the chunk once a second of capture time is in it."""
        if self._writer is None:
            raise SegmentError(f"write after close: {self.path}", "io_error")
        seconds, nanos = divmod(packet.capture_ns, 1_000_000_000)
        message = self._messages.CompressedVideo(
            timestamp=self._messages.Timestamp(seconds, nanos), frame_id=self.stream_id, data=packet.data, format="h264"
        )
        try:
            self._video.log(message, log_time=packet.capture_ns)
            if packet.capture_ns - self._flushed_ns >= CHUNK_S * 1e9:
                self._writer.flush()
                self._flushed_ns = packet.capture_ns
        except Exception as err:
            raise segment_error(self.path, err) from err
        self.frames += 1
        self.bytes += len(packet.data)
        self.last_capture_ns = packet.capture_ns

    def log_event(self, event: dict[str, Any]) -> None:
        """An event on its channel (any thread), timed now; events of other streams are not this segment's."""
        channel = self._events.get(str(event.get("type")))
        stream = event.get("stream")
        if channel is None or self._writer is None or (stream is not None and stream not in (self.stream_id, "stereo")):
            return
        channel.log(json.dumps(event).encode(), log_time=event.get("capture_ns") or time.time_ns())

    def close(self) -> None:
        """Write the last chunk and the summary, and close."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        except Exception as err:
            raise segment_error(self.path, err) from err

    def file_size(self) -> int:
        return file_size(self.path)
