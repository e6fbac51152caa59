"""Push a stream's H.264 to an RTMP or RTSP server as it was encoded (no re-encoding), reconnecting with backoff.

Why a child process: PyAV 18 opens an output URL (`avio_open`: the TCP connect and the RTMP handshake; for RTSP the whole
ANNOUNCE/SETUP/RECORD exchange in `avformat_write_header`) while holding the GIL, and gives output containers neither an
I/O timeout nor an interrupt callback. In the server, a slow or silent media server would freeze every thread, the event
loop included, for as long as it keeps quiet. So FFmpeg's muxer runs in a small child process (`push_main`), fed access
units through a pipe by the output's own thread (a ThreadedConsumer under the hub's `gop` policy): the server never
waits on the network, and killing the child ends a connect or a write at once.

The child bounds every network wait with SIGALRM left at its default action, so the kernel ends a push whose server has
stopped answering even while FFmpeg holds the GIL. The parent notices at its next write (a broken pipe), counts a failure,
waits (`retry_initial_s`, doubling up to `retry_max_s`, back to the start after a stable minute) and starts again at a
fresh keyframe. Nothing is buffered while disconnected: packets that arrive meanwhile are dropped.

Pipe protocol (private to this module): the parent writes one JSON line `{"url", "width", "height"}`, then per access
unit a header (`>IqB`: length, pts in 1/90000 s, flags with 1 = keyframe) and the Annex-B bytes. The child answers
`live` once the server took the header and the first frame, or `error <reason>` before it exits with status 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from vergence.errors import redact
from vergence.hub import Item
from vergence.media import h264
from vergence.media.frame import TIME_BASE, EncodedPacket
from vergence.metrics import WindowedRate
from vergence.outputs.base import Backoff, ThreadedConsumer, find_stream

if TYPE_CHECKING:
    from collections.abc import Mapping

    from vergence.config import RestreamSettings
    from vergence.stream import Stream

log = logging.getLogger(__name__)

#: Longest a connect or one frame's write may take before the push counts as failed (the child's SIGALRM).
IO_TIMEOUT_S = 10.0
#: How long a stopped push may take to end its session politely (RTMP deleteStream, RTSP TEARDOWN) before it is killed.
STOP_GRACE_S = 2.0
AU_HEADER = struct.Struct(">IqB")
FLAG_KEYFRAME = 0x01
#: One millisecond at 90 kHz: FLV stamps in ms, so timestamps must grow by at least this much.
MIN_STEP = 90


def muxer_for(url: str) -> tuple[str, dict[str, str]]:
    """Return FFmpeg's muxer name and options for a push URL: `flv` for rtmp(s)://, `rtsp` over TCP for rtsp(s)://."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("rtmp", "rtmps"):
        # The duration and file size cannot be written back into a stream that has already left.
        return "flv", {"flvflags": "no_duration_filesize"}
    if scheme in ("rtsp", "rtsps"):
        return "rtsp", {"rtsp_transport": "tcp", "timeout": str(int(IO_TIMEOUT_S * 1_000_000))}
    raise ValueError(f"cannot push to {redact(url)}: the URL must start with rtmp://, rtmps://, rtsp:// or rtsps://")


# --- the child -------------------------------------------------------------------------------------------------------


def push_main(stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """Child process: read the config line and access units from `stdin`, mux them to the URL; return the exit status."""
    import av
    import av.error

    config = json.loads(stdin.readline())
    format, options = muxer_for(config["url"])
    container: Any = None
    live = False
    first_pts = last_pts = 0
    try:
        while True:
            head = stdin.read(AU_HEADER.size)
            if len(head) < AU_HEADER.size:
                return 0  # the server closed the pipe: end the session
            size, pts, flags = AU_HEADER.unpack(head)
            data = stdin.read(size)
            if len(data) < size:
                return 0
            signal.setitimer(signal.ITIMER_REAL, IO_TIMEOUT_S)
            if container is None:
                container = av.open(config["url"], "w", format=format, options=options)
                video = container.add_mux_stream(
                    "h264", width=config["width"], height=config["height"], time_base=TIME_BASE
                )
                first_pts, last_pts = pts, -MIN_STEP
            packet = av.Packet(data)
            packet.stream = video
            packet.time_base = TIME_BASE
            # Each session's clock starts at 0 and always moves on, even across a source restart that resets pts.
            last_pts = max(pts - first_pts, last_pts + MIN_STEP)
            packet.pts = packet.dts = last_pts
            packet.is_keyframe = bool(flags & FLAG_KEYFRAME)
            container.mux(packet)  # the first one connects: PyAV writes the header once it has the SPS/PPS
            signal.setitimer(signal.ITIMER_REAL, 0)
            if not live:
                live = True
                stdout.write(b"live\n")
                stdout.flush()
    except (av.error.FFmpegError, OSError, ValueError) as err:
        stdout.write(f"error {err}\n".encode())
        stdout.flush()
        return 1
    finally:
        if container is not None:
            signal.setitimer(signal.ITIMER_REAL, STOP_GRACE_S)
            try:
                container.close()  # RTMP deleteStream, RTSP TEARDOWN
            except (av.error.FFmpegError, OSError):
                pass


#: What the child runs: this module's push_main, found on the parent's path if it is not on the child's own.
CHILD_CODE = (
    "import sys; sys.path.append({root!r}); from vergence.outputs.restream import push_main; "
    "sys.exit(push_main(sys.stdin.buffer, sys.stdout.buffer))"
)


class PushProcess:
    """The server's side of one push child: feed it access units, read what it reports, end it."""

    def __init__(self, url: str, width: int, height: int) -> None:
        code = CHILD_CODE.format(root=str(Path(__file__).resolve().parents[2]))
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the server, which ends its pushes in order
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin = self.process.stdin
        self._stdout = self.process.stdout
        os.set_blocking(self._stdout.fileno(), False)
        self._reported = b""
        self.parameter_sets = b""
        self.live = False
        # The URL travels in the pipe, not on the command line, where any local user could read its credentials.
        config = {"url": url, "width": width, "height": height}
        try:
            self._stdin.write(json.dumps(config).encode() + b"\n")
            self._stdin.flush()
        except OSError:
            self.close(0.0)
            raise

    @property
    def sending(self) -> bool:
        """Whether the first keyframe has been handed over (what follows must continue it)."""
        return bool(self.parameter_sets)

    def send(self, packet: EncodedPacket) -> None:
        """Hand one access unit to the child; blocks while its pipe is full; OSError once the child has gone."""
        if packet.config:
            self.parameter_sets = h264.parameter_sets(packet.data)
        flags = FLAG_KEYFRAME if packet.keyframe else 0
        self._stdin.write(AU_HEADER.pack(len(packet.data), packet.pts, flags))
        self._stdin.write(packet.data)
        self._stdin.flush()

    def reports(self) -> list[str]:
        """Return the lines the child has written since the last call, without waiting."""
        try:
            self._reported += self._stdout.read() or b""
        except (BlockingIOError, ValueError):
            pass
        *lines, self._reported = self._reported.split(b"\n")
        return [line.decode(errors="replace") for line in lines]

    def kill(self) -> None:
        """End the child now, wherever it is (a connect, a write)."""
        if self.process.poll() is None:
            self.process.kill()

    def close(self, grace_s: float) -> str | None:
        """End the session (politely within `grace_s`, else by kill); return the child's last error report, if any."""
        try:
            self._stdin.close()
        except OSError:
            pass  # the child had gone: the pipe was already broken
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.kill()
            self.process.wait()
        lines = self.reports()
        # "live" then an end, both between two sends (the server took a burst of queued frames and hung up): connected.
        self.live = self.live or "live" in lines
        errors = [line[6:] for line in lines if line.startswith("error ")]
        self._stdout.close()
        return errors[-1] if errors else None


def exit_reason(returncode: int | None, live: bool) -> str:
    """Explain how a push child ended when it said nothing itself."""
    if returncode == -signal.SIGALRM:
        waited = f"{IO_TIMEOUT_S:g} s"
        return f"the server stopped taking data for {waited}" if live else f"the server did not answer within {waited}"
    if returncode is not None and returncode < 0:
        return f"the push process was ended by signal {-returncode}"
    return f"the push process exited with status {returncode}"


# --- the output ------------------------------------------------------------------------------------------------------


class RestreamOutput:
    """A `[[restream]]` output: one stream's H.264 pushed to an RTMP or RTSP URL, reconnecting until stopped."""

    kind = "restream"

    def __init__(self, settings: RestreamSettings, streams: Mapping[str, Stream]) -> None:
        self.id = settings.id
        self.stream_id = settings.stream
        self.settings = settings
        self.url = redact(settings.url)
        self.format = muxer_for(settings.url)[0]
        self._streams = streams
        self._enabled = settings.enabled
        self._consumer: ThreadedConsumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commands = asyncio.Lock()  # start and stop one at a time
        self._lock = threading.Lock()  # the thread sends, stop() closes: never at once
        self._generation = 0  # bumped by start/stop, so a thread still finishing an item of an old run sends nothing
        self._push: PushProcess | None = None
        self._skip_through_seq = -1  # packets replayed from the channel's cache at subscription: too old to push
        self._retry_at = 0.0
        self._backoff = Backoff(settings.retry_initial_s, settings.retry_max_s)
        self._live_since = 0.0
        self._rate = WindowedRate()
        self._past_drops = 0
        self.state = "stopped"
        self.connects = self.failures = self.frames = self.bytes = 0
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether the output is meant to push (as configured, then as started or stopped)."""
        return self._enabled

    def _stream(self) -> Stream:
        return find_stream(self._streams, self.id, self.stream_id)

    async def start(self) -> None:
        """Start pushing from the next keyframe; a no-op when running."""
        async with self._commands:
            if self._consumer is not None:
                return
            stream = self._stream()
            self._loop = asyncio.get_running_loop()
            self._generation += 1
            self._backoff = Backoff(self.settings.retry_initial_s, self.settings.retry_max_s)
            self._retry_at = 0.0
            latest = stream.h264.latest
            self._skip_through_seq = latest.seq if latest is not None else -1
            self.state = "connecting"
            handle = partial(self._on_item, generation=self._generation)
            self._consumer = ThreadedConsumer(stream.h264, f"restream-{self.id}", handle, self._loop, kind="restream")
            self._consumer.start()
            # Not the cached GOP (seconds old, it would reach the server's viewers as added delay): a fresh keyframe.
            stream.h264.request_keyframe(force=True)
            self._enabled = True
            log.info("restream %s: pushing %s to %s", self.id, self.stream_id, self.url)

    async def stop(self) -> None:
        """Stop pushing: a connect in progress ends at once, a live session within STOP_GRACE_S. Safe to call twice."""
        async with self._commands:
            self._enabled = False
            consumer, self._consumer = self._consumer, None
            if consumer is None:
                return
            self._generation += 1
            if consumer.subscription is not None:
                self._past_drops += consumer.subscription.drops
            consumer.stop()
            push = self._push
            if push is not None and not push.live:
                push.kill()
            await asyncio.to_thread(self._close)
            self.state = "stopped"
            log.info("restream %s: stopped after %d frames", self.id, self.frames)

    def describe(self) -> dict[str, Any]:
        """The output as listed by GET /api/outputs."""
        subscription = self._consumer.subscription if self._consumer is not None else None
        waiting = self.state == "waiting"
        return {
            "id": self.id,
            "kind": self.kind,
            "stream": self.stream_id,
            "url": self.url,
            "format": self.format,
            "enabled": self._enabled,
            "state": self.state,
            "connects": self.connects,
            "failures": self.failures,
            "last_error": self.last_error,
            "frames": self.frames,
            "bytes": self.bytes,
            "bitrate_bps": round(self._rate.amount_per_second() * 8),
            "drops": self._past_drops + (subscription.drops if subscription is not None else 0),
            "retry_in_s": round(max(0.0, self._retry_at - time.monotonic()), 2) if waiting else None,
        }

    # --- off the loop ------------------------------------------------------------------------------------------------

    def _close(self) -> None:
        if not self._lock.acquire(timeout=0.5):
            push = self._push
            if push is not None:
                push.kill()  # the thread is stuck writing to a push that stopped reading: unblock it
            self._lock.acquire()
        try:
            push, self._push = self._push, None
            if push is not None:
                push.close(STOP_GRACE_S if push.live else 0.0)
        finally:
            self._lock.release()

    def _on_item(self, item: Item, generation: int) -> None:
        """Output thread: hand one access unit to the push, (re)starting it when due."""
        if not isinstance(item, EncodedPacket) or item.seq <= self._skip_through_seq:
            return
        with self._lock:
            if generation == self._generation:
                self._send(item, generation)

    def _send(self, packet: EncodedPacket, generation: int) -> None:
        push = self._push
        if push is not None and packet.config and push.sending:
            if h264.parameter_sets(packet.data) != push.parameter_sets:
                # New SPS/PPS (the source came back at another size): the server needs a new stream header.
                log.info("restream %s: the stream's parameters changed; starting a new session", self.id)
                push.close(STOP_GRACE_S)
                push = self._push = None
        if push is None:
            if self.state == "waiting" and time.monotonic() < self._retry_at:
                return  # disconnected: drop, never queue
            try:
                push = self._push = self._spawn()
            except OSError as err:
                self._fail(None, f"cannot start the push process: {err}")
                return
        if not push.sending and not (packet.keyframe and packet.config):
            return  # a session starts at a keyframe that carries SPS/PPS
        try:
            push.send(packet)
        except OSError as err:
            if generation == self._generation:  # else stop() ended the push: not a failure
                self._fail(push, f"{type(err).__name__}: {err}")
            return
        self.frames += 1
        self.bytes += len(packet.data)
        self._rate.add(len(packet.data))
        for report in push.reports():
            if report == "live" and not push.live:
                push.live = True
                self._connected()
            elif report.startswith("error "):
                self._fail(push, report[6:])
                return

    def _connected(self) -> None:
        """Count a session that went live."""
        self.connects += 1
        self._live_since = time.monotonic()
        self.state = "live"
        log.info("restream %s: live to %s (connect %d)", self.id, self.url, self.connects)

    def _spawn(self) -> PushProcess:
        """Start a push child and ask the encoder for the keyframe it will begin with."""
        stream = self._stream()
        self.state = "connecting"
        push = PushProcess(self.settings.url, stream.info.width, stream.info.height)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(stream.h264.request_keyframe)  # rate-limited: retries may come fast
        return push

    def _fail(self, push: PushProcess | None, reason: str) -> None:
        """Count a failure, log it once, and wait before the next attempt (backoff reset after a stable minute)."""
        live = push is not None and push.live
        if push is not None:
            reported = push.close(0.0)
            if push.live and not live:  # its "live" came with its end: a connect all the same
                live = True
                self._connected()
            if reported:
                reason = reported
            elif reason.startswith(("BrokenPipeError", "ConnectionResetError")):
                reason = exit_reason(push.process.returncode, live)
        self._push = None
        now = time.monotonic()
        delay_s = self._backoff.failed(now - self._live_since if live else 0.0)
        self._retry_at = now + delay_s
        self.failures += 1
        self.last_error = redact(reason)
        self.state = "waiting"
        log.warning(
            "restream %s to %s failed: %s; retrying in %.1f s (failure %d)",
            self.id,
            self.url,
            self.last_error,
            delay_s,
            self.failures,
        )


def create_output(settings: RestreamSettings, streams: Mapping[str, Stream]) -> RestreamOutput:
    """The output a `[[restream]]` entry makes (the composition root finds this by the section's name)."""
    return RestreamOutput(settings, streams)
