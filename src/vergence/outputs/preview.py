"""The local preview (`vergence serve --preview`, `[preview]`): one stream in a window on the device's own display.

FFmpeg's player, ffplay, shows the pictures: SDL under it opens a window under X11 or Wayland, or takes a DRM/KMS
console without a desktop, and scales the YUV picture on the GPU where there is one. vergence writes it the stream's
pictures as the encoders get them (overlays and plugins drawn, I420 as captured) on a pipe: no encode at all, and a
process of its own, so a window that hangs or crashes never touches the stream. The writer keeps only the newest
picture (as an encoder does): a slow display skips pictures instead of delaying capture.

A window the user closes stays closed (the server goes on); a player that fails (no display yet: a service that starts
before the desktop does) says why in the log and in `/api/stats` (`services.preview`) and is tried again after
RETRY_S, doubling up to RETRY_MAX_S.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from vergence.config import PreviewSettings
from vergence.encoders.base import Encoder
from vergence.errors import ConfigError
from vergence.media.frame import EncodedPacket, Frame

if TYPE_CHECKING:
    from vergence.context import Parts
    from vergence.stream import Stream

log = logging.getLogger(__name__)

PIXEL_FORMATS = ("yuv420p", "bgr24")  # the Frame.pix_fmt values ffplay's -pixel_format reads under the same names
STOP_TIMEOUT_S = 3.0
RETRY_S, RETRY_MAX_S = 2.0, 60.0


class PreviewWindow(Encoder):
    """Write each picture to ffplay's stdin on this thread (Encoder's newest-frame thread: it encodes nothing)."""

    format = "preview"

    def __init__(self, settings: PreviewSettings, stream: Stream, player: str) -> None:
        super().__init__(stream.id, lambda packet: None)
        self._settings = settings
        self._stream = stream
        self._player = player
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._shape: tuple[str, int, int] | None = None  # the pictures the running player was started for
        self.state = "starting"
        self.message: str | None = None
        self.frames = 0
        self.failures = 0
        self._retry_at = 0.0  # monotonic time a failed player may be started again

    def command(self, pix_fmt: str, width: int, height: int) -> list[str]:
        """ffplay reading raw pictures of this shape from stdin, showing each as soon as it is read."""
        rate = f"{self._stream.info.fps:g}"
        return [
            self._player,
            *("-hide_banner", "-loglevel", "error", "-nostats"),
            *("-window_title", f"vergence: {self._stream.id}"),
            *("-fflags", "nobuffer", "-flags", "low_delay", "-framedrop", "-an", "-sn"),
            *(["-fs"] if self._settings.fullscreen else []),
            *("-f", "rawvideo", "-pixel_format", pix_fmt),
            *("-video_size", f"{width}x{height}", "-framerate", rate, "-i", "pipe:0"),
        ]

    def encode(self, frame: Frame) -> list[EncodedPacket]:
        if self.state == "closed" or frame.pix_fmt not in PIXEL_FORMATS:
            return []
        if self.state == "failed" and time.monotonic() < self._retry_at:
            return []
        shape = (frame.pix_fmt, frame.width, frame.height)
        if self._process is None or shape != self._shape:
            self._open(shape)
        process = self._process
        assert process is not None and process.stdin is not None
        try:
            process.stdin.write(memoryview(np.ascontiguousarray(frame.image)))  # type: ignore[arg-type]
            process.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            self._ended(process)
            return []
        self.frames += 1
        return []

    def stop(self) -> None:
        """End the player first: a write blocked on a window that hangs then returns (its pipe breaks)."""
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
        super().stop()

    def _open(self, shape: tuple[str, int, int]) -> None:
        self._close()
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            self.command(*shape), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr
        )
        self._shape = shape
        self.state, self.message = "running", None
        log.info("preview of %s: a %dx%d window (%s)", self._stream.id, shape[1], shape[2], self._player)

    def _ended(self, process: subprocess.Popen[bytes]) -> None:
        """The player went away: closed by the user (exit 0), or failed (its own words, in the log)."""
        if self._stop.is_set():  # ended by stop()
            self._close()
            return
        try:
            code = process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # its stdin broke but it lives on: end it
            process.kill()
            code = process.wait()
        said = self._said()
        self._close()
        if code == 0:
            self.state, self.message = "closed", "the window was closed"
            log.info("preview of %s: the window was closed; the server goes on", self._stream.id)
        else:
            self.failures += 1
            wait_s = min(RETRY_MAX_S, RETRY_S * 2 ** (self.failures - 1))
            self._retry_at = time.monotonic() + wait_s
            self.state, self.message = "failed", f"{self._player} exited with {code}: {said or 'no message'}"
            log.error("preview of %s: %s; trying again in %.0f s", self._stream.id, self.message, wait_s)

    def _said(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return " ".join(self._stderr.read().decode(errors="replace").split())[-300:]

    def _close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                try:
                    process.stdin.close()
                except OSError:  # the pipe broke: the player is gone already
                    pass
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def reset(self) -> None:
        """The thread ends or failed: end the player with it."""
        self._close()
        self._shape = None


class Preview:
    """The `[preview]` service: attaches a PreviewWindow to its stream at start, detaches and closes it at stop."""

    name = "preview"

    def __init__(self, settings: PreviewSettings, stream: Stream) -> None:
        self._settings = settings
        self._stream = stream
        self._window: PreviewWindow | None = None

    async def start(self) -> None:
        player = shutil.which(self._settings.player)
        if player is None:
            raise ConfigError(
                f"--preview shows the picture with {self._settings.player!r}, which is not installed: "
                "`sudo apt install ffmpeg` (it brings ffplay), or [preview] player = its path"
            )
        self._window = PreviewWindow(self._settings, self._stream, player)
        self._window.start()
        self._stream.attach(self._window)

    async def stop(self) -> None:
        window, self._window = self._window, None
        if window is not None:
            self._stream.detach(window)
            window.stop()

    def describe(self) -> dict[str, Any]:
        window = self._window
        return {
            "stream": self._stream.id,
            "state": window.state if window is not None else "stopped",
            "message": window.message if window is not None else None,
            "frames": window.frames if window is not None else 0,
            "skipped": window.frames_skipped if window is not None else 0,
            "failures": window.failures if window is not None else 0,
        }


def create_service(parts: Parts) -> Preview:
    """The `[preview]` window, on its stream (the first unless it names one)."""
    settings = parts.settings.preview
    stream_id = settings.stream or parts.settings.stream_ids()[0]
    return Preview(settings, parts.streams[stream_id])
