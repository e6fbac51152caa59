"""Encoders run on their own named thread, fed the newest frame, and hand packets on through a callback."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from vergence.errors import EncoderError
from vergence.media.frame import EncodedPacket, Frame
from vergence.metrics import TimingMs

log = logging.getLogger(__name__)

PacketSink = Callable[[EncodedPacket], None]


class Encoder(ABC):
    """Encode frames of one stream on a thread of its own.

    `put()` is called by the source thread and never blocks: the encoder keeps only the newest frame, so a slow encoder
    lowers its own frame rate instead of delaying capture. Packets go to `sink`, called on the encoder thread.
    """

    format: str

    def __init__(self, stream_id: str, sink: PacketSink) -> None:
        self.stream_id = stream_id
        self._sink = sink
        self._cond = threading.Condition()
        self._pending: Frame | None = None
        self._encoding = False  # a frame taken from `_pending` is being encoded and handed on
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.encode_ms = TimingMs()
        self.frames_skipped = 0
        self.restarts = 0  # failures after which the codec reopens at the next frame
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the encoder thread (no-op when running)."""
        if self.running:
            return
        self._stop.clear()
        self._pending = None
        self._thread = threading.Thread(target=self._run, name=f"enc-{self.format}-{self.stream_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and release the codec; safe to call twice."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def put(self, frame: Frame) -> None:
        """Offer the newest frame; an older one not yet encoded is skipped."""
        with self._cond:
            if self._pending is not None:
                self.frames_skipped += 1
            self._pending = frame
            self._cond.notify()

    def request_keyframe(self) -> None:
        """Make the next packet a keyframe (meaningful for inter-frame codecs)."""

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._cond:
                    self._encoding = False  # the last frame (if any) is handed on, or failed: `drain` may return
                    self._cond.notify_all()
                    while self._pending is None and not self._stop.is_set():
                        self._cond.wait()
                    frame, self._pending = self._pending, None
                    self._encoding = frame is not None
                if frame is None:
                    continue
                started = time.perf_counter()
                try:
                    packets = self.encode(frame)
                except EncoderError as err:
                    self.last_error = str(err)
                    self.restarts += 1
                    log.error("%s encoder of %s failed: %s", self.format, self.stream_id, err)
                    self.reset()
                    continue
                except (
                    Exception
                ) as err:  # a bug must not silently end the encoder: log it, start over on the next frame
                    self.last_error = f"{type(err).__name__}: {err}"
                    self.restarts += 1
                    log.exception("%s encoder of %s raised", self.format, self.stream_id)
                    self.reset()
                    continue
                elapsed_ms = (time.perf_counter() - started) * 1000
                self.encode_ms.add(elapsed_ms)
                for packet in packets:
                    packet.encode_ms = elapsed_ms
                    self._sink(packet)
        finally:
            with self._cond:
                self._encoding = False
                self._cond.notify_all()
            self.reset()

    def drain(self, timeout_s: float) -> bool:
        """Wait until every frame offered so far is encoded and its packets handed to the sink (True), the encoder
        stopped, or `timeout_s` passed (False): what the sink does next comes after the last picture."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (self._pending is None and not self._encoding) or not self.running, timeout_s
            )

    @abstractmethod
    def encode(self, frame: Frame) -> list[EncodedPacket]:
        """Encode one frame (on the encoder thread)."""

    def reset(self) -> None:
        """Release codec state; the next frame opens it again."""
