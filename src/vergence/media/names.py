"""The one rule for names of media files (recordings, clips, photos), shared by what creates them (the `record`, `clip`
and `photo` commands) and what lists, serves and deletes them (`/api/recordings`): whatever can be created can be
listed and deleted, and no name reaches outside the media directory. Pure: no I/O.

A name is letters, digits, `_`, `.` and `-`, and starts with a letter, digit or `_`: never hidden (a leading dot, which
includes `.` and `..`), never an option to a shell tool (a leading dash), never a path (no separator).
"""

from __future__ import annotations

import re

#: Longest name a command may give (`record flight-3`); the file adds the stream id, a time stamp and an extension.
NAME_MAX_CHARS = 80
#: Longest file name, extension included: what every common file system takes (255 bytes; the characters are ASCII).
FILE_NAME_MAX_CHARS = 255
EXTENSIONS = (".mp4", ".mcap", ".jpg")

_FIRST, _REST = "A-Za-z0-9_", "A-Za-z0-9_.-"
#: A name a command may give, as a regular expression (for the JSON schema of the commands).
NAME_PATTERN = rf"^[{_FIRST}][{_REST}]{{0,{NAME_MAX_CHARS - 1}}}$"
_STEM = re.compile(rf"[{_FIRST}][{_REST}]*")
_FILE_NAME = re.compile(rf"(?P<stem>[{_FIRST}][{_REST}]*)\.(?:mp4|mcap|jpg)")
_RULE = "letters, digits, _ . -, starting with a letter, digit or _"


class MediaNameError(ValueError):
    """A name that is not a media name: hidden, a path, other characters or extension, too long."""


def check_name(name: str) -> str:
    """Return `name` when a command may call a recording, clip or photo so; MediaNameError saying why not."""
    _check_stem(name, NAME_MAX_CHARS, "name")
    return name


def media_file_name(stem: str, extension: str) -> str:
    """Return `<stem><extension>` (`.mp4`, `.mcap` or `.jpg`), a media file name; MediaNameError when it would not be
    one."""
    if extension not in EXTENSIONS:
        raise MediaNameError(f"{extension!r} is not a media file extension ({', '.join(EXTENSIONS)})")
    _check_stem(stem, FILE_NAME_MAX_CHARS - len(extension), "file name")
    return stem + extension


def is_media_file_name(name: str) -> bool:
    """Whether `name` is a media file name: a name by the rule, then `.mp4`, `.mcap` or `.jpg`, 255 characters at
    most."""
    return len(name) <= FILE_NAME_MAX_CHARS and _FILE_NAME.fullmatch(name) is not None


def check_media_file_name(name: str) -> str:
    """Return `name` when it is a media file name; MediaNameError saying why not."""
    if not is_media_file_name(name):
        raise MediaNameError(
            f"{name[:80]!r} is not a media file name ({_RULE}; .mp4, .mcap or .jpg; at most {FILE_NAME_MAX_CHARS} characters)"
        )
    return name


def _check_stem(stem: str, max_chars: int, what: str) -> None:
    if not stem:
        raise MediaNameError(f"a {what} cannot be empty")
    if len(stem) > max_chars:
        raise MediaNameError(f"{stem[:80]!r}… is too long for a {what} (at most {max_chars} characters)")
    if stem[0] in ".-":
        raise MediaNameError(f"{stem!r} is not a media {what}: it may not start with {stem[0]!r} ({_RULE})")
    if _STEM.fullmatch(stem) is None:
        raise MediaNameError(f"{stem[:80]!r} is not a media {what} ({_RULE})")
