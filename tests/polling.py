"""Waiting for a condition in a test: poll it until a deadline (never a sleep that hopes it is long enough)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(check: Callable[[], T], what: str, deadline_s: float = 15.0) -> T:
    """Return check()'s first truthy value, polling until the deadline; fail saying `what` did not happen."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)  # poll interval of a deadline loop
    raise AssertionError(f"timed out waiting for {what}")
