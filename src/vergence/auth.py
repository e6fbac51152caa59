"""Who is asking and what they may do: credentials → a principal with a role, checked on every HTTP and WebSocket route.

Two roles: a viewer watches (every GET, every WebSocket, WebRTC signalling), an operator also commands (any other
method, and command messages on the control WebSocket or a WebRTC data channel). Credentials: a bearer token
(`Authorization: Bearer`, or `?token=` where a browser cannot set headers), a basic-auth user, or the page's session
cookie, which vergence sets when a browser signs in with either. A request without credentials gets the `anonymous`
role; by default that is operator from this machine (loopback) and viewer from elsewhere until tokens or users are set,
then none. Browsers' cross-site requests are refused by their Origin (WebSockets and any request that changes state).
Secrets never reach a log: principals are named, tokens are compared by their SHA-256 digest. A client whose
credentials keep failing waits longer and longer before they are checked again (login_throttle.py); users' passwords
are best kept as salted scrypt hashes (passwords.py), checked off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import math
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vergence.config import AuthSettings
from vergence.login_throttle import Attempt, LoginThrottle, Throttled
from vergence.passwords import StoredPassword, parse_password, unguessable_like
from vergence.sessions import COOKIE, Sessions, cookie_name, cookie_value

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PREFIXES = ("/static/",)  # the page's own scripts and styles: nothing secret, and the login page uses them


class Role(IntEnum):
    NONE = 0
    VIEWER = 1
    OPERATOR = 2


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: a token's or user's name (or "anonymous") and the role it has."""

    name: str
    role: Role

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role.name.lower()}


ANONYMOUS_NONE = Principal("anonymous", Role.NONE)


class Refused(Exception):
    """A request that may not go on: 401 (who are you?), 403 (not allowed), 429 (wait `retry_after_s` first).

    `logged`: the login throttle has logged it already (or counted it in a line to come).
    """

    def __init__(self, status: int, message: str, retry_after_s: float | None = None, logged: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
        self.logged = logged


def required_role(scope: Scope) -> Role:
    """The role a route needs: viewer to read or watch, operator to change anything.

    A new route is covered without a line here: every method but GET/HEAD/OPTIONS needs an operator unless it is listed.
    WebSockets need a viewer; the control WebSocket checks each command message itself (`may_command`).
    """
    if scope["type"] == "websocket":
        return Role.VIEWER
    method, parts = scope["method"], scope["path"].strip("/").split("/")
    if method in SAFE_METHODS:
        return Role.VIEWER
    # WebRTC signalling is watching: offer to receive a stream (POST), hang up one's own peer (DELETE, by its secret id),
    # trickle ICE to it (PATCH, answered 405: a WHEP client must learn that, not that it lacks a role).
    if parts[:2] == ["api", "webrtc"] and (
        (method == "POST" and len(parts) == 3) or (method in ("DELETE", "PATCH") and len(parts) == 4)
    ):
        return Role.VIEWER
    return Role.OPERATOR


def may_command(principal: Principal | None) -> bool:
    return principal is not None and principal.role >= Role.OPERATOR


def principal_of(scope: Scope) -> Principal:
    """The principal the middleware found for this request (none when the app runs without it)."""
    return scope.get("state", {}).get("principal", ANONYMOUS_NONE)


def client_address_of(scope: Scope) -> str:
    """The address this request comes from, which per-client limits count by: the peer's, or behind a trusted proxy
    the client's that the proxy names (the middleware decides; without it, the peer's)."""
    address = scope.get("state", {}).get("client_address")
    if address is None:
        address = (scope.get("client") or ("", 0))[0]
    return address


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def is_loopback(address: str) -> bool:
    """Whether `address` is a loopback IP address (IPv4-mapped IPv6 included); a name is not."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


# Headers a reverse proxy adds; their presence says the peer address is not the client's.
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "via")


def _forwarded_for(headers: Headers) -> list[str]:
    """The client addresses a proxy chain lists, nearest to the client first (X-Forwarded-For, else Forwarded for=)."""
    listed = ",".join(headers.getlist("x-forwarded-for"))
    if listed:
        return [address.strip() for address in listed.split(",") if address.strip()]
    addresses = []
    for element in ",".join(headers.getlist("forwarded")).split(","):
        for pair in element.split(";"):
            name, _, value = pair.strip().partition("=")
            if name.lower() == "for":
                addresses.append(_host_name(value.strip('"')))  # "[::1]:4711" → "::1", as a Host header's
    return addresses


def _host_name(host_header: str) -> str:
    """`localhost:8000` → `localhost`, `[::1]:8000` → `::1`."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Authenticator:
    """Turns a request's credentials into a Principal, holding off a client whose credentials keep failing; makes and
    checks the page's session cookie. One per server, shared by every door that takes credentials."""

    def __init__(self, settings: AuthSettings, server_id: Callable[[], bytes]) -> None:
        self.settings = settings
        role = {"viewer": Role.VIEWER, "operator": Role.OPERATOR}
        self._tokens = {_digest(t.token.get_secret_value()): Principal(t.name, role[t.role]) for t in settings.tokens}
        self._users = {
            u.name: (parse_password(u.password.get_secret_value()), Principal(u.name, role[u.role]))
            for u in settings.users
        }
        self._named = {principal.name: principal for principal in self._tokens.values()}
        self._named.update({name: principal for name, (_, principal) in self._users.items()})
        for name, (stored, _) in self._users.items():
            if stored.kind == "sha256":
                log.warning(
                    "auth: user %s has an unsalted sha256: password, which a stolen config gives up at once to a "
                    "guesser; replace it with the output of `vergence hash-password` (salted scrypt)",
                    name,
                )
        # An unknown name costs a check of the same kind as a known one: the refusal's timing names no user.
        self._unknown_user = unguessable_like(next(iter(self._users.values()))[0]) if self._users else None
        # scrypt takes ~0.1-0.5 s of a core, and browsers send basic auth with every request: once right, a user's
        # password is remembered as a digest under a key of this process, and checked again against that.
        self._verified: dict[str, bytes] = {}
        self._verified_key = secrets.token_bytes(32)
        self._hashing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vergence-password")
        # The cookie's key comes from the configured secrets: change a token or password and its sessions end.
        credentials = sorted(t.token.get_secret_value() for t in settings.tokens) + sorted(
            f"{u.name}:{u.password.get_secret_value()}" for u in settings.users
        )
        self.sessions = Sessions(credentials, settings.session_days, server_id)
        self.throttle = LoginThrottle(
            settings.login_free_failures,
            settings.login_delay_s,
            settings.login_max_delay_s,
            settings.login_log_interval_s,
        )
        self._origins = {origin.lower() for origin in settings.allowed_origins}
        self._proxies = [ipaddress.ip_network(proxy, strict=False) for proxy in settings.trusted_proxies]

    @property
    def basic(self) -> bool:
        return bool(self._users)

    def anonymous(self, client: str, host_header: str | None) -> Principal:
        """The role of a request without credentials from `client`; `host_header` None for transports without one."""
        mode = self.settings.anonymous
        if mode == "auto":
            if self.settings.has_credentials:
                return ANONYMOUS_NONE
            # Loopback only when the Host is loopback too: a DNS-rebinding page reaches 127.0.0.1 under its own name.
            local = is_loopback(client) and (
                host_header is None or _host_name(host_header) == "localhost" or is_loopback(_host_name(host_header))
            )
            return Principal("anonymous", Role.OPERATOR if local else Role.VIEWER)
        return Principal("anonymous", {"none": Role.NONE, "viewer": Role.VIEWER, "operator": Role.OPERATOR}[mode])

    async def identify(self, scope: Scope, headers: Headers) -> tuple[Principal, str | None]:
        """The request's principal and how it proved itself ("token", "basic", "cookie", or None for anonymous).

        Raises Refused(401) for credentials that are given but wrong: a typo must not silently fall back to anonymous;
        Refused(429) while the client must wait after failing too often, whatever it presents (right credentials
        then would tell a guesser it has found them).
        """
        peer = (scope.get("client") or ("", 0))[0]
        client = self.client_address(peer, headers)
        authorization = headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return self.by_token(value.strip(), client), "token"
        if scheme.lower() == "basic" and value.strip():
            return await self._by_password(value.strip(), client), "basic"
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return self.by_token(query["token"][0], client), "token"
        name = cookie_name(scope)
        cookie = cookie_value(headers, name)
        if cookie is not None:
            # A signed cookie cannot be guessed: it is no login attempt. A stale one (expired, its secret changed,
            # another server's) counts as no credentials: the login asks again.
            principal = self._named.get(self.sessions.holder(cookie, name) or "")
            if principal is not None:
                return principal, "cookie"
        return self.anonymous(*self._client_behind_proxies(peer, headers)), None

    def client_address(self, peer: str, headers: Headers) -> str:
        """Who sent a request: the peer, or behind a trusted proxy the nearest forwarded address that is not one."""
        if not self._trusted(peer):
            return peer
        chain = [peer, *reversed(_forwarded_for(headers))]
        return next((address for address in chain if not self._trusted(address)), chain[-1])

    def _client_behind_proxies(self, peer: str, headers: Headers) -> tuple[str, str | None]:
        """The address and Host to judge an anonymous request by.

        A reverse proxy on this machine makes every request arrive from loopback with a loopback Host: were that taken at
        its word, the whole network would be the loopback operator. So a request that says it was forwarded
        (Forwarded, X-Forwarded-*, X-Real-IP, Via) counts as coming from elsewhere, unless the peer is a trusted proxy,
        whose X-Forwarded-For (or Forwarded for=) names the client: the nearest address that is not a trusted proxy.
        """
        if not any(name in headers for name in PROXY_HEADERS):
            return peer, headers.get("host", "")
        if not self._trusted(peer):
            return "", None  # not loopback, whatever the peer and Host say
        return self.client_address(peer, headers), headers.get("x-forwarded-host") or headers.get("host", "")

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False
        return any(ip in network for network in self._proxies)

    def by_token(self, token: str, client: str) -> Principal:
        """The principal of `token` presented by `client`; Refused(401) for an unknown token, 429 while it must wait."""
        with self._attempt(client) as attempt:
            principal = self._tokens.get(_digest(token))
            if principal is None:
                raise _failed(attempt, "unknown token")
            attempt.succeeded()
            return principal

    async def by_basic(self, value: str, client: str) -> Principal:
        """The principal of basic credentials (base64 `name:password`) from a door whose clients can send nothing else
        (an RTSP URL's `user:password@`): a user's password, or a token as the password under any other name.
        Refused(401) for wrong ones, 429 while the client must wait."""
        return await self._by_password(value, client, token_as_password=True)

    async def _by_password(self, value: str, client: str, token_as_password: bool = False) -> Principal:
        with self._attempt(client) as attempt:
            try:
                name, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise _failed(attempt, "malformed basic credentials") from None
            if token_as_password and name not in self._users:
                principal = self._tokens.get(_digest(password))
                if principal is None:
                    raise _failed(attempt, "unknown token")
                attempt.succeeded()
                return principal
            known = self._users.get(name)
            stored = known[0] if known is not None else self._unknown_user
            if stored is None or not await self._matches(name, password, stored) or known is None:
                raise _failed(attempt, "wrong user name or password")
            attempt.succeeded()
            return known[1]

    async def _matches(self, name: str, given: str, stored: StoredPassword) -> bool:
        """Whether `given` is `stored`: a slow hash on a worker thread (never the event loop), once while it stays right."""
        if not stored.slow:
            return stored.matches(given)
        digest = hmac.new(self._verified_key, given.encode(), hashlib.sha256).digest()
        remembered = self._verified.get(name)
        if remembered is not None and hmac.compare_digest(remembered, digest):
            return True
        if not await asyncio.get_running_loop().run_in_executor(self._hashing, stored.matches, given):
            return False
        if name in self._users:
            self._verified[name] = digest
        return True

    @contextmanager
    def _attempt(self, client: str) -> Iterator[Attempt]:
        try:
            with self.throttle.attempt(client) as attempt:
                yield attempt
        except Throttled as err:
            raise Refused(429, str(err), retry_after_s=err.retry_after_s, logged=True) from None

    def session_cookie(self, principal: Principal, secure: bool, name: str = COOKIE) -> str:
        """A Set-Cookie value of cookie `name` naming `principal` until `session_days` from now (sessions.py)."""
        return self.sessions.cookie(principal.name, secure, name)

    def origin_refused(self, scope: Scope, headers: Headers) -> str | None:
        """Why a browser's cross-site request is refused, or None. Only WebSockets and state-changing methods are
        checked: a page elsewhere may show an <img> of the stream but not drive the cameras."""
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is None:
            return None  # not a browser (curl, scripts, the Python clients): they prove themselves by credentials
        origin = origin.lower()
        if origin in self._origins:
            return None
        if urlsplit(origin).netloc and urlsplit(origin).netloc == headers.get("host", "").lower():
            return None
        return f"Origin {origin} may not use this server (same origin only, or [auth] allowed_origins)"


def _failed(attempt: Attempt, reason: str) -> Refused:
    attempt.failed(reason)  # logged there, a flood of them counted
    return Refused(401, reason, logged=True)


class AuthMiddleware:
    """ASGI middleware in front of every route: identify, check the Origin and the route's role, then pass on."""

    def __init__(self, app: ASGIApp, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            refused = self.auth.origin_refused(scope, headers)
            if refused is not None:
                raise Refused(403, refused)
            principal, proof = await self.auth.identify(scope, headers)
            needed = required_role(scope)
            if principal.role < needed:
                if principal.role == Role.NONE:
                    raise Refused(401, "credentials needed: a token (Authorization: Bearer …) or a user")
                raise Refused(
                    403, f"{needed.name.lower()} role needed; {principal.name} is a {principal.role.name.lower()}"
                )
        except Refused as err:
            await self._refuse(scope, receive, send, headers, err)
            return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        state["client_address"] = self.auth.client_address((scope.get("client") or ("", 0))[0], headers)
        if scope["type"] == "http" and proof in ("token", "basic") and scope["method"] == "GET":
            # A browser that signed in (a ?token= link, or the basic-auth prompt) keeps a session cookie, which its
            # WebSockets, <img> and <video> requests carry; the page then drops the token from its address.
            secure = scope.get("scheme") == "https"
            cookie = self.auth.session_cookie(principal, secure=secure, name=cookie_name(scope))
            send = _with_header(send, "set-cookie", cookie)
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, headers: Headers, err: Refused) -> None:
        if not err.logged:
            client = scope.get("client") or ("?", 0)
            log.info("refused %s %s from %s: %s", scope.get("method", "WS"), scope["path"], client[0], err)
        response_headers = [(b"cache-control", b"no-store")]
        if err.retry_after_s is not None:
            response_headers.append((b"retry-after", str(math.ceil(err.retry_after_s)).encode()))
        if err.status == 401 and self.auth.basic:
            response_headers.append((b"www-authenticate", b'Basic realm="vergence", charset="UTF-8"'))
        wants_page = scope["type"] == "http" and scope["path"] == "/" and "text/html" in headers.get("accept", "")
        if wants_page and err.status == 401:
            body, content_type = _login_page(str(err)).encode(), b"text/html; charset=utf-8"
        else:
            body, content_type = json.dumps({"detail": str(err)}).encode(), b"application/json"
        response_headers.append((b"content-type", content_type))
        if scope["type"] == "websocket":
            message = await receive()  # websocket.connect
            if message["type"] != "websocket.connect":
                return
            if "websocket.http.response" not in scope.get("extensions", {}):
                await send({"type": "websocket.close", "code": 1008})  # the server answers the handshake with 403
                return
            start, body_type = "websocket.http.response.start", "websocket.http.response.body"
        else:
            start, body_type = "http.response.start", "http.response.body"
        await send({"type": start, "status": err.status, "headers": response_headers})
        await send({"type": body_type, "body": body})


def _with_header(send: Send, name: str, value: str) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message).append(name, value)
        await send(message)

    return sending


def _login_page(reason: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>vergence: sign in</title><link rel="stylesheet" href="/static/style.css"></head>
<body class="login"><main>
<h1>vergence</h1><p>{html.escape(reason)}.</p>
<form method="get" action="/"><label>Token <input name="token" type="password" autocomplete="current-password"
required minlength="16"></label> <button>Sign in</button></form>
</main></body></html>"""


router = APIRouter()


@router.get("/api/session", tags=["auth"])
async def session(request: Request) -> dict[str, Any]:
    """Who this request is: `{"name", "role": "viewer" | "operator", "commands": bool}`; the page hides what a viewer
    cannot do."""
    principal = principal_of(request.scope)
    return {**principal.describe(), "commands": may_command(principal)}
