"""Cross-origin use of the API by the pages of `[auth] allowed_origins`: a WHEP player on another site, say.

A browser asks first (a preflight: `OPTIONS` with `Access-Control-Request-Method`) before a request with an
`Authorization` header, an SDP body or a method other than GET/POST; it carries no credentials, so it is answered here,
ahead of authentication. Then the real request goes through authentication as any other, and its answer (a refusal
too) says which origin may read it and that the page may read `Location` (a WHEP session's URL). Other origins get
nothing from here: the browser then keeps their pages from reading the answers, and the Origin check
(`Authenticator.origin_refused`) keeps them from changing anything. Cookies are not offered across origins
(`Access-Control-Allow-Credentials` is never sent): such a page proves itself with a token.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_PREFIX = "/api/"
ALLOW_METHODS = "GET, POST, DELETE, PATCH, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, If-Match"
EXPOSE_HEADERS = "Location, Link, ETag"
PREFLIGHT_MAX_AGE_S = 600


class CorsMiddleware:
    """Answer the preflights of allowed origins' pages and mark the API's answers to them as readable."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str]) -> None:
        self.app = app
        self._origins = {origin.lower() for origin in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX) or not self._origins:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or origin.lower() not in self._origins:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await send({"type": "http.response.start", "status": 204, "headers": _preflight_headers(origin)})
            await send({"type": "http.response.body", "body": b""})
            return

        async def readable(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers["Access-Control-Allow-Origin"] = origin
                response_headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
                response_headers.append("Vary", "Origin")
            await send(message)

        await self.app(scope, receive, readable)


def _preflight_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", ALLOW_METHODS.encode()),
        (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
        (b"access-control-max-age", str(PREFLIGHT_MAX_AGE_S).encode()),
        (b"vary", b"Origin"),
    ]
