"""How the HTTP API refuses a request: `detail` is one sentence saying what is wrong, or one entry per invalid field."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class FieldError(BaseModel):
    """One invalid field: where it is (`["body", "zoom"]`), what is wrong, and pydantic's error type."""

    loc: list[str | int]
    msg: str
    type: str


class Refusal(BaseModel):
    """A refused request."""

    detail: str | list[FieldError]


# The routes that refuse a value they cannot apply with a sentence (`zoom = 9 is outside 1 … 8`) declare it, so the
# schema says what they answer, next to FastAPI's list of field errors.
REFUSED: dict[int | str, dict[str, Any]] = {422: {"model": Refusal, "description": "a value that cannot be applied"}}


async def refuse_invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """Answer a request FastAPI could not validate with 422 and its field errors, without echoing the input.

    FastAPI's own handler echoes each invalid input, and a NaN, an infinity or a lone surrogate there (all of which its
    JSON parser lets through) made the JSON encoder fail: a 500 for a bad request.
    """
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": [_printable(part) for part in error["loc"]], "msg": _printable(error["msg"]), "type": error["type"]}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _printable(value: Any) -> str | int:
    """An int as it is, anything else as UTF-8-safe text (a lone surrogate becomes `\\udcff`)."""
    if isinstance(value, int):
        return value
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")
