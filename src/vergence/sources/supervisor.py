"""Keep a source running: capture on a named thread, restart with backoff after a failure, report every state change;
a source that is done for good (SourceFinished: a file played once) ends in state `ended` and is not restarted. A camera
stream's feed (stream.Feed): the stream hands it where frames and state changes go when it starts it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vergence.config import CameraSettings
from vergence.errors import SourceFinished, VergenceError, redact
from vergence.media.frame import Frame
from vergence.metrics import TimingMs
from vergence.sources.base import Source, SourceInfo, backend_for, create_source

log = logging.getLogger(__name__)

FrameListener = Callable[[Frame], None]
StateListener = Callable[[str, str | None, SourceInfo | None], None]


@dataclass(frozen=True, slots=True)
class RunEnd:
    """Why one run of a source stopped, whether it delivered any frame, and whether the source is done for good."""

    reason: str
    delivered: bool
    finished: bool = False


class SourceSupervisor:
    """Run `factory()`'s source until stopped or finished; a failure restarts it after a backoff, which grows while the
    source cannot open or stays dark and starts again from the minimum after a run that delivered frames."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], Source],
        *,
        kind: str = "source",
        backoff_min_s: float = 0.25,
        backoff_max_s: float = 5.0,
        stable_s: float = 5.0,
    ) -> None:
        self.name = name
        self.kind = kind  # the backend, as the stream lists its source
        self.stages: dict[str, TimingMs] = {}  # a camera's frames take no stage of their own before the stream's
        self._factory = factory
        self._on_frame: FrameListener = _ignore_frame
        self._on_state: StateListener = _ignore_state
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._stable_s = stable_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: Source | None = None
        self.restarts = 0
        self.state = "stopped"
        self.last_error: str | None = None

    @property
    def source(self) -> Source | None:
        """The source instance running now (None between restarts)."""
        return self._source

    @classmethod
    def for_camera(cls, camera: CameraSettings) -> SourceSupervisor:
        """The supervised source of a configured camera."""
        return cls(camera.id, lambda: create_source(camera), kind=backend_for(camera).kind)

    def start(self, on_frame: FrameListener, on_state: StateListener) -> None:
        """Start capturing on a thread of its own: every frame to `on_frame`, every state change to `on_state` (both
        called on that thread)."""
        self._on_frame, self._on_state = on_frame, on_state
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop capturing and wait for the thread; safe to call twice."""
        self._stop.set()
        source = self._source
        if source is not None:
            source.close()  # unblocks a pending read()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def stats(self) -> dict[str, Any]:
        """Nothing beyond the stream's own counters (restarts, last error, the camera's status)."""
        return {}

    def _set_state(self, state: str, message: str | None = None, info: SourceInfo | None = None) -> None:
        self.state = state
        try:
            self._on_state(state, message, info)
        except Exception:  # a listener's bug must not kill capture
            log.exception("state listener of %s failed", self.name)

    def _run(self) -> None:
        backoff_s = self._backoff_min_s
        self._set_state("starting")
        final, message = "stopped", None
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                end = self._run_once()
                if self._stop.is_set():
                    break
                if end.finished:  # not a failure: the stream ends here, and stays ended
                    log.info("source %s ended (%s); not restarted", self.name, end.reason)
                    final, message = "ended", end.reason
                    break
                # A source that opened and delivered comes back at once (a sensor timeout, a stream that ended: the
                # picture must resume within a second or two); one that cannot open or stays dark backs off.
                if end.delivered or time.monotonic() - started >= self._stable_s:
                    backoff_s = self._backoff_min_s
                self.restarts += 1
                self.last_error = end.reason
                log.warning("source %s stopped (%s); restarting in %.2f s", self.name, end.reason, backoff_s)
                self._set_state("restarting", end.reason)
                if self._stop.wait(backoff_s):
                    break
                backoff_s = min(backoff_s * 2, self._backoff_max_s)
        finally:
            self._set_state(final, message)

    def _run_once(self) -> RunEnd:
        """Open the source and deliver frames until it fails or is done; say why it stopped."""
        try:
            source = self._factory()
        except VergenceError as err:
            return RunEnd(str(err), False)
        self._source = source
        delivered = False
        try:
            info = source.open()
            self._set_state("running", None, info)
            while not self._stop.is_set():
                self._on_frame(source.read())
                delivered = True
            return RunEnd("stopped", delivered)
        except SourceFinished as err:
            return RunEnd(redact(str(err)), delivered, finished=True)
        except VergenceError as err:
            return RunEnd(redact(str(err)), delivered)
        except Exception as err:  # a backend bug: keep serving the other cameras, retry this one
            log.exception("source %s raised", self.name)
            return RunEnd(redact(f"{type(err).__name__}: {err}"), delivered)
        finally:
            self._source = None
            source.close()


def _ignore_frame(frame: Frame) -> None:
    """Where frames go before the supervisor is started."""


def _ignore_state(state: str, message: str | None, info: SourceInfo | None) -> None:
    """Where state changes go before the supervisor is started."""
