"""Cheap counters for /api/stats and /metrics: windowed means and rates, latency histograms, and the Prometheus text
format they are scraped in. Each is written by one thread and read by another."""

from __future__ import annotations

import asyncio
import math
import os
import re
import resource
import threading
import time
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from functools import cache
from itertools import accumulate
from typing import Literal


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


# Per-frame stage times run from tens of microseconds (a crop) to a frame interval and beyond (a stalled capture); the
# 1-2.5-5 steps resolve both ends, and 1 s collects what no healthy frame takes.
LATENCY_BUCKETS_MS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A histogram as read at one moment: cumulative counts per upper bound (the last one is +Inf) and the sum."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return self.cumulative[-1]

    def scaled(self, factor: float) -> HistogramSnapshot:
        """The same counts in another unit: bounds and sum times `factor` (ms → s for /metrics: 0.001)."""
        bounds = tuple(round(bound * factor, 12) for bound in self.bounds)  # 0.0001, not 0.00010000000000000002
        return HistogramSnapshot(bounds, self.cumulative, self.sum * factor)


class Histogram:
    """Counts of observations per fixed bucket, cheap enough to observe every frame of every stage: a bisect and an add.

    No lock: each histogram has one writer thread (the capture, encoder or event-loop thread that times its stage), so no
    increment can be lost, and a reader copies the bucket list in one step under the GIL, so the buckets it sees agree
    with each other. Only the sum may miss the one observation being recorded during that copy.
    """

    __slots__ = ("bounds", "_counts", "_sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_MS) -> None:
        if not bounds or any(upper <= lower for lower, upper in zip(bounds, bounds[1:], strict=False)):
            raise ValueError(f"bucket bounds must be strictly increasing, got {bounds}")
        self.bounds = tuple(float(bound) for bound in bounds)
        self._counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last bucket is +Inf
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count `value` in the first bucket whose upper bound is at least `value`."""
        self._counts[bisect_left(self.bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> HistogramSnapshot:
        """Return the cumulative counts and the sum (the +Inf bucket equals the count by construction)."""
        counts = list(self._counts)
        return HistogramSnapshot(self.bounds, tuple(accumulate(counts)), self._sum)


class TimingMs(WindowedMean):
    """A per-frame duration in ms: its windowed mean for /api/stats and its histogram for /metrics."""

    def __init__(self, window_s: float = 1.0) -> None:
        super().__init__(window_s)
        self.histogram = Histogram()

    def add(self, value: float) -> None:
        super().add(value)
        self.histogram.observe(value)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MetricType = Literal["counter", "gauge", "histogram"]
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(slots=True)
class _Family:
    type: MetricType
    help: str
    lines: list[str] = field(default_factory=list)


class Exposition:
    """One scrape's metric families, rendered in the Prometheus text exposition format 0.0.4.

    Built fresh for every scrape from the counters the server keeps anyway, so nothing is registered or updated twice.
    """

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def counter(self, name: str, help: str, value: float, **labels: str) -> None:
        """Add a sample of a counter (a total that only grows; its name should end in `_total`)."""
        self._family(name, "counter", help).lines.append(_sample(name, labels, value))

    def gauge(self, name: str, help: str, value: float, **labels: str) -> None:
        """Add a sample of a gauge (a value that goes up and down)."""
        self._family(name, "gauge", help).lines.append(_sample(name, labels, value))

    def histogram(self, name: str, help: str, snapshot: HistogramSnapshot, **labels: str) -> None:
        """Add one labelled histogram: its cumulative `_bucket` series, `_sum` and `_count`."""
        if "le" in labels:
            raise ValueError(f"{name}: `le` is the bucket label of a histogram")
        lines = self._family(name, "histogram", help).lines
        text = _label_text(name, labels)  # once for all its lines: a scrape writes mostly bucket lines
        prefix = f"{text}," if text else ""
        for le, count in zip(_le_values(snapshot.bounds), snapshot.cumulative, strict=True):
            lines.append(f'{name}_bucket{{{prefix}le="{le}"}} {count}')
        lines.append(_line(f"{name}_sum", text, snapshot.sum))
        lines.append(_line(f"{name}_count", text, snapshot.count))

    def _family(self, name: str, type: MetricType, help: str) -> _Family:
        family = self._families.get(name)
        if family is None:
            if not _METRIC_NAME.fullmatch(name):
                raise ValueError(f"invalid metric name {name!r}")
            family = self._families[name] = _Family(type, help)
        elif family.type != type:
            raise ValueError(f"{name} is a {family.type}, not a {type}")
        return family

    def render(self) -> str:
        """The text format: HELP and TYPE once per family, then its samples, one per line."""
        lines: list[str] = []
        for name, family in self._families.items():
            lines.append(f"# HELP {name} {escape_help(family.help)}")
            lines.append(f"# TYPE {name} {family.type}")
            lines.extend(family.lines)
        return "".join(f"{line}\n" for line in lines)


def escape_label_value(value: str) -> str:
    """Escape a label value as the text format requires: backslash, double quote and line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """Escape HELP text: backslash and line feed."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _sample(name: str, labels: dict[str, str], value: float) -> str:
    return _line(name, _label_text(name, labels), value)


def _line(name: str, label_text: str, value: float) -> str:
    return f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}"


def _label_text(name: str, labels: dict[str, str]) -> str:
    """`a="x",b="y"`: checked names, escaped values."""
    for label in labels:
        if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
            raise ValueError(f"{name}: invalid label name {label!r}")
    return ",".join(f'{label}="{escape_label_value(str(text))}"' for label, text in labels.items())


@cache
def _le_values(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The `le` label values of a histogram's buckets, +Inf last (a few bucket layouts exist: cached)."""
    return (*(_number(bound) for bound in bounds), "+Inf")


def _number(value: float) -> str:
    """A sample value or bucket bound: integers without a fraction, +Inf / -Inf / NaN as Prometheus spells them."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int):  # bool too: True is 1
        return str(int(value))
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


# Worker threads of the event loop's default executor (asyncio_N, or uvloop_N under uvloop): started on demand up to
# min(32, cpus + 4) and then kept, so they are counted apart from the threads vergence starts and stops itself.
_POOL_PREFIXES = ("asyncio_", "uvloop_", "ThreadPoolExecutor-")


def process_stats() -> dict[str, int]:
    """What the server holds: open file descriptors (and the limit), threads, asyncio tasks (a leak shows here first)."""
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        fds = -1
    threads = threading.enumerate()
    pool = sum(1 for thread in threads if thread.name.startswith(_POOL_PREFIXES))
    return {
        "fds": fds,
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "threads": len(threads) - pool,
        "pool_threads": pool,
        "tasks": len(asyncio.all_tasks()),
    }
