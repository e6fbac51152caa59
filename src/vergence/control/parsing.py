"""Read a command from what a transport received: a JSON object, JSON text, or a `<type> [target] <value> [key=value…]` line.

Both spellings give the same validated command, and whatever is wrong gives one `CommandError` with a stable code
(`bad_request`, `unknown_command`, `invalid`), so every transport refuses a bad command in the same words.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError

from vergence.control import pistreamer
from vergence.control.commands import ANY_COMMAND, BY_TYPE, COMMAND_TYPES, AnyCommand
from vergence.errors import CommandError, InvalidCommand
from vergence.media import json_text

# Older names of ours: the type they are.
_ALIASES = {"stream": "output"}
_KEY = re.compile(r"[a-z_][a-z0-9_]*")


def as_object(raw: Any) -> Any:
    """Return JSON text (str or bytes) of an object as a dict, so even a refused command's reply can echo its `id`;
    anything else unchanged, for `parse_command` to parse or to explain what is wrong with it."""
    if isinstance(raw, (str, bytes)) and raw.lstrip()[:1] in ("{", b"{"):
        try:
            decoded = json_text.loads(raw)
        except ValueError:
            return raw
        return decoded if isinstance(decoded, dict) else raw
    return raw


def command_type(raw: Any) -> str | None:
    """The command type a message names, read before it is validated, so that a refusal says which command it refuses
    whatever the spelling: an object's `type`, or a text line's first word (an alias read as the type it stands for);
    None when that is no command type."""
    if isinstance(raw, dict):
        kind = raw.get("type")
    else:
        if isinstance(raw, bytes):
            try:
                raw = raw.decode()
            except UnicodeDecodeError:
                return None
        if not isinstance(raw, str) or raw.lstrip().startswith("{"):
            return None
        words = raw.split(maxsplit=1)
        word = words[0].lower() if words else ""
        kind = _ALIASES.get(word) or pistreamer.command_type(word) or word
    return kind if isinstance(kind, str) and kind in BY_TYPE else None


def parse_command(raw: Any, targets: Mapping[str, Collection[str]] | None = None) -> AnyCommand:
    """Turn a JSON object, JSON text or a text line into a command; raise CommandError saying what is wrong.

    `targets` are the ids a text line's first word may name, by kind (`{"stream": …, "output": …}`: `pause cam1`)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            raise CommandError("a command must be UTF-8 text", code="bad_request") from None
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("{"):
            try:
                raw = json_text.loads(text)
            except ValueError as err:
                raise CommandError(f"invalid JSON: {err}", code="bad_request") from None
        else:
            raw = parse_text(text, targets)
    if not isinstance(raw, dict):
        raise CommandError("a command is a JSON object with a type, or a `<type> <value>` line", code="bad_request")
    return validate(raw)


def validate(fields: dict[str, Any]) -> AnyCommand:
    """Validate a command's fields (its `type` among them)."""
    kind = fields.get("type")
    if not isinstance(kind, str) or kind not in BY_TYPE:  # a list or an object is no type (and not hashable)
        raise CommandError(f"unknown command {kind!r}; commands: {', '.join(COMMAND_TYPES)}", code="unknown_command")
    try:
        return ANY_COMMAND.validate_python(fields)
    except ValidationError as err:
        raise InvalidCommand(describe_validation(err)) from None


def describe_validation(err: ValidationError, union: bool = True) -> str:
    """One line per problem, naming the field (`union`: the error is of the command union, whose first location
    element is the tag, not a field)."""
    parts = []
    for error in err.errors():
        loc = [str(part) for part in error["loc"][1 if union else 0 :]]
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {message}" if loc else message)
    return "; ".join(parts)


def parse_text(line: str, targets: Mapping[str, Collection[str]] | None = None) -> dict[str, Any]:
    """Read `<type> [target] <values…> [key=value…]` into a command's fields (not yet validated).

    The values fill the fields the command's text form names, in order. The first word names the stream (or the output)
    when there is one word more than those, or when it is one of `targets` (the ids the server has): `zoom 2`, `zoom
    cam1 2`, `flip cam1 h`, `pause cam1`, `photo cam1`, `roi cam0 delete door`, `output gcs stop`.
    """
    words = line.split()
    if not words:
        raise InvalidCommand("empty command")
    kind = words[0].lower()
    extras: dict[str, Any] = {}
    values: list[str] = []
    for word in words[1:]:
        key, sep, setting = word.partition("=")
        if sep and _KEY.fullmatch(key):
            extras[key] = setting
        else:
            values.append(word)
    if kind in pistreamer.NAMES:  # PiStreamer's names, on every transport
        value = line.strip()[len(words[0]) :] if kind in pistreamer.JSON_VALUED else " ".join(values)
        theirs = pistreamer.translate(kind, value)
        if theirs is not None:
            return {**theirs, **({} if kind in pistreamer.JSON_VALUED else extras)}
    kind = _ALIASES.get(kind, kind)
    model = BY_TYPE.get(kind)
    if model is None:
        raise CommandError(f"unknown command {kind!r}; commands: {', '.join(COMMAND_TYPES)}", code="unknown_command")
    target = model.target
    known = (targets or {}).get(target or "", ())
    if target is not None and values and (len(values) > len(model.words) or values[0] in known):
        return _read(model, kind, values[1:], {target: values[0], **extras})
    try:
        return _read(model, kind, values, extras)
    except InvalidCommand:
        if target is None or len(values) != 1 or not extras:
            raise
        try:  # `zoom cam0 max=8` where the server's ids are not known: the fields are key=value, the word the target
            return _read(model, kind, values[1:], {target: values[0], **extras})
        except InvalidCommand:
            pass
        raise


def _read(model: type[Any], kind: str, values: list[str], extras: dict[str, Any]) -> dict[str, Any]:
    """The fields the value words give, with the `key=value` ones."""
    try:
        return {"type": kind, **model.from_words(values), **extras}
    except ValueError as err:
        raise InvalidCommand(str(err)) from None
