"""Commands as `<type> <value>` lines written into a named pipe: `echo "zoom 2" > /tmp/vergence` (PiStreamer's way).

The pipe is read on the event loop without ever blocking: opened non-blocking, watched with `add_reader`. vergence also
holds a write end open itself, so the pipe never reports end-of-file when writers come and go (no busy loop) and a writer
never blocks for want of a reader. Replies go to the log and, when `reply_path` is set, as JSON lines to that file.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import stat
from collections import deque
from typing import Any

from vergence.config import FifoSettings
from vergence.control.commander import Commander
from vergence.errors import ConfigError

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 4096
READ_BYTES = 65536
RECENT_REPLIES = 20


class FifoInbox:
    """Reads command lines from the pipe and runs them in order through the Commander."""

    name = "fifo"

    def __init__(self, settings: FifoSettings, commander: Commander) -> None:
        self.path = settings.path.expanduser()
        self.reply_path = settings.reply_path.expanduser() if settings.reply_path else None
        self._commander = commander
        self._read_fd: int | None = None
        self._write_fd: int | None = None
        self._buffer = b""
        self._discarding = False  # inside a line that was too long, until its newline
        self._lines: asyncio.Queue[bytes] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.processed = 0
        self.failed = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_REPLIES)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self._open()
        except OSError as err:
            raise ConfigError(f"fifo.path {self.path}: {err.strerror or err}") from err
        self._loop.add_reader(self._read_fd, self._readable)  # type: ignore[arg-type]
        self._worker = self._loop.create_task(self._run(), name="fifo-inbox")
        log.info("reading commands from the pipe %s", self.path)

    def _open(self) -> None:
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(self.path, 0o660)
        else:
            if not stat.S_ISFIFO(mode):
                raise OSError(errno.EEXIST, f"{self.path} exists and is not a named pipe")
        self._read_fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._write_fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)  # our own writer: no EOF storms

    async def stop(self) -> None:
        if self._loop is not None and self._read_fd is not None:
            self._loop.remove_reader(self._read_fd)
        for fd in (self._read_fd, self._write_fd):
            if fd is not None:
                os.close(fd)
        self._read_fd = self._write_fd = None
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "processed": self.processed,
            "failed": self.failed,
            "recent": list(self.recent),
        }

    def _readable(self) -> None:
        """Event loop: take what the pipe holds (never blocks: the fd is non-blocking) and queue whole lines."""
        assert self._read_fd is not None
        try:
            data = os.read(self._read_fd, READ_BYTES)
        except BlockingIOError:
            return
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if self._discarding:
                self._discarding = False
            elif len(line) > MAX_LINE_BYTES:
                self._refuse_long_line()
            elif line.strip():
                self._lines.put_nowait(line)
        if len(self._buffer) > MAX_LINE_BYTES:
            self._refuse_long_line()
            self._buffer, self._discarding = b"", True

    def _refuse_long_line(self) -> None:
        self._record({"ok": False, "code": "invalid", "error": f"line longer than {MAX_LINE_BYTES} bytes"}, "")

    async def _run(self) -> None:
        while True:
            line = await self._lines.get()
            text = line.decode(errors="replace").strip()
            reply = await self._commander.handle(text, source=f"fifo {self.path}")
            self._record(reply, text)

    def _record(self, reply: dict[str, Any], text: str) -> None:
        self.processed += 1
        if not reply["ok"]:
            self.failed += 1
            log.warning("fifo %s: %r refused: %s", self.path, text, reply["error"])
        entry = {"line": text, **reply}
        self.recent.append(entry)
        if self.reply_path is not None:
            self._write_reply(entry)

    def _write_reply(self, entry: dict[str, Any]) -> None:
        """Append a JSON line to the reply file; a reply pipe without a reader is skipped, never waited for."""
        assert self.reply_path is not None
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        try:
            fd = os.open(self.reply_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o660)
        except OSError as err:  # ENXIO: a pipe nobody reads
            if err.errno != errno.ENXIO:
                log.warning("fifo reply file %s: %s", self.reply_path, err)
            return
        try:
            os.write(fd, line)
        except BlockingIOError:
            log.warning("fifo reply pipe %s is full; a reply was dropped", self.reply_path)
        finally:
            os.close(fd)
