"""The page's session cookie: names its holder until it expires, signed so that only the server that made it takes it.

A browser that signed in (a `?token=` link, the basic-auth prompt) keeps this cookie so that its WebSockets, `<img>` and
`<video>` requests carry who it is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from functools import cached_property
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

from starlette.datastructures import Headers
from starlette.types import Scope

log = logging.getLogger(__name__)

COOKIE = "vergence_session"
SERVER_ID_FILE = "server-id"
SERVER_ID_BYTES = 32


class Sessions:
    """Makes and checks session cookies, each bound to this server.

    The signing key is derived from the configured secrets (change a token or password and its sessions end) and from a
    random server id made once and kept under the state directory (`load_server_id`); the signed text holds the
    cookie's name, which holds the port (`cookie_name`). So a cookie made by one server is refused by another that has
    the same tokens and users: on another port of this machine, or on another machine on any port (a fleet of robots
    sharing one config). A restart of the same server, same state directory and port, keeps every session. A random
    id per process would also separate servers, but would sign everyone out at each restart; the listening address is
    no identity either (a server on 0.0.0.0 is reached by several addresses, and two robots share 127.0.0.1).
    """

    def __init__(self, credentials: list[str], days: float, server_id: Callable[[], bytes]) -> None:
        self._credentials = credentials
        self._days = days
        self._server_id = server_id  # called once, at the first cookie made or checked

    @cached_property
    def _key(self) -> bytes:
        return hmac.new(
            self._server_id(), "\0".join(["vergence-session", *self._credentials]).encode(), "sha256"
        ).digest()

    def cookie(self, holder: str, secure: bool, name: str = COOKIE) -> str:
        """A Set-Cookie value of cookie `name` naming `holder` until `days` from now."""
        max_age = int(self._days * 86_400)
        payload = f"{holder}.{int(time.time()) + max_age}"
        value = base64.urlsafe_b64encode(f"{payload}.{self._sign(name, payload)}".encode()).decode().rstrip("=")
        flags = "; Secure" if secure else ""
        return f"{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{flags}"

    def holder(self, value: str, name: str = COOKIE) -> str | None:
        """Who cookie `name` of this `value` names, or None when it is forged, expired, or made by another server."""
        try:
            text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            holder, expires, signature = text.rsplit(".", 2)
            expires_at = int(expires)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if not hmac.compare_digest(self._sign(name, f"{holder}.{expires}"), signature) or expires_at < time.time():
            return None
        return holder

    def _sign(self, name: str, payload: str) -> str:
        return hmac.new(self._key, f"{name}\0{payload}".encode(), hashlib.sha256).hexdigest()[:32]


def load_server_id(path: Path) -> bytes:
    """This server's id, from `path`, made (random, mode 0600) when missing; a per-process one when it cannot be kept."""
    path = path.expanduser()
    try:
        if not path.exists():
            _create_once(path, secrets.token_bytes(SERVER_ID_BYTES))
        server_id = path.read_bytes()
        if len(server_id) != SERVER_ID_BYTES:
            raise OSError(f"{path} holds {len(server_id)} bytes, not {SERVER_ID_BYTES}")
    except OSError as err:
        log.warning("server id: cannot keep one in %s (%s): sign-ins end when this process does", path, err)
        return secrets.token_bytes(SERVER_ID_BYTES)
    return server_id


def _create_once(path: Path, data: bytes) -> None:
    """Write `path` whole unless it exists: of two servers starting at once, both then read the one that won."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # made 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temp, path)  # fails if it exists, unlike a rename
        except FileExistsError:
            pass
    finally:
        os.unlink(temp)


def cookie_name(scope: Scope) -> str:
    """The session cookie's name at the server that got this request. Browsers keep cookies per host, not per port: two
    servers on one machine (a robot's two cameras, say) would otherwise overwrite each other's session at every sign-in."""
    server = scope.get("server")
    return f"{COOKIE}_{server[1]}" if server and server[1] else COOKIE


def cookie_value(headers: Headers, name: str) -> str | None:
    """The value of cookie `name` in a request's Cookie header, or None (also for junk)."""
    raw = headers.get("cookie")
    if not raw:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(raw)
    except CookieError:
        return None
    morsel = cookies.get(name)
    return morsel.value if morsel is not None else None
