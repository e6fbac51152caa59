"""The small error tree every vergence error belongs to."""

from __future__ import annotations

import re


class VergenceError(Exception):
    """Base of every error vergence raises on purpose."""

    code = "vergence_error"

    def __init__(self, message: str = "", code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(VergenceError):
    """A configuration value is invalid or a needed optional package is missing."""

    code = "config_error"


class SourceError(VergenceError):
    """A source failed to open or to deliver a frame."""

    code = "source_error"


class SourceEnded(SourceError):
    """A source has no more frames (end of a live stream, device gone)."""

    code = "source_ended"


class EncoderError(VergenceError):
    """An encoder failed to open or to encode."""

    code = "encoder_error"


class OutputError(VergenceError):
    """An output could not deliver."""

    code = "output_error"


class CommandError(VergenceError):
    """A command was unknown or invalid."""

    code = "command_error"


_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """Hide the user:password part of every URL in `text`."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)
