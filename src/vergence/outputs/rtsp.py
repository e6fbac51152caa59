"""The `[rtsp]` service: `rtsp://HOST:8554/<stream>` for NVRs, VLC and ground software, on GStreamer's gst-rtsp-server.

gst-rtsp-server runs in a process of its own (vergence.outputs.rtsp_child, on the system's python3, which has the
GStreamer bindings the venv lacks): it speaks RTSP and RTP to the clients (UDP or interleaved in the RTSP connection, as
each asks), and vergence writes it each watched stream's access units on a pipe, as encoded (no re-encode). The child
says when a stream gains its first client (`play`) and loses its last (`idle`): only then does vergence subscribe to the
stream's H.264, so the encoder stays lazy. A client's credentials go from the child to vergence's Authenticator (the
same tokens, users and throttle as every other door) and back as a role.

A child that dies is started again after RETRY_S, doubling up to RETRY_MAX_S; its clients reconnect as RTSP clients do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import subprocess
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from vergence.auth import Authenticator, Refused, Role
from vergence.errors import ConfigError
from vergence.hub import Item
from vergence.media.frame import EncodedPacket
from vergence.outputs.base import ThreadedConsumer
from vergence.outputs.rtsp_child import KIND_ANSWER, KIND_FRAME, RECORD

if TYPE_CHECKING:
    from vergence.config import RtspSettings
    from vergence.context import Parts
    from vergence.stream import Stream

log = logging.getLogger(__name__)

CHILD = Path(__file__).with_name("rtsp_child.py")
PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good"
#: How long the child may take to import GStreamer and listen.
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0
RETRY_S, RETRY_MAX_S = 2.0, 60.0


class Feed:
    """One watched stream: its access units, from a fresh keyframe, written to the child on a thread of its own."""

    def __init__(self, index: int, stream: Stream, write: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.index = index
        self.stream = stream
        self._write = write
        latest = stream.h264.latest
        # Not the cached GOP (seconds old, it would reach the clients as added delay): a fresh keyframe.
        self._skip_through_seq = latest.seq if latest is not None else -1
        self._started = False
        self.frames = 0
        self.consumer = ThreadedConsumer(stream.h264, f"rtsp-{stream.id}", self._on_item, loop, kind="rtsp")
        self.consumer.start()
        stream.h264.request_keyframe(force=True)

    def _on_item(self, item: Item) -> None:
        if not isinstance(item, EncodedPacket) or item.seq <= self._skip_through_seq:
            return
        if not self._started:
            if not (item.keyframe and item.config):
                return  # a client's decoder starts at a keyframe that carries SPS/PPS
            self._started = True
        if self._write(KIND_FRAME, self.index, item.data):
            self.frames += 1

    def stop(self) -> None:
        self.consumer.stop()


class RtspServer:
    """The `[rtsp]` service: the gst-rtsp-server child, fed the streams its clients watch."""

    name = "rtsp"

    def __init__(self, settings: RtspSettings, streams: list[Stream], auth: Authenticator) -> None:
        self._settings = settings
        self._streams = streams
        self._auth = auth
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe = threading.Lock()  # one record at a time on the child's stdin, from every feed and the loop
        self._feeds: dict[str, Feed] = {}
        self._ready: asyncio.Future[str] | None = None
        self._stopping = False
        self._restart: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # credential checks and restarts
        self.state = "stopped"
        self.clients = 0
        self.failures = 0
        self.last_error: str | None = None
        self._frames_before: dict[str, int] = {}

    @property
    def url(self) -> str:
        host = self._settings.host if self._settings.host not in ("0.0.0.0", "::") else "HOST"
        return f"rtsp://{host}:{self._settings.port}/<stream>"

    async def start(self) -> None:
        python = shutil.which(self._settings.python)
        if python is None:
            raise ConfigError(f"[rtsp] python = {self._settings.python!r} is not there: the system's python3 is needed")
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        reason = await self._spawn(python)
        if reason is not None:
            self._kill()
            self.state, self.last_error = "failed", reason
            if reason.startswith("missing"):
                raise ConfigError(
                    f"[rtsp] needs GStreamer's RTSP server for {python} ({reason[8:]}): sudo apt install {PACKAGES}"
                )
            raise ConfigError(f"[rtsp] could not start: {reason}")
        log.info("rtsp: serving %s on %s", ", ".join(s.id for s in self._streams), self.url)

    async def _spawn(self, python: str) -> str | None:
        """Start the child and wait until it listens; return why it did not (None: it does)."""
        assert self._loop is not None
        self._ready = self._loop.create_future()
        self.state = "starting"
        process = self._process = subprocess.Popen(
            [python, str(CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the server, which ends the child in order
        )
        assert process.stdin is not None and process.stdout is not None
        settings = {
            "host": self._settings.host,
            "port": self._settings.port,
            "streams": [stream.id for stream in self._streams],
            "auth": self._auth.anonymous("", None).role < Role.VIEWER,
        }
        try:
            process.stdin.write(json.dumps(settings).encode() + b"\n")
            process.stdin.flush()
        except OSError:
            pass  # it died at once: its reader says why
        threading.Thread(target=self._read, args=(process, process.stdout), name="rtsp-reader", daemon=True).start()
        try:
            said = await asyncio.wait_for(self._ready, START_TIMEOUT_S)
        except TimeoutError:
            return f"the RTSP server did not start within {START_TIMEOUT_S:g} s"
        if said != "ready":
            return said
        self.state = "running"
        return None

    async def stop(self) -> None:
        self._stopping = True
        if self._restart is not None:
            self._restart.cancel()
        for feed in self._feeds.values():
            feed.stop()
        self._feeds.clear()
        process, self._process = self._process, None
        if process is not None:
            await asyncio.to_thread(self._end, process)
        self.state, self.clients = "stopped", 0

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "url": self.url,
            "clients": self.clients,
            "streams": {
                stream.id: {
                    "watched": stream.id in self._feeds,
                    "frames": self._frames_before.get(stream.id, 0)
                    + (self._feeds[stream.id].frames if stream.id in self._feeds else 0),
                }
                for stream in self._streams
            },
            "failures": self.failures,
            "last_error": self.last_error,
        }

    # --- the child's reports, on the loop ----------------------------------------------------------------------------

    def _read(self, process: subprocess.Popen[bytes], stdout: IO[bytes]) -> None:
        """Reader thread: hand each line the child writes to the loop; its end too."""
        assert self._loop is not None
        loop = self._loop
        try:
            for line in stdout:
                loop.call_soon_threadsafe(self._on_line, process, line.decode(errors="replace").rstrip("\n"))
        finally:
            stdout.close()
            try:
                loop.call_soon_threadsafe(self._on_exit, process)
            except RuntimeError:
                pass  # the loop is gone: the server has ended

    def _on_line(self, process: subprocess.Popen[bytes], line: str) -> None:
        if process is not self._process:
            return
        word, _, rest = line.partition(" ")
        if word in ("ready", "error") and self._ready is not None and not self._ready.done():
            self._ready.set_result(line if word == "ready" else rest)
        elif word == "play":
            self._play(rest)
        elif word == "idle":
            self._idle(rest)
        elif word == "clients":
            self.clients = int(rest)
        elif word == "auth":
            request, address, authorization = rest.split(" ", 2)
            task = asyncio.get_running_loop().create_task(self._check(int(request), address, authorization))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif word == "error":
            log.warning("rtsp: %s", rest)

    def _on_exit(self, process: subprocess.Popen[bytes]) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result("the RTSP server's process ended before it listened")
        if process is not self._process or self._stopping:
            return
        self._process = None
        self._failed(f"the RTSP server's process exited with {process.wait()}")

    def _failed(self, reason: str) -> None:
        """The child is gone: drop its clients' feeds, count the failure and start it again after a wait."""
        for stream_id in list(self._feeds):
            self._idle(stream_id)
        self.failures += 1
        wait_s = min(RETRY_MAX_S, RETRY_S * 2 ** (self.failures - 1))
        self.state, self.clients, self.last_error = "failed", 0, reason
        log.error("rtsp: %s; starting it again in %.0f s", reason, wait_s)
        assert self._loop is not None
        self._restart = self._loop.call_later(wait_s, self._start_again)

    def _start_again(self) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self._again())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _again(self) -> None:
        if self._stopping:
            return
        reason = await self._spawn(shutil.which(self._settings.python) or self._settings.python)
        if reason is not None and not self._stopping:
            self._kill()
            self._failed(reason)
        elif reason is None:
            log.info("rtsp: serving again on %s", self.url)

    def _play(self, stream_id: str) -> None:
        if stream_id in self._feeds or self._loop is None:
            return
        index, stream = next((i, s) for i, s in enumerate(self._streams) if s.id == stream_id)
        self._feeds[stream_id] = Feed(index, stream, self._send, self._loop)
        log.info("rtsp: %s has a client", stream_id)

    def _idle(self, stream_id: str) -> None:
        feed = self._feeds.pop(stream_id, None)
        if feed is not None:
            feed.stop()
            self._frames_before[stream_id] = self._frames_before.get(stream_id, 0) + feed.frames
            log.info("rtsp: %s has no client left", stream_id)

    async def _check(self, request: int, address: str, authorization: str) -> None:
        """Judge a client's credentials with the server's Authenticator and tell the child the role (or refusal)."""
        scheme, _, value = authorization.partition(" ")
        role = ""
        try:
            if scheme.lower() == "basic":
                principal = await self._auth.by_basic(value.strip(), address)
                role = "viewer" if principal.role >= Role.VIEWER else ""
        except Refused as refused:
            if not refused.logged:
                log.info("rtsp: refused a client at %s: %s", address, refused)
        await asyncio.to_thread(self._send, KIND_ANSWER, request, role.encode())

    # --- the child's pipe --------------------------------------------------------------------------------------------

    def _send(self, kind: int, index: int, payload: bytes) -> bool:
        """Write one record to the child (blocks while its pipe is full); False once it has gone."""
        process = self._process
        if process is None or process.stdin is None:
            return False
        with self._pipe:
            try:
                process.stdin.write(RECORD.pack(kind, index, len(payload)))
                process.stdin.write(payload)
                process.stdin.flush()
            except (OSError, ValueError):
                return False
        return True

    def _end(self, process: subprocess.Popen[bytes]) -> None:
        """Close the child's stdin (it ends its server and exits), killing it if it does not in time."""
        with self._pipe:
            try:
                if process.stdin is not None:
                    process.stdin.close()
            except OSError:
                pass
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
                process.wait()
            with self._pipe, contextlib.suppress(OSError):
                if process.stdin is not None:
                    process.stdin.close()


def create_service(parts: Parts) -> RtspServer:
    """The `[rtsp]` server, serving the streams it names (all when it names none)."""
    settings = parts.settings.rtsp
    wanted = settings.streams or parts.settings.stream_ids()
    return RtspServer(settings, [parts.streams[stream_id] for stream_id in wanted], parts.auth)
