"""EXIF for stills: capture time, camera make and model, GPS position; built as bytes and put into a JPEG (pure code)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Position:
    """Where the camera was, as a `gps` command gave it."""

    lat: float
    lon: float
    alt_m: float | None = None
    time_ns: int = 0  # when it was given (wall clock)
