"""A fake of picamera2's CompletedRequest: one captured frame, held until released."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class CompletedRequest:
    """A frame's buffers and metadata; `release()` hands the buffers back to the camera (exactly once)."""

    def __init__(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any], on_release: Callable[[], None]) -> None:
        self._arrays = arrays
        self._metadata = metadata
        self._on_release: Callable[[], None] | None = on_release

    def make_array(self, name: str) -> np.ndarray:
        """Return a copy of stream `name` ("main") as a numpy array: YUV420 is (h*3/2, stride)."""
        self._check_held()
        if name not in self._arrays:
            raise KeyError(f"stream {name!r} is not configured")
        return self._arrays[name].copy()

    def get_metadata(self) -> dict[str, Any]:
        """Return the frame's metadata (SensorTimestamp in ns, FrameDuration in µs, the applied ScalerCrop, …)."""
        self._check_held()
        return dict(self._metadata)

    def release(self) -> None:
        """Give the buffers back; a second release is a bug in the caller, as with libcamera's reference count."""
        if self._on_release is None:
            raise RuntimeError("CompletedRequest released twice")
        on_release, self._on_release = self._on_release, None
        on_release()

    def _check_held(self) -> None:
        if self._on_release is None:
            raise RuntimeError("CompletedRequest used after release()")
