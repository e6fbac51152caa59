"""The Source interface and the registry of source backends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from vergence.config import CameraSettings
from vergence.errors import ConfigError
from vergence.media.frame import Frame


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What a source delivers."""

    width: int
    height: int
    fps: float


class Source(ABC):
    """A producer of Frames, read from one thread.

    `read()` blocks until the next frame and raises `SourceEnded` when there are no more (or after `close()`), `SourceError`
    when capture fails. `close()` may be called from any thread, any number of times, and unblocks a pending `read()`.
    """

    kind: ClassVar[str]

    def __init__(self, camera: CameraSettings) -> None:
        self.camera = camera

    @abstractmethod
    def open(self) -> SourceInfo:
        """Start capturing and return what will be delivered."""

    @abstractmethod
    def read(self) -> Frame:
        """Return the next frame."""

    @abstractmethod
    def close(self) -> None:
        """Stop capturing and release the device."""


_BACKENDS: dict[str, type[Source]] = {}


def register(kind: str) -> Callable[[type[Source]], type[Source]]:
    """Register a Source class under a name usable as `source = "<name>"` in the config."""

    def decorate(cls: type[Source]) -> type[Source]:
        cls.kind = kind
        _BACKENDS[kind] = cls
        return cls

    return decorate


def backend_for(camera: CameraSettings) -> type[Source]:
    """Return the Source class for a camera: a registered name, else PyAV for a path, URL or device."""
    _load_builtin_backends()
    if camera.source in _BACKENDS:
        return _BACKENDS[camera.source]
    if "av" not in _BACKENDS:
        raise ConfigError(f"unknown source {camera.source!r}; known: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS["av"]


def create_source(camera: CameraSettings) -> Source:
    """Build the Source a camera's settings ask for."""
    return backend_for(camera)(camera)


def _load_builtin_backends() -> None:
    from vergence.sources import av, testpattern  # noqa: F401  (registration side effect)
