"""The small error tree every vergence error belongs to."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus


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


class SourceFinished(SourceEnded):
    """A finite source has played to its end and is done (a file with `loop = false`): not a failure, not restarted."""

    code = "source_finished"


class EncoderError(VergenceError):
    """An encoder failed to open or to encode."""

    code = "encoder_error"


class OutputError(VergenceError):
    """An output could not deliver."""

    code = "output_error"


class CommandError(VergenceError):
    """A command cannot be done now (already recording, a file of that name exists, the source cannot flip…).

    Its subclasses and `code=` name other reasons; every transport answers with the code, HTTP with `HTTP_STATUS[code]`.
    """

    code = "conflict"


class InvalidCommand(CommandError):
    """A command or one of its values is invalid: a value out of range, a missing field, a malformed line."""

    code = "invalid"


class NotFound(CommandError):
    """A command names something that does not exist: a stream, an output, a preset, an ROI, a plugin."""

    code = "not_found"


# The stable error codes of command replies, and the HTTP status each gets (docs/protocol.md, "Error codes").
HTTP_STATUS = {
    "bad_request": 400,  # not a command at all: not JSON, not UTF-8, not an object
    "unknown_command": 400,
    "invalid": 422,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "unavailable": 503,
    "low_disk_space": 507,  # a recording refused: less free space than [recording] min_free_mb
    "disk_full": 507,
    "io_error": 500,
    "internal_error": 500,
}


def http_status(code: str) -> int:
    """The HTTP status of an error code (500 for one not in the table: a failure vergence did not foresee)."""
    return HTTP_STATUS.get(code, 500)


_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SECRET_KEYS = {"token", "key", "password", "passphrase", "secret", "streamid", "auth"}
# Any query parameter: its name is compared once decoded, as the server decodes it (`?%74oken=` is `?token=`).
_QUERY_PARAM = re.compile(r"(?P<key>[?&](?P<name>[^=&#\s\"']+)=)(?P<value>[^&#\s\"']+)")
# rtmp://host[:port]/app/<stream key>: the last path segment of an RTMP URL is its secret.
_RTMP_KEY = re.compile(r"(?P<head>rtmps?://[^/\s\"']+/[^/\s\"'?]+/)[^\s\"'?]+", re.I)


def _hide_secret_value(match: re.Match[str]) -> str:
    name = unquote_plus(match["name"]).strip().lower()
    return f"{match['key']}***" if name in _SECRET_KEYS else match[0]


def redact(text: str) -> str:
    """Hide the secrets of every URL in `text`: user:password@, secret query parameters (token=, key=, passphrase=…)
    and an RTMP URL's stream key."""
    text = _CREDENTIALS.sub(r"\g<scheme>***@", text)
    text = _QUERY_PARAM.sub(_hide_secret_value, text)
    return _RTMP_KEY.sub(r"\g<head>***", text)


class RedactingFilter(logging.Filter):
    """A log filter that passes every record with `redact` applied to its message (uvicorn logs each WebSocket's
    path with its query, where a browser's `?token=` travels)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


REDACTING_FILTER = RedactingFilter()


def redact_logs(*loggers: str) -> None:
    """Put the redacting filter on these loggers (idempotent)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if REDACTING_FILTER not in logger.filters:
            logger.addFilter(REDACTING_FILTER)
