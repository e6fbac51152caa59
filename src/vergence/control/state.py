"""Persisted control state (PTZ per camera, presets): one JSON file, written atomically, read back at start."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from vergence.files import write_atomically

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
            write_atomically(self.path, data)
