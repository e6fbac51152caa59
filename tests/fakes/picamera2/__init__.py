"""A fake `picamera2` package for tests (never installed): see `fake` for choosing sensors and reading counters."""

from . import fake
from .picamera2 import Picamera2
from .request import CompletedRequest

__all__ = ["CompletedRequest", "Picamera2", "fake"]
