"""Commands from an SQLite table, in PiStreamer's layout: another program inserts rows, vergence runs them oldest first.

The table (`commandmodel` by default, as PiStreamer's peewee model names it):

    id TEXT PRIMARY KEY, created_at DATETIME, updated_at DATETIME, command_type TEXT, command_value TEXT NULL,
    command_status TEXT ('pending' → 'completed' | 'failed'), meta_data TEXT NULL (the error, or the result as JSON)

Every database call runs off the event loop; rows finished longer ago than `keep_s` are deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from vergence.config import InboxSettings
from vergence.control.commander import Commander
from vergence.control.pistreamer import KILL
from vergence.errors import ConfigError

if TYPE_CHECKING:
    from vergence.context import Parts

log = logging.getLogger(__name__)

PENDING, COMPLETED, FAILED = "pending", "completed", "failed"
BATCH = 32  # rows taken per look; the rest wait for the next one
PURGE_INTERVAL_S = 60.0
META_MAX_CHARS = 4000  # an error's text is cut to this; a result is stored whole (JSON cut short is no JSON)


def create_table(connection: sqlite3.Connection, table: str) -> None:
    """Create the inbox table (PiStreamer's columns) and its index if they do not exist."""
    connection.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "id TEXT PRIMARY KEY NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, "
        "command_type TEXT NOT NULL, command_value TEXT, command_status TEXT NOT NULL, meta_data TEXT)"
    )
    connection.execute(f"CREATE INDEX IF NOT EXISTS {table}_command_status ON {table} (command_status)")
    connection.commit()


def _now() -> str:
    return datetime.now().isoformat(sep=" ")  # peewee's DateTimeField text form


class SqliteInbox:
    """Polls the table for pending rows and runs them through the Commander, one at a time, oldest first."""

    name = "sqlite inbox"

    def __init__(
        self, settings: InboxSettings, commander: Commander, shutdown: Callable[[], None] = lambda: None
    ) -> None:
        self._shutdown = shutdown  # what `kill` calls: whoever writes the database may stop the server
        self.settings = settings
        self.path = settings.path.expanduser()
        self.table = settings.table
        self._commander = commander
        self._connection: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.processed = 0
        self.failed = 0
        self.purged = 0
        self.last_error: str | None = None

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._open)
        except (OSError, sqlite3.Error) as err:
            raise ConfigError(f"inbox.path {self.path}: {err}") from err
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sqlite-inbox")
        log.info("reading commands from %s (table %s)", self.path, self.table)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        connection, self._connection = self._connection, None
        if connection is not None:
            await asyncio.to_thread(connection.close)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "table": self.table,
            "processed": self.processed,
            "failed": self.failed,
            "purged": self.purged,
            "last_error": self.last_error,
        }

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread off: every call is made from one to_thread at a time, never concurrently.
        connection = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
        create_table(connection, self.table)
        self._connection = connection

    async def _run(self) -> None:
        next_purge = 0.0
        while True:
            full = False  # a whole batch was taken, so more may be waiting: look again at once
            try:
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + PURGE_INTERVAL_S
                    self.purged += await asyncio.to_thread(self._purge)
                rows = await asyncio.to_thread(self._pending)
                for row_id, kind, value in rows:
                    await self._process(row_id, kind, value)
                full = len(rows) >= BATCH
                self.last_error = None
            except sqlite3.Error as err:  # a locked or broken database: say so, keep trying
                if str(err) != self.last_error:
                    log.warning("command inbox %s: %s", self.path, err)
                self.last_error = str(err)
            if not full:
                await asyncio.sleep(self.settings.poll_s)  # the poll interval between looks at the table

    async def _process(self, row_id: str, kind: str, value: str | None) -> None:
        if kind.strip().lower() == KILL:  # PiStreamer's end of the daemon: done, then a clean shutdown
            log.info("command inbox row %s: kill: stopping the server", row_id)
            self.processed += 1
            await asyncio.to_thread(self._finish, row_id, COMPLETED, json.dumps({"stopping": True}))
            self._shutdown()
            return
        line = f"{kind} {value}" if value not in (None, "") else kind
        reply = await self._commander.handle(line, source=f"inbox row {row_id}")
        if reply["ok"]:
            # The whole result: JSON cut short is no JSON (a `status` is longer than META_MAX_CHARS).
            status, meta = COMPLETED, json.dumps(reply.get("result"), separators=(",", ":"))
        else:
            status, meta = FAILED, reply["error"][:META_MAX_CHARS]
            self.failed += 1
        self.processed += 1
        await asyncio.to_thread(self._finish, row_id, status, meta)

    def _pending(self) -> list[tuple[str, str, str | None]]:
        assert self._connection is not None
        cursor = self._connection.execute(
            f"SELECT id, command_type, command_value FROM {self.table} WHERE command_status = ? "
            "ORDER BY created_at, rowid LIMIT ?",
            (PENDING, BATCH),
        )
        return [(str(row[0]), str(row[1]), None if row[2] is None else str(row[2])) for row in cursor.fetchall()]

    def _finish(self, row_id: str, status: str, meta: str) -> None:
        assert self._connection is not None
        self._connection.execute(
            f"UPDATE {self.table} SET command_status = ?, meta_data = ?, updated_at = ? WHERE id = ?",
            (status, meta, _now(), row_id),
        )
        self._connection.commit()

    def _purge(self) -> int:
        assert self._connection is not None
        if self.settings.keep_s <= 0:
            return 0
        horizon = (datetime.now() - timedelta(seconds=self.settings.keep_s)).isoformat(sep=" ")
        cursor = self._connection.execute(
            f"DELETE FROM {self.table} WHERE command_status IN (?, ?) AND updated_at < ?", (COMPLETED, FAILED, horizon)
        )
        self._connection.commit()
        return cursor.rowcount


def create_service(parts: Parts) -> SqliteInbox:
    """The `[inbox]` service."""
    return SqliteInbox(parts.settings.inbox, parts.commander, parts.shutdown)
