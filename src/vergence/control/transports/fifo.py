"""Commands as `<type> <value>` lines written into a named pipe: `echo "zoom 2" > $XDG_RUNTIME_DIR/vergence/commands`
(PiStreamer's way).

Whoever can write the pipe commands the cameras, so the pipe must be vergence's own: it is made by vergence (0660, less
the umask: the service user and its group write), by default in a directory only that user reaches, and refused when
another account owns it (another user who made it first in a shared directory such as /tmp would have their commands run).
One that others could write is made anew. Nothing here follows a symbolic link: the pipe and the reply file are opened
with O_NOFOLLOW, the pipe's write end through the descriptor already checked, and a reply file must be vergence's too.

The pipe is read on the event loop without ever blocking: opened non-blocking, watched with `add_reader`. vergence also
holds a write end open itself, so the pipe never reports end-of-file when writers come and go (no busy loop) and a writer
never blocks for want of a reader. Replies go to the log and, when `reply_path` is set, as JSON lines to that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import pwd
import stat
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vergence.config import FifoSettings
from vergence.control.commander import Commander, reply
from vergence.control.pistreamer import KILL
from vergence.errors import ConfigError

if TYPE_CHECKING:
    from vergence.context import Parts

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 4096
READ_BYTES = 65536
RECENT_REPLIES = 20


class FifoInbox:
    """Reads command lines from the pipe and runs them in order through the Commander."""

    def __init__(
        self,
        settings: FifoSettings,
        commander: Commander,
        shutdown: Callable[[], None] = lambda: None,
        name: str = "fifo",
    ) -> None:
        self.name = name
        self.path = (settings.path or default_path(os.environ)).expanduser()
        self.reply_path = settings.reply_path.expanduser() if settings.reply_path else None
        self._commander = commander
        self._shutdown = shutdown  # what `kill` (PiStreamer's line) calls: whoever writes the pipe may stop the server
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
        self._reply_refused: str | None = None  # why the reply file was last refused (said once)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self._read_fd, self._write_fd = open_pipe(self.path)
        except OSError as err:
            raise ConfigError(f"fifo.path {self.path}: {err.strerror or err}") from err
        self._loop.add_reader(self._read_fd, self._readable)  # type: ignore[arg-type]
        self._worker = self._loop.create_task(self._run(), name="fifo-inbox")
        log.info("reading commands from the pipe %s", self.path)

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
            if text.lower() == KILL:
                log.info("fifo %s: kill: stopping the server", self.path)
                self._record(reply(None, KILL, {"stopping": True}), text)
                self._shutdown()
                continue
            self._record(await self._commander.handle(text, source=f"fifo {self.path}"), text)

    def _record(self, reply: dict[str, Any], text: str) -> None:
        self.processed += 1
        if not reply["ok"]:
            self.failed += 1
            log.warning("fifo %s: %r refused: %s", self.path, text, reply["error"])
        entry = {"line": text, **reply}
        # Kept without the result: a `status` result holds this list, so each kept one would hold every one before it
        # and the replies double in size with each `status` read through the pipe.
        self.recent.append({key: value for key, value in entry.items() if key != "result"})
        if self.reply_path is not None:
            self._write_reply(entry)

    def _write_reply(self, entry: dict[str, Any]) -> None:
        """Append a JSON line to the reply file; a reply pipe without a reader is skipped, never waited for."""
        assert self.reply_path is not None
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW
        try:
            fd = os.open(self.reply_path, flags, 0o660)
        except OSError as err:  # ENXIO: a pipe nobody reads; ELOOP: a symbolic link
            if err.errno != errno.ENXIO:
                self._refuse_reply_file(err.strerror or str(err))
            return
        try:
            info = os.fstat(fd)
            if info.st_uid != os.geteuid():
                self._refuse_reply_file(f"it belongs to {_account(info.st_uid)}, not to this server's account")
                return
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
                self._refuse_reply_file("it is neither a file nor a pipe")
                return
            self._reply_refused = None
            os.write(fd, line)
        except BlockingIOError:
            log.warning("fifo reply pipe %s is full; a reply was dropped", self.reply_path)
        finally:
            os.close(fd)

    def _refuse_reply_file(self, why: str) -> None:
        if why != self._reply_refused:  # once per reason, not once per reply
            log.warning("fifo reply file %s: %s; replies are not written there", self.reply_path, why)
            self._reply_refused = why


def default_path(environ: os._Environ[str] | dict[str, str]) -> Path:
    """Where the pipe goes unless `[fifo] path` says: the service's runtime directory under systemd
    (RuntimeDirectory=), else the user's ($XDG_RUNTIME_DIR, 0700), else the user's state directory; never a directory
    other accounts can write."""
    if environ.get("RUNTIME_DIRECTORY"):
        return Path(environ["RUNTIME_DIRECTORY"].split(":")[0]) / "commands"
    if environ.get("XDG_RUNTIME_DIR"):
        return Path(environ["XDG_RUNTIME_DIR"]) / "vergence" / "commands"
    return Path("~/.local/state/vergence/commands").expanduser()


def open_pipe(path: Path) -> tuple[int, int]:
    """Make the pipe when missing and open its read and write ends; raise OSError for a pipe that is not this account's.

    A pipe of ours that others may write is replaced: someone may hold it open for writing already, and a chmod would
    not close their descriptor.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for _ in range(2):
        with contextlib.suppress(FileExistsError):
            os.mkfifo(path, 0o660)
        read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)  # ELOOP for a symbolic link
        try:
            info = os.fstat(read_fd)
            if not stat.S_ISFIFO(info.st_mode):
                raise OSError(errno.EEXIST, f"{path} exists and is not a named pipe")
            if info.st_uid != os.geteuid():
                raise OSError(
                    errno.EPERM,
                    f"the pipe belongs to {_account(info.st_uid)}, not to this server's account: whoever made it could "
                    "feed it commands. Remove it (vergence makes its own) or choose a path in a directory only this "
                    "account can write",
                )
            if not info.st_mode & stat.S_IWOTH:
                # The write end through the descriptor just checked: the path may have been swapped meanwhile.
                return read_fd, os.open(f"/proc/self/fd/{read_fd}", os.O_WRONLY | os.O_NONBLOCK)
        except BaseException:
            os.close(read_fd)
            raise
        os.close(read_fd)
        log.warning("fifo %s could be written by any account (mode %04o): made a new one", path, info.st_mode & 0o7777)
        os.unlink(path)
    raise OSError(errno.EPERM, f"{path} stays writable by any account")


def _account(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def create_service(parts: Parts) -> FifoInbox:
    """The `[fifo]` service."""
    return FifoInbox(parts.settings.fifo, parts.commander, parts.shutdown)


def create_pistreamer_service(parts: Parts) -> FifoInbox:
    """PiStreamer's pipe (`[compat.pistreamer] fifo`), read like `[fifo]`'s."""
    compat = parts.settings.compat.pistreamer
    assert compat.fifo is not None
    return FifoInbox(FifoSettings(enabled=True, path=compat.fifo), parts.commander, parts.shutdown, "pistreamer fifo")
