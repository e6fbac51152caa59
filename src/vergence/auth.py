"""Who is asking and what they may do: credentials → a principal with a role, checked on every HTTP and WebSocket route.

Two roles: a viewer watches (every GET, every WebSocket, WebRTC signalling), an operator also commands (any other
method, and command messages on the control WebSocket or a WebRTC data channel). Credentials: a bearer token
(`Authorization: Bearer`, or `?token=` where a browser cannot set headers), a basic-auth user, or the page's session
cookie, which vergence sets when a browser signs in with either. A request without credentials gets the `anonymous`
role; by default that is operator from this machine (loopback) and viewer from elsewhere until tokens or users are set,
then none. Browsers' cross-site requests are refused by their Origin (WebSockets and any request that changes state).
Secrets never reach a log: principals are named, tokens are compared by their SHA-256 digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import time
from dataclasses import dataclass
from enum import IntEnum
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vergence.config import AuthSettings

log = logging.getLogger(__name__)

COOKIE = "vergence_session"
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
    """A request that may not go on: 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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
    # WebRTC signalling is watching: offer to receive a stream (POST), hang up one's own peer (DELETE, by its secret id).
    if parts[:2] == ["api", "webrtc"] and (
        (method == "POST" and len(parts) == 3) or (method == "DELETE" and len(parts) == 4)
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


def _is_loopback(address: str) -> bool:
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
    """Turns a request's credentials into a Principal; makes and checks the page's session cookie."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        role = {"viewer": Role.VIEWER, "operator": Role.OPERATOR}
        self._tokens = {_digest(t.token.get_secret_value()): Principal(t.name, role[t.role]) for t in settings.tokens}
        self._users = {u.name: (u.password.get_secret_value(), Principal(u.name, role[u.role])) for u in settings.users}
        self._named = {principal.name: principal for principal in self._tokens.values()}
        self._named.update({name: principal for name, (_, principal) in self._users.items()})
        # The cookie's key comes from the configured secrets: change a token or password and its sessions end.
        secrets = sorted(t.token.get_secret_value() for t in settings.tokens) + sorted(
            f"{u.name}:{u.password.get_secret_value()}" for u in settings.users
        )
        self._cookie_key = hashlib.sha256(("vergence-session\0" + "\0".join(secrets)).encode()).digest()
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
            local = _is_loopback(client) and (
                host_header is None or _host_name(host_header) == "localhost" or _is_loopback(_host_name(host_header))
            )
            return Principal("anonymous", Role.OPERATOR if local else Role.VIEWER)
        return Principal("anonymous", {"none": Role.NONE, "viewer": Role.VIEWER, "operator": Role.OPERATOR}[mode])

    def identify(self, scope: Scope, headers: Headers) -> tuple[Principal, str | None]:
        """The request's principal and how it proved itself ("token", "basic", "cookie", or None for anonymous).

        Raises Refused(401) for credentials that are given but wrong: a typo must not silently fall back to anonymous.
        """
        authorization = headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return self.by_token(value.strip()), "token"
        if scheme.lower() == "basic" and value.strip():
            return self._by_password(value.strip()), "basic"
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return self.by_token(query["token"][0]), "token"
        cookie = _cookie(headers, cookie_name(scope))
        if cookie is not None:
            principal = self._by_cookie(cookie)
            if principal is not None:
                return principal, "cookie"
            # A stale cookie (expired, or its secret changed) counts as no credentials: the login asks again.
        return self.anonymous(*self._client_behind_proxies(peer_address(scope), headers)), None

    def client_address(self, scope: Scope, headers: Headers) -> str:
        """Who to count this request against in per-client limits: the peer, or the client a trusted proxy names."""
        peer = peer_address(scope)
        if self._trusted(peer) and any(name in headers for name in PROXY_HEADERS):
            return self._client_behind_proxies(peer, headers)[0]
        return peer

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
        chain = [peer, *reversed(_forwarded_for(headers))]
        client = next((address for address in chain if not self._trusted(address)), chain[-1])
        return client, headers.get("x-forwarded-host") or headers.get("host", "")

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False
        return any(ip in network for network in self._proxies)

    def by_token(self, token: str) -> Principal:
        principal = self._tokens.get(_digest(token))
        if principal is None:
            raise Refused(401, "unknown token")
        return principal

    def _by_password(self, value: str) -> Principal:
        try:
            name, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Refused(401, "malformed basic credentials") from None
        known = self._users.get(name)
        if known is None or not _password_matches(password, known[0]):
            raise Refused(401, "wrong user name or password")
        return known[1]

    def session_cookie(self, principal: Principal, secure: bool, name: str = COOKIE) -> str:
        """A Set-Cookie value naming `principal` until `session_days` from now, signed with the secrets' key."""
        max_age = int(self.settings.session_days * 86_400)
        payload = f"{principal.name}.{int(time.time()) + max_age}"
        signature = hmac.new(self._cookie_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
        value = base64.urlsafe_b64encode(f"{payload}.{signature}".encode()).decode().rstrip("=")
        flags = "; Secure" if secure else ""
        return f"{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{flags}"

    def _by_cookie(self, value: str) -> Principal | None:
        try:
            text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            name, expires, signature = text.rsplit(".", 2)
            expires_at = int(expires)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        expected = hmac.new(self._cookie_key, f"{name}.{expires}".encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(expected, signature) or expires_at < time.time():
            return None
        return self._named.get(name)  # the role it has now, not when the cookie was made

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


def _password_matches(given: str, configured: str) -> bool:
    if configured.startswith("sha256:"):
        return hmac.compare_digest(hashlib.sha256(given.encode()).hexdigest(), configured[7:].lower())
    return hmac.compare_digest(given.encode(), configured.encode())


def peer_address(scope: Scope) -> str:
    """The address of the connection's other end."""
    return (scope.get("client") or ("", 0))[0]


def cookie_name(scope: Scope) -> str:
    """The session cookie's name at the server that got this request. Browsers keep cookies per host, not per port: two
    servers on one machine (a robot's two cameras, say) would otherwise overwrite each other's session at every sign-in."""
    server = scope.get("server")
    return f"{COOKIE}_{server[1]}" if server and server[1] else COOKIE


def _cookie(headers: Headers, name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(raw)
    except CookieError:  # junk is no cookie
        return None
    morsel = cookies.get(name)
    return morsel.value if morsel is not None else None


class AuthMiddleware:
    """ASGI middleware in front of every route: identify, check the Origin and the route's role, then pass on."""

    def __init__(self, app: ASGIApp, settings: AuthSettings) -> None:
        self.app = app
        self.auth = Authenticator(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            refused = self.auth.origin_refused(scope, headers)
            if refused is not None:
                raise Refused(403, refused)
            principal, proof = self.auth.identify(scope, headers)
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
        state["client_address"] = self.auth.client_address(scope, headers)
        if scope["type"] == "http" and proof in ("token", "basic") and scope["method"] == "GET":
            # A browser that signed in (a ?token= link, or the basic-auth prompt) keeps a session cookie, which its
            # WebSockets, <img> and <video> requests carry; the page then drops the token from its address.
            secure = scope.get("scheme") == "https"
            cookie = self.auth.session_cookie(principal, secure=secure, name=cookie_name(scope))
            send = _with_header(send, "set-cookie", cookie)
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, headers: Headers, err: Refused) -> None:
        client = scope.get("client") or ("?", 0)
        log.info("refused %s %s from %s: %s", scope.get("method", "WS"), scope["path"], client[0], err)
        response_headers = [(b"cache-control", b"no-store")]
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
