"""Files (looped), RTSP/HTTP URLs and V4L2 devices read through PyAV."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import av
import av.error
import numpy as np

from vergence.config import CameraSettings
from vergence.errors import SourceEnded, SourceError, SourceFinished, redact
from vergence.media.frame import TIME_BASE, Frame
from vergence.media.i420 import crop_i420
from vergence.ptz import Rect, SensorGeometry
from vergence.sources.base import Source, SourceInfo, register

_LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "srt://", "udp://", "tcp://", "/dev/video")
# Low-latency demuxing: no probing buffer, no reordering wait. Users may override any of these with `options`.
_LIVE_OPTIONS = {"fflags": "nobuffer", "flags": "low_delay", "probesize": "32768", "analyzeduration": "0"}


@register("av")
class AvSource(Source):
    """Decode a file, URL or device to frames of the configured size; files play at their own rate and loop (or, with
    `loop = false`, end the stream for good: SourceFinished).

    Pan/tilt/zoom crops the decoded picture at its own resolution before scaling it to the output size, so zooming into a
    1080p file shows its real detail rather than an enlarged copy of the scaled-down picture: the decoded picture is this
    source's "sensor".
    """

    crops_at_sensor = True

    def __init__(self, camera: CameraSettings) -> None:
        super().__init__(camera)
        self._url = camera.options.get("url", camera.source)
        self._closed = threading.Event()
        self._reading = threading.Lock()  # the container is closed only when no read is in progress
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._live = False  # known once opened: a live input has no duration
        self._seq = 0
        self._t0 = 0.0
        self._first_pts_s: float | None = None
        self._loop_offset_s = 0.0
        self._last_pts_s = 0.0
        self._native: tuple[int, int] | None = None  # the decoded picture's size, once opened
        self._crop: Rect | None = None  # None: the whole picture (replaced whole, read by the capture thread)

    def open(self) -> SourceInfo:
        self._closed.clear()
        options = {key: value for key, value in self.camera.options.items() if key != "url"}
        kwargs: dict[str, object] = {}
        if self._url.startswith("/dev/video"):
            kwargs["format"] = "v4l2"
            options.setdefault("video_size", f"{self.camera.width}x{self.camera.height}")
            options.setdefault("framerate", f"{self.camera.fps:g}")
        if self._url.startswith(_LIVE_PREFIXES):
            options = {**_LIVE_OPTIONS, **options}
        if self._url.startswith(("rtsp://", "rtsps://")):
            options.setdefault("rtsp_transport", "tcp")
        try:
            self._container = av.open(  # type: ignore[call-overload]
                self._url, options=options, timeout=(10.0, 5.0), **kwargs
            )
        except (av.error.FFmpegError, OSError) as err:
            raise SourceError(f"cannot open {redact(self._url)}: {err}") from err
        if not self._container.streams.video:
            raise SourceError(f"{redact(self._url)} has no video stream")
        # A file (local or over HTTP) has a duration: it is paced at its own rate and looped. A camera, an RTSP feed or an
        # HTTP MJPEG stream has none: its frames are taken as they come, since pacing by the sender's clock would drift.
        self._live = self._container.duration is None or self._url.startswith("/dev/video")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        context = stream.codec_context
        self._native = (context.width & ~1, context.height & ~1) if context.width and context.height else None
        self._frames = self._container.decode(stream)
        self._t0 = time.monotonic()
        self._first_pts_s = None
        self._loop_offset_s = 0.0
        return SourceInfo(self.camera.width, self.camera.height, self.camera.fps)

    def read(self) -> Frame:
        with self._reading:
            if self._closed.is_set() or self._frames is None:
                self._release()
                raise SourceEnded(f"{redact(self._url)} closed")
            return self._read_frame()

    def _read_frame(self) -> Frame:
        decoded = self._next_decoded()
        capture_ns = time.time_ns()
        started = time.perf_counter()
        if not self._live:
            self._pace(decoded)
        crop = self._crop  # this frame's crop, whatever another thread sets meanwhile
        image = self._scaled(decoded, crop)
        frame = Frame(
            image=image,
            pix_fmt="yuv420p",
            width=self.camera.width,
            height=self.camera.height,
            seq=self._seq,
            pts=round((time.monotonic() - self._t0) * TIME_BASE.denominator),
            capture_ns=capture_ns if self._live else time.time_ns(),
            camera=self.camera.id,
            crop=None if crop is None else crop.as_tuple(),
        )
        frame.timings_ms["capture"] = (time.perf_counter() - started) * 1000
        self._seq += 1
        return frame

    def _scaled(self, decoded: av.VideoFrame, crop: Rect | None) -> np.ndarray:
        """Return the decoded picture (or the crop's window of it) as I420 at the output size."""
        out_w, out_h = self.camera.width, self.camera.height
        # I420 needs even sizes: an odd last row or column of the decoded picture is left out of the "sensor".
        width, height = decoded.width & ~1, decoded.height & ~1
        if crop is None or crop == Rect(0, 0, width, height):
            image: np.ndarray = decoded.reformat(out_w, out_h, format="yuv420p").to_ndarray()
            return image
        native = decoded.reformat(width, height, format="yuv420p").to_ndarray()
        return crop_i420(native, width, height, crop, out_w, out_h)

    @property
    def camera_model(self) -> str:
        """For EXIF: the device path, the URL's scheme and host (never its credentials), or "video file"."""
        if self._url.startswith("/dev/"):
            return self._url
        parts = urlsplit(self._url)
        if parts.scheme and parts.hostname:
            port = f":{parts.port}" if parts.port else ""
            return f"{parts.scheme}://{parts.hostname}{port}"
        return "video file"

    def sensor_geometry(self) -> SensorGeometry | None:
        if self._native is None:
            return None
        width, height = self._native
        return SensorGeometry(width, height, Rect(0, 0, width, height), 16, 16)

    def set_crop(self, crop: Rect) -> None:
        self._crop = crop

    def _next_decoded(self) -> av.VideoFrame:
        assert self._frames is not None
        try:
            return next(self._frames)
        except StopIteration:
            if self._live:  # a feed that stopped: it may come back, so the supervisor opens it again
                raise SourceEnded(f"{redact(self._url)} ended") from None
            if not self.camera.loop:
                raise SourceFinished(f"{redact(self._url)} played to its end") from None
        except (av.error.FFmpegError, OSError) as err:
            raise SourceError(f"reading {redact(self._url)} failed: {err}") from err
        # A file came to its end: start again from the top, continuing the clock.
        assert self._container is not None
        self._loop_offset_s = self._last_pts_s + 1 / self.camera.fps
        self._first_pts_s = None
        try:
            self._container.seek(0)
            self._frames = self._container.decode(self._container.streams.video[0])
            return next(self._frames)
        except (StopIteration, av.error.FFmpegError) as err:
            raise SourceEnded(f"{redact(self._url)} cannot loop: {err}") from None

    def _pace(self, decoded: av.VideoFrame) -> None:
        """Hold a file's frame until its presentation time, as a camera would deliver it."""
        pts_s = float(decoded.time) if decoded.time is not None else 0.0
        if self._first_pts_s is None:
            self._first_pts_s = pts_s - self._loop_offset_s
        self._last_pts_s = pts_s - self._first_pts_s
        delay = self._t0 + self._last_pts_s - time.monotonic()
        if delay > 0:
            self._closed.wait(delay)

    def close(self) -> None:
        self._closed.set()
        if self._reading.acquire(blocking=False):  # else the reading thread releases it when its read returns
            try:
                self._release()
            finally:
                self._reading.release()

    def _release(self) -> None:
        container, self._container = self._container, None
        self._frames = None
        if container is not None:
            container.close()
