"""Cheap counters for /api/stats: windowed means and rates, written by one thread and read by another."""

from __future__ import annotations

import time
from collections import deque


class WindowedMean:
    """Mean of the values recorded in the last `window_s` seconds."""

    def __init__(self, window_s: float = 1.0) -> None:
        self._window_s = window_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=4096)

    def add(self, value: float) -> None:
        self._samples.append((time.monotonic(), value))

    def mean(self) -> float:
        horizon = time.monotonic() - self._window_s
        values = [value for at, value in list(self._samples) if at >= horizon]
        return sum(values) / len(values) if values else 0.0


class WindowedRate:
    """Events and amounts per second over the last `window_s` seconds (fps, bits per second)."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window_s = window_s
        self._events: deque[tuple[float, float]] = deque(maxlen=8192)
        self.total_events = 0
        self.total_amount = 0.0

    def add(self, amount: float = 1.0) -> None:
        self._events.append((time.monotonic(), amount))
        self.total_events += 1
        self.total_amount += amount

    def _recent(self) -> list[tuple[float, float]]:
        horizon = time.monotonic() - self._window_s
        return [event for event in list(self._events) if event[0] >= horizon]

    def per_second(self) -> float:
        """Events per second."""
        recent = self._recent()
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1][0] - recent[0][0], 1e-9)

    def amount_per_second(self) -> float:
        """Amount per second (bytes when the amount is a size)."""
        recent = self._recent()
        if len(recent) < 2:
            return 0.0
        span = max(recent[-1][0] - recent[0][0], 1e-9)
        return sum(amount for _, amount in recent[1:]) / span


class RateLimitedLog:
    """Let a repeated warning through at most once per `interval_s`, counting what was held back."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self._interval_s = interval_s
        self._next_at = 0.0
        self.pending = 0

    def ready(self) -> bool:
        """Count one event; return True when it is time to log (then `pending` holds the events since the last log)."""
        self.pending += 1
        now = time.monotonic()
        if now < self._next_at:
            return False
        self._next_at = now + self._interval_s
        return True

    def take(self) -> int:
        """Return and reset the number of events since the last log."""
        count, self.pending = self.pending, 0
        return count
