"""One stream: a feed (a supervised camera source, the stereo pairer, the depth thread) whose frames go through the
stream's processing to lazily started encoders, published through the hub's channels."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from vergence.config import CameraSettings, Settings
from vergence.encoders.base import Encoder, PacketSink
from vergence.encoders.fmp4 import Fmp4Muxer
from vergence.encoders.h264 import H264Encoder, bitrate_for
from vergence.encoders.jpeg import JpegEncoder, jpeg_packet
from vergence.encoders.raw import RawEncoder
from vergence.events import EventBus
from vergence.hub import Channel, Hub
from vergence.media.frame import EncodedPacket, Frame
from vergence.media.i420 import crop_i420, gray_i420
from vergence.metrics import TimingMs, WindowedMean, WindowedRate
from vergence.pipeline.process import Processing
from vergence.ptz import Rect, SensorGeometry
from vergence.sources.base import Source, SourceInfo, Still
from vergence.sources.supervisor import FrameListener, StateListener

log = logging.getLogger(__name__)

# A still waits for the capture thread to take it up (at most a frame time), to switch mode and back (a few hundred ms
# at full resolution) and for the first live frame after it; this much means the camera is stuck.
STILL_TIMEOUT_S = 5.0
# When a source has ended, how long its last frame may take to leave the encoders before viewers are told: about a
# frame's encode time; more means an encoder is stuck, and the end is told without its last picture.
ENCODER_DRAIN_S = 2.0
PAUSED_REPEAT_S = 1.0  # how often a paused camera's last picture is encoded again, for viewers who join meanwhile


class Feed(Protocol):
    """Where a stream's frames come from. A camera's is its supervised source (sources.supervisor); a derived stream's
    is another stream's frames (pipeline.stereo.PairFeed, pipeline.depth_feed.DepthFeed). The stream starts it with where
    frames and state changes go; both are called on the feed's own thread."""

    kind: str  # what GET /api/streams lists as the stream's source: a backend, "stereo", "depth"
    restarts: int
    last_error: str | None
    stages: dict[str, TimingMs]  # the feed's own stages, listed with the stream's

    @property
    def source(self) -> Source | None:
        """The camera delivering now, for sensor crops, flips and stills (None: there is none, or not now)."""

    def start(self, on_frame: FrameListener, on_state: StateListener) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, Any]:
        """Counters of the feed's own, listed with the stream's in GET /api/stats."""


class _EncoderProducer:
    """Adapts an Encoder to a channel's Producer: while started, the stream feeds it every frame."""

    def __init__(self, stream: Stream, encoder: Encoder) -> None:
        self._stream = stream
        self.encoder = encoder

    def start(self) -> None:
        self.encoder.start()
        self._stream.attach(self.encoder)

    def stop(self) -> None:
        self._stream.detach(self.encoder)
        self.encoder.stop()

    def request_keyframe(self) -> None:
        self.encoder.request_keyframe()


class Stream:
    """A stream as the rest of vergence sees it: id, picture size, state, and its h264 / jpeg / fmp4 / raw channels.
    Every stream is this one class; what differs is its feed."""

    def __init__(
        self,
        camera: CameraSettings,
        settings: Settings,
        hub: Hub,
        loop: asyncio.AbstractEventLoop,
        events: EventBus,
        feed: Feed,
    ) -> None:
        self.id = camera.id
        self.feed = feed
        self._events = events  # source state changes, for everyone who tells others about changes
        self.camera = camera
        self.settings = settings
        self._loop = loop
        self.info = SourceInfo(camera.width, camera.height, camera.fps)
        self.state = "stopped"
        self._encoders: tuple[Encoder, ...] = ()  # replaced whole, so the capture thread reads it without a lock
        self._seq = 0
        self.latest_frame: Frame | None = None
        # Until the source tells its sensor, a crop applies to the delivered picture itself (software PTZ).
        self.geometry = picture_geometry(camera.width, camera.height)
        self._crop: Rect | None = None
        self.flip = (False, False)
        self.paused = False
        self._repeated_at = 0.0  # monotonic time the paused picture last went to the encoders
        self._taps: tuple[FrameListener, ...] = ()  # called on the capture thread with each frame as captured
        self._software_crop: Rect | None = None
        self.on_geometry: Callable[[], None] | None = None  # called on the event loop when the geometry changes
        self.fps = WindowedRate()
        self.stage_ms: dict[str, WindowedMean] = {"capture": TimingMs(), "ptz": TimingMs(), **feed.stages}
        self.processing = Processing(self.id, self.stage_ms)
        self._h264_encoder = H264Encoder(self.id, settings.h264, self._sink("h264"), lambda: self.info.fps)
        self.h264 = self._encoder_channel(self._h264_encoder, cache_gop=True)
        self.jpeg = self._encoder_channel(JpegEncoder(self.id, settings.jpeg, self._sink("jpeg")), cache_gop=False)
        self.raw = self._encoder_channel(RawEncoder(self.id, self._sink("raw")), cache_gop=False)
        self.fmp4 = hub.add(
            Channel(
                self.id,
                "fmp4",
                Fmp4Muxer(
                    self.h264,
                    lambda packet: self.fmp4.publish(packet),
                    lambda: (self.info.width, self.info.height),
                    lambda: self.info.fps,
                ),
                linger_s=settings.hub.encoder_linger_s,
                # No replay for MSE: a SourceBuffer given a second of backlog either plays it late or, when the player
                # jumps ahead, counts every skipped frame as dropped. A joiner waits for a fresh keyframe instead.
                cache_gop=False,
            )
        )
        hub.add(self.h264)
        hub.add(self.jpeg)
        hub.add(self.raw)
        self.backend = feed.kind
        self._still_lock = asyncio.Lock()  # one still at a time per camera
        self.stills = 0
        self.last_stall_ms: float | None = None
        self.max_stall_ms: float | None = None

    def _encoder_channel(self, encoder: Encoder, cache_gop: bool) -> Channel:
        self.stage_ms[f"encode_{encoder.format}"] = encoder.encode_ms
        return Channel(
            self.id,
            encoder.format,
            _EncoderProducer(self, encoder),
            linger_s=self.settings.hub.encoder_linger_s,
            cache_gop=cache_gop,
            max_cached_packets=self.settings.hub.h264_buffer_packets,
        )

    def _sink(self, format: str) -> PacketSink:
        """Return the encoder thread's door to the loop: packets reach the channel only via call_soon_threadsafe."""

        def sink(packet: EncodedPacket) -> None:
            channel = {"h264": self.h264, "jpeg": self.jpeg, "raw": self.raw}[format]
            self._loop.call_soon_threadsafe(channel.publish, packet)

        return sink

    @property
    def channels(self) -> list[Channel]:
        return [self.h264, self.jpeg, self.fmp4, self.raw]

    def start(self) -> None:
        self.feed.start(self._on_frame, self._on_state)

    def stop(self) -> None:
        for channel in self.channels:
            channel.close()
        for plugin in self.processing.plugins:
            plugin.close()
        self.feed.stop()

    def tap(self, listener: FrameListener) -> Callable[[], None]:
        """Call `listener` on the capture thread with every frame as captured (before processing: a stereo pair wants
        the eyes as the sensors saw them, not their overlays); return what stops it."""
        self._taps = (*self._taps, listener)

        def untap() -> None:
            self._taps = tuple(tapped for tapped in self._taps if tapped is not listener)

        return untap

    def attach(self, encoder: Encoder) -> None:
        """Feed `encoder` every frame from now on."""
        if encoder not in self._encoders:
            self._encoders = (*self._encoders, encoder)

    def detach(self, encoder: Encoder) -> None:
        self._encoders = tuple(running for running in self._encoders if running is not encoder)

    @property
    def crop(self) -> Rect | None:
        """The crop asked for last (sensor pixels; None: none yet, the whole picture)."""
        return self._crop

    def set_crop(self, crop: Rect) -> None:
        """Show `crop` from the next frame on: at the sensor where the source can, else cut from each frame."""
        self._crop = crop
        source = self.feed.source
        if source is not None and source.crops_at_sensor:
            source.set_crop(crop)
            self._software_crop = None
        else:
            full = crop == Rect(0, 0, self.geometry.width, self.geometry.height)
            self._software_crop = None if full else crop

    @property
    def bitrate_bps(self) -> int:
        """The H.264 bitrate this stream encodes at."""
        return bitrate_for(self._h264_encoder.settings, self.info.width, self.info.height, self.info.fps)

    def set_bitrate(self, bitrate_bps: int) -> None:
        """Change the H.264 bitrate from the next frame on (every H.264 consumer of this stream shares the encoder)."""
        self._h264_encoder.set_bitrate(bitrate_bps)
        log.info("stream %s: H.264 at %d kbit/s", self.id, bitrate_bps // 1000)

    def set_flip(self, horizontal: bool, vertical: bool) -> None:
        """Mirror this camera's picture (its source may restart itself for it; no other camera is touched)."""
        source = self.feed.source
        if source is not None:
            source.set_flip(horizontal, vertical)  # NotImplementedError when the backend cannot
        self.flip = (horizontal, vertical)

    def _on_frame(self, frame: Frame) -> None:
        """Capture thread: number the frame, keep it for snapshots, offer it to every running encoder."""
        if self.paused:  # the source keeps running, so resuming is instant; viewers keep the last picture
            self._repeat_while_paused(frame)
            return
        crop = self._software_crop
        if crop is not None and frame.pix_fmt == "yuv420p":
            started = time.perf_counter()
            frame.image = crop_i420(frame.image, frame.width, frame.height, crop)
            frame.crop = crop.as_tuple()
            self.stage_ms["ptz"].add((time.perf_counter() - started) * 1000)
        if self.camera.grayscale and frame.pix_fmt == "yuv420p":
            frame.image = gray_i420(frame.image, frame.width, frame.height)
        frame.seq = self._seq
        self._seq += 1
        taps = self._taps
        # Taps (the stereo pairer) get the picture before stabilization, plugins and overlays: a depth map wants the
        # eyes as the sensors saw them. So processing draws on a copy when someone else holds the frame.
        shown = self.processing.run(frame, shared=bool(taps))
        self.latest_frame = shown
        self.fps.add()
        self.stage_ms["capture"].add(frame.timings_ms.get("capture", 0.0))
        for encoder in self._encoders:
            encoder.put(shown)
        for tap in taps:
            tap(frame)

    def _repeat_while_paused(self, frame: Frame) -> None:
        """Capture thread, paused: hand the encoders the last picture again once every PAUSED_REPEAT_S, numbered and
        timed as the frame that just came in. A viewer who joins a paused camera (or asks for a keyframe) then gets a
        picture within that time; otherwise a lazy encoder that started after the pause would never have one."""
        shown = self.latest_frame
        now = time.monotonic()
        if shown is None or now - self._repeated_at < PAUSED_REPEAT_S:
            return
        self._repeated_at = now
        again = dataclasses.replace(shown, seq=self._seq, pts=frame.pts, timings_ms={})  # the same pixels, not a copy
        self._seq += 1
        for encoder in self._encoders:
            encoder.put(again)

    def _on_state(self, state: str, message: str | None, info: SourceInfo | None) -> None:
        """Capture thread: a source state change. Tell every viewer; after a restart resume at a keyframe; after the
        end (`ended`: a file played once) end every channel."""
        self.state = state
        # At once, so that whoever reads the new state (GET /api/streams) is past the event too.
        self._events.publish_threadsafe({"type": "source", "stream": self.id, "state": state, **_message(message)})
        if info is not None:
            self.info = info
        if state == "running":
            for encoder in self._encoders:
                encoder.request_keyframe()
            source = self.feed.source
            geometry = source.sensor_geometry() if source is not None else None
            self.geometry = geometry or picture_geometry(self.info.width, self.info.height)
            if self._crop is not None and source is not None and source.crops_at_sensor:
                source.set_crop(self._crop)  # before its first frame; the controller re-clamps on the loop next
            if self.flip != (False, False) and source is not None:
                try:
                    source.set_flip(*self.flip)
                except NotImplementedError:
                    log.warning("stream %s: source %s cannot flip", self.id, self.backend)
            if self.on_geometry is not None:
                self._loop.call_soon_threadsafe(self.on_geometry)
        notice: dict[str, Any] = {"type": "status", "stream": self.id, "state": state}
        if message:
            notice["message"] = message
        if state == "ended":  # for good: every viewer gets the last picture, this notice, and a clean end
            for encoder in self._encoders:
                encoder.drain(ENCODER_DRAIN_S)  # its last packets go to the loop before the end does
            for channel in self.channels:
                self._loop.call_soon_threadsafe(channel.end, notice)
            return
        for channel in self.channels:
            self._loop.call_soon_threadsafe(channel.publish, notice)

    async def snapshot(self) -> EncodedPacket | None:
        """Return the newest JPEG: the MJPEG encoder's when it runs, else one encoded now off the loop."""
        if self.jpeg.producing and self.jpeg.latest is not None:
            return self.jpeg.latest
        frame = self.latest_frame
        if frame is None:
            return None
        return await asyncio.to_thread(jpeg_packet, frame, self.settings.jpeg.quality)

    async def still(self, timeout_s: float = STILL_TIMEOUT_S) -> Still | None:
        """Return a full-resolution still from the source, off the loop (None: the source cannot take one)."""
        async with self._still_lock:
            source = self.feed.source
            if source is None:
                return None
            still = await asyncio.to_thread(source.capture_still, timeout_s)
        if still is not None:
            self.stills += 1
            self.last_stall_ms = still.stall_ms
            self.max_stall_ms = max(self.max_stall_ms or 0.0, still.stall_ms)
        return still

    def camera_names(self) -> tuple[str, str]:
        """Return the camera's make and model, for a photo's EXIF."""
        source = self.feed.source
        if source is None:
            return "", self.backend
        return source.camera_make, source.camera_model

    def describe(self) -> dict[str, Any]:
        """The stream as listed by GET /api/streams."""
        return {
            "id": self.id,
            "width": self.info.width,
            "height": self.info.height,
            "fps": self.info.fps,
            "codec": self.h264.codec,
            "bitrate_bps": self.bitrate_bps,
            "source": self.backend,
            "state": self.state,
            "sensor_mode": self.info.sensor_mode,
        }

    def stats(self) -> dict[str, Any]:
        """Counters for GET /api/stats."""
        return {
            "state": "paused" if self.paused else self.state,
            "fps": round(self.fps.per_second(), 2),
            "frames": self.fps.total_events,
            "restarts": self.feed.restarts,
            "last_error": self.feed.last_error,
            "stages_ms": {name: round(mean.mean(), 3) for name, mean in self.stage_ms.items()},
            "channels": {channel.format: channel.snapshot() for channel in self.channels},
            "encoder_skipped_frames": {
                producer.encoder.format: producer.encoder.frames_skipped
                for producer in (self.h264.producer, self.jpeg.producer, self.raw.producer)
                if isinstance(producer, _EncoderProducer)
            },
            "stills": {
                "count": self.stills,
                "last_stall_ms": None if self.last_stall_ms is None else round(self.last_stall_ms, 1),
                "max_stall_ms": None if self.max_stall_ms is None else round(self.max_stall_ms, 1),
            },
            "camera": self._camera_status(),
            **self.feed.stats(),
            "updated_ns": time.time_ns(),
        }

    def _camera_status(self) -> dict[str, Any]:
        source = self.feed.source
        return source.status() if source is not None else {}


def picture_geometry(width: int, height: int) -> SensorGeometry:
    """The geometry of a delivered picture, for sources that crop in software."""
    return SensorGeometry(width, height, Rect(0, 0, width, height), 16, 16)


def _message(message: str | None) -> dict[str, str]:
    return {"message": message} if message else {}
