"""A write-only file for FFmpeg's muxers (PyAV) that keeps what they write, each write apart, until it is taken."""

from __future__ import annotations

import io


class Writes(io.RawIOBase):
    """The RTP muxer writes exactly one packet per write (kept apart); the MP4 muxer a fragment in several (joined)."""

    def __init__(self) -> None:
        self._writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def,override]
        self._writes.append(bytes(data))
        return len(data)

    def take(self) -> list[bytes]:
        """Every write since the last take, in order."""
        writes, self._writes = self._writes, []
        return writes
