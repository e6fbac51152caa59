"""JSON as the control transports read it: what Python's json module takes but JSON cannot carry is refused."""

from __future__ import annotations

import json

import pytest

from vergence.media import json_text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"t": NaN}', "NaN is not a JSON number"),
        ('{"t": -Infinity}', "-Infinity is not a JSON number"),
        ('{"t": 1e999}', "1e999 is out of range"),
        ('{"t": "\\udcff"}', "lone surrogate"),
        ('{"\\ud800": 1}', "lone surrogate"),
        ("[" * 33 + "]" * 33, "nested deeper than 32"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 32"),  # past the recursion limit: no RecursionError
        ('{"t": 1', "Expecting"),
        (b"\xff", "decode"),
    ],
)
def test_what_json_cannot_carry_is_refused(text: str | bytes, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        json_text.loads(text)


def test_json_is_read_as_usual() -> None:
    text = '{"type": "ping", "t": [1, 2.5, -0.0, 1e308, 123456789012345678901234567890], "s": "\\ud83c\\udfa5 é"}'
    assert json_text.loads(text) == json.loads(text)
    assert json_text.loads(b'{"a": null}') == {"a": None}
    assert json_text.loads("[" * 32 + "]" * 32) is not None  # exactly the limit
