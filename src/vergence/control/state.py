"""Persisted control state (PTZ per camera, presets): one JSON file, written atomically, read back at start."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class StateStore:
    """A JSON document on disk. Every save is write-temp + fsync + rename (+ fsync of the directory): after a crash
    the file holds either the old or the new state, never half of one."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()
        self._lock = threading.Lock()

    def load(self) -> dict[str, Any]:
        """Return the saved document, or {} when there is none or it cannot be read (said in the log)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.warning("ignoring unreadable state file %s: %s", self.path, err)
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, document: dict[str, Any]) -> None:
        """Replace the saved document atomically."""
        data = json.dumps(document, indent=2, sort_keys=True).encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temp, self.path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
