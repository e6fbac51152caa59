"""A fake of the `libcamera` Python bindings: just what the fake picamera2 and the vergence backend use."""

from __future__ import annotations

from . import controls

__all__ = ["Transform", "controls"]


class Transform:
    """An image transform, as `libcamera.Transform(hflip=1, vflip=0, transpose=0)` or `Transform(rotation=180)`."""

    def __init__(self, hflip: int = 0, vflip: int = 0, transpose: int = 0, rotation: int = 0) -> None:
        if rotation not in (0, 180):
            raise ValueError(f"rotation {rotation} not supported (only 0 and 180 need no transpose)")
        half_turn = rotation == 180
        self.hflip = int(bool(hflip) != half_turn)
        self.vflip = int(bool(vflip) != half_turn)
        self.transpose = int(bool(transpose))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Transform):
            return NotImplemented
        return (self.hflip, self.vflip, self.transpose) == (other.hflip, other.vflip, other.transpose)

    def __hash__(self) -> int:
        return hash((self.hflip, self.vflip, self.transpose))

    def __repr__(self) -> str:
        return f"<libcamera.Transform 'hflip={self.hflip} vflip={self.vflip} transpose={self.transpose}'>"
