"""Every stream's recording and clips, the pre-event buffers behind clips, and what starts them: commands and plugin
results."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vergence.errors import CommandError
from vergence.events import EventBus, EventSubscription
from vergence.media.names import MediaNameError, media_file_name
from vergence.recording.mcap_segment import EVENT_TOPICS as MCAP_EVENTS
from vergence.recording.mcap_segment import import_foxglove
from vergence.recording.prebuffer import PreEventBuffer
from vergence.recording.recorder import Recording

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vergence.config import Settings
    from vergence.stream import Stream

log = logging.getLogger(__name__)

_STAMP_EXAMPLE = "20260101-000000-000-clip-100"  # the longest tail a segment's name adds to its base


class Recordings:
    """Start, stop and describe recordings and clips; keep a pre-event buffer per camera when `pre_event_s` > 0."""

    def __init__(self, settings: Settings, streams: Mapping[str, Stream], events: EventBus) -> None:
        self._server_settings = settings
        self._streams = streams
        self._bus = events
        self.settings = settings.recording
        self.current: dict[str, Recording] = {}  # per stream: its recording, running or the last one ended
        self.clips: dict[str, Recording] = {}  # per stream: its clip, running or the last one ended
        self.prebuffers: dict[str, PreEventBuffer] = {}
        self._triggers = _parse_triggers(self.settings.clip_triggers)
        if self.settings.format == "mcap":
            import_foxglove()  # a missing foxglove-sdk stops the start, naming it, not the first recording
        self._events: EventSubscription | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def directory(self) -> Path:
        return self._server_settings.media.dir.expanduser()

    def start(self) -> None:
        """On the loop: fill a pre-event buffer per camera, and listen for plugin results that trigger clips."""
        if self.settings.pre_event_s > 0:
            for camera in self._server_settings.cameras:
                stream = self._streams[camera.id]
                buffer = PreEventBuffer(stream.h264, self.settings.pre_event_s)
                buffer.start()
                self.prebuffers[stream.id] = buffer
        if self._triggers or self.settings.format == "mcap":
            self._events = self._bus.subscribe("recordings")
            self._watcher = asyncio.get_running_loop().create_task(self._watch(self._events), name="recordings")

    async def close(self) -> None:
        """Stop every recording and clip (their files stay playable) and the pre-event buffers."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._events is not None:
            self._events.close()
        for recording in [*self.current.values(), *self.clips.values()]:
            if recording.active:
                await recording.stop()
        for buffer in self.prebuffers.values():
            buffer.stop()
        self.prebuffers.clear()

    # ---- commands

    async def record(self, stream: Stream, name: str | None) -> dict[str, Any]:
        """Start recording `stream`; CommandError when it already records or the disk is (nearly) full."""
        running = self.current.get(stream.id)
        if running is not None and running.active:
            raise CommandError(f"{stream.id} is already recording to {running.describe()['path']}")
        await self._check_space()
        recording = self._new(stream, f"{name}-{stream.id}" if name else stream.id, "recording")
        recording.start()
        self.current[stream.id] = recording
        stream.processing.recording = True
        return recording.describe()

    async def stop(self, stream: Stream) -> dict[str, Any]:
        """Stop recording `stream`; CommandError when it does not record."""
        recording = self.current.get(stream.id)
        if recording is None or not recording.active:
            raise CommandError(f"{stream.id} is not recording")
        await recording.stop()
        return recording.describe()

    async def clip(self, stream: Stream, post_s: float | None, name: str | None) -> dict[str, Any]:
        """Save the pre-event buffer and `post_s` seconds from now; a clip already running is extended instead."""
        post_ns = int((self.settings.post_event_s if post_s is None else post_s) * 1e9)
        until_ns = time.time_ns() + post_ns
        running = self.clips.get(stream.id)
        if running is not None and running.active:
            running.stop_at_ns = max(running.stop_at_ns or 0, until_ns)
            return {**running.describe(), "extended": True}
        await self._check_space()
        recording = self._new(stream, f"{name}-{stream.id}" if name else stream.id, "clip")
        recording.stop_at_ns = until_ns
        buffer = self.prebuffers.get(stream.id)
        if buffer is not None:
            recording.start_from(buffer)
        else:  # no pre-event buffer on this stream: the clip starts at the cached keyframe
            recording.start()
        self.clips[stream.id] = recording
        described = recording.describe()
        described["pre_event_s"] = round(buffer.span_s, 3) if buffer is not None else 0.0
        return described

    def _new(self, stream: Stream, base: str, kind: str) -> Recording:
        try:  # every segment is named `<base>-<stamp>[-clip][-N].<format>`
            media_file_name(f"{base}-{_STAMP_EXAMPLE}", f".{self.settings.format}")
        except MediaNameError as err:  # a stream id vergence cannot name a file by (the command checked `name` already)
            raise CommandError(str(err), code="invalid") from None
        loop = asyncio.get_running_loop()
        return Recording(stream, self.directory, base, self.settings, loop, self._on_event, kind)  # type: ignore[arg-type]

    async def _check_space(self) -> None:
        minimum = self.settings.min_free_mb * 1e6
        directory = self.directory
        try:
            await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
            free = (await asyncio.to_thread(shutil.disk_usage, directory)).free
        except OSError as err:
            raise CommandError(f"cannot write to {directory}: {err}", code="io_error") from None
        if free < minimum:
            raise CommandError(
                f"only {free / 1e6:.0f} MB free in {directory} (minimum {self.settings.min_free_mb:g} MB)",
                code="low_disk_space",
            )

    # ---- events

    def _on_event(self, recording: Recording, event: dict[str, Any]) -> None:
        """On the loop: tell every controller, and keep the REC overlay true to what runs."""
        if not recording.active and recording.kind == "recording":
            recording.stream.processing.recording = False
        self._bus.publish({"type": "recording", "stream": recording.stream.id, "kind": recording.kind, **event})

    async def _watch(self, events: EventSubscription) -> None:
        async for event in events:
            if self.settings.format == "mcap" and event.get("type") in MCAP_EVENTS:
                for recording in (*self.current.values(), *self.clips.values()):
                    if recording.active:
                        recording.log_event(event)
            if event.get("type") != "plugin_result" or not self._triggered(event):
                continue
            stream = self._streams.get(str(event.get("stream")))
            if stream is None:
                continue
            try:
                result = await self.clip(stream, None, None)
            except CommandError as err:
                log.warning("clip on %s by plugin %s not started: %s", stream.id, event.get("plugin"), err)
            else:
                if not result.get("extended"):
                    log.info("clip on %s triggered by plugin %s", stream.id, event.get("plugin"))

    def _triggered(self, event: dict[str, Any]) -> bool:
        result = event.get("result")
        key = self._triggers.get(str(event.get("plugin")))
        return key is not None and isinstance(result, dict) and bool(result.get(key))

    def open_paths(self) -> set[Path]:
        """The segments being written now (not to be deleted)."""
        paths = set()
        for recording in [*self.current.values(), *self.clips.values()]:
            for segment in recording.describe()["segments"]:
                if segment.get("open"):
                    paths.add(Path(segment["path"]))
        return paths

    def describe(self) -> dict[str, Any]:
        """Per stream: its recording and clip (running or last ended) and its pre-event buffer."""
        described: dict[str, Any] = {}
        for stream_id in {*self.current, *self.clips, *self.prebuffers}:
            entry: dict[str, Any] = {}
            if stream_id in self.current:
                entry.update(self.current[stream_id].describe())
            else:
                entry.update(stream=stream_id, recording=False, state="stopped")
            if stream_id in self.clips:
                entry["clip"] = self.clips[stream_id].describe()
            if stream_id in self.prebuffers:
                entry["pre_event"] = self.prebuffers[stream_id].describe()
            described[stream_id] = entry
        return described


def _parse_triggers(specs: list[str]) -> dict[str, str]:
    """`["motion:motion", "edges"]` → {"motion": "motion", "edges": "trigger"}."""
    triggers = {}
    for spec in specs:
        plugin, _, key = spec.partition(":")
        triggers[plugin] = key or "trigger"
    return triggers
