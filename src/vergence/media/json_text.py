"""JSON text as the control transports accept it: RFC 8259 numbers, Unicode strings and a bounded depth (I-JSON, RFC 7493).

Python's `json.loads` takes `NaN`, `Infinity`, `1e999` (infinity), lone surrogates (`"\\udcff"`) and nesting as deep as the
stack allows. Each is harmless until it is echoed (a ping's `t`, a command's `id`) or kept (a player report): then a reply
is no longer JSON, or the encoder fails far from the input. They are refused here, where the text is read.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 32  # commands are flat and plugin options shallow; deeper is an attack on the recursion limit
_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(text: str | bytes) -> Any:
    """Decode JSON text; ValueError (json.JSONDecodeError for bad syntax) says what is wrong with it."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    _check(value)
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range for a number")
    return number


def _check(value: Any) -> None:
    """Walk the decoded value without recursion: every container within MAX_DEPTH, every string valid Unicode."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key)
                    pending.append((child, depth + 1))
            else:
                pending.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    if _SURROGATE.search(text):
        raise ValueError("a string holds a lone surrogate (\\ud800 … \\udfff): not Unicode text")
