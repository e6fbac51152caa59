"""How the HTTP API refuses a request: the error reply every command transport sends (`ok`, `code`, `error`), with the
status its code has (`HTTP_STATUS`), and `detail` as FastAPI clients read it."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from vergence.errors import VergenceError, http_status


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
    first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"] if part != "body")
    error = f"{where}: {first['msg']}" if where else str(first["msg"])
    body = {"ok": False, "command": None, "code": "invalid", "error": error, "detail": detail}
    return JSONResponse(body, status_code=422)


async def refuse_error(request: Request, exc: Exception) -> JSONResponse:
    """Answer a route that raised a VergenceError (a stream, camera or output that does not exist…) as a command
    transport would, with the status of its code."""
    assert isinstance(exc, VergenceError)
    body = {"ok": False, "command": None, "code": exc.code, "error": str(exc), "detail": str(exc)}
    return JSONResponse(body, status_code=http_status(exc.code))


def _printable(value: Any) -> str | int:
    """An int as it is, anything else as UTF-8-safe text (a lone surrogate becomes `\\udcff`)."""
    if isinstance(value, int):
        return value
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")
