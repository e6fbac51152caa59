"""What one client may hold of the server: connections, and the time it may take to send its request headers.

Every connection is counted against its client when it is accepted, before a byte is read: 2,000 WebSockets from one
client used to take every file descriptor, and the API, snapshots and photos failed for everyone meanwhile. A client is
an address (an IPv6 client its /64, which one machine gets whole), except on this machine: there every account shares
127.0.0.1, so a loopback connection counts against the account that opened it (its socket's owner, asked of the kernel
through sock_diag), and another local user cannot crowd out the robot's own programs. A trusted reverse proxy is one
address carrying many clients: only the total applies to it.

Past a cap the connection gets a 503 and is closed. A connection that has not completed its request headers within
`header_timeout_s` (of its start, or of its previous response) is closed too: half-sent requests used to stay open
for good. Bodies have their own limits (http_limits.py). At start the process raises its soft file limit to the hard
one, and the total cap is kept below what that leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import resource
import socket
import struct
import time
from typing import Any

from vergence.config import ServerSettings
from vergence.login_throttle import client_key

log = logging.getLogger(__name__)

FD_RESERVE = 256  # descriptors kept for cameras, encoders, recordings, state and logs beyond the connection cap
SWEEP_EVERY_S = 0.5
_REFUSAL_BODY = b'{"detail": "too many connections; try later"}'
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 5\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)


def raise_file_limit() -> int:
    """Raise the soft limit on open files to the hard one (systemd starts services at 1,024); return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else _kernel_file_maximum()
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as err:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, wanted, err)
            return soft
        log.info("open-file limit raised from %d to %d", soft, wanted)
        return wanted
    return soft


def _kernel_file_maximum() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as file:
            return int(file.read())
    except (OSError, ValueError):
        return 1 << 20


class ConnectionGuard:
    """Counts open connections per client and in total; closes what is over a cap or too slow with its headers."""

    def __init__(self, settings: ServerSettings, trusted_proxies: list[str], file_limit: int) -> None:
        self.per_client = settings.max_connections_per_client
        self.total = min(settings.max_connections, max(16, file_limit - FD_RESERVE))
        if self.total < settings.max_connections:
            log.warning(
                "at most %d connections ([server] max_connections %d): the open-file limit is %d",
                self.total,
                settings.max_connections,
                file_limit,
            )
        self.header_timeout_s = settings.header_timeout_s
        self._proxies = [ipaddress.ip_network(proxy, strict=False) for proxy in trusted_proxies]
        self._open: dict[str, list[asyncio.BaseTransport]] = {}
        self._connections: set[Any] | None = None  # uvicorn's set of live protocols
        self._owners = _SocketOwners()
        self._warned: dict[str, float] = {}
        self.refused: dict[str, int] = {}

    def admit(self, protocol: Any, transport: asyncio.Transport) -> None:
        """Count a new connection (uvicorn already added `protocol` to its set); close it when over a cap."""
        if self._connections is None:
            self._connections = protocol.connections
            asyncio.get_running_loop().call_later(SWEEP_EVERY_S, self._sweep)
        if len(protocol.connections) > self.total:
            self._refuse(transport, "all", "total")
            return
        key, proxy = self._client(transport)
        held = [other for other in self._open.get(key, ()) if not other.is_closing()]
        if not proxy and len(held) >= self.per_client:
            self._open[key] = held
            self._refuse(transport, key, "per client")
            return
        held.append(transport)
        self._open[key] = held

    def describe(self) -> dict[str, Any]:
        return {
            "open": len(self._connections or ()),
            "max": self.total,
            "max_per_client": self.per_client,
            "refused": dict(self.refused),
        }

    def _client(self, transport: asyncio.BaseTransport) -> tuple[str, bool]:
        """The key a connection counts under, and whether it comes from a trusted proxy."""
        peer, local = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
        try:
            ip = ipaddress.ip_address(peer[0])
        except (TypeError, ValueError, IndexError):
            return "?", False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self._proxies):
            return str(ip), True
        if ip.is_loopback:
            owner = self._owners.uid(ip, peer[1], local[0], local[1])
            return (f"uid {owner}" if owner is not None else str(ip)), False
        return client_key(str(ip)), False

    def _refuse(self, transport: asyncio.Transport, key: str, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1
        now = time.monotonic()
        if now - self._warned.get(key, -60.0) >= 60.0:  # one line a minute per client, not one per connection
            self._warned[key] = now
            log.warning("refusing connections from %s: %s connection cap reached", key, why)
            if len(self._warned) > 1024:
                self._warned = {k: t for k, t in self._warned.items() if now - t < 60.0}
        with contextlib.suppress(OSError):
            transport.write(REFUSAL)
        transport.close()

    def _sweep(self) -> None:
        """Close connections slow with their request headers; forget closed connections."""
        now = time.monotonic()
        for protocol in list(self._connections or ()):
            idle_since = getattr(protocol, "idle_since", None)
            cycle = getattr(protocol, "cycle", None)
            waiting = cycle is None or cycle.response_complete
            if idle_since is not None and waiting and now - idle_since > self.header_timeout_s:
                self.refused["header timeout"] = self.refused.get("header timeout", 0) + 1
                protocol.transport.close()
        if len(self._open) > 64:
            self._open = {k: live for k, v in self._open.items() if (live := [t for t in v if not t.is_closing()])}
        asyncio.get_running_loop().call_later(SWEEP_EVERY_S, self._sweep)


def guarded(protocol_class: type[asyncio.Protocol], guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class, with each connection admitted by `guard` and its header time kept."""

    class Guarded(protocol_class):  # type: ignore[valid-type,misc]
        idle_since = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.idle_since = time.monotonic()
            guard.admit(self, transport)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.idle_since = time.monotonic()  # the next request's headers are due from now

    Guarded.__name__ = f"Guarded{protocol_class.__name__}"
    return Guarded


# sock_diag (linux/inet_diag.h): ask the kernel who owns one TCP socket, by its four-tuple.
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NO_COOKIE = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_UID_OFFSET = _HEADER.size + 4 + 48 + 12  # inet_diag_msg: family…retrans, sockid, expires, rqueue, wqueue, then uid


class _SocketOwners:
    """The uid owning the other end of a loopback connection (the client's socket), or None when it cannot be told."""

    def __init__(self) -> None:
        self._netlink: socket.socket | None = None
        self._sequence = 0
        self._broken = False

    def uid(
        self, peer: ipaddress.IPv4Address | ipaddress.IPv6Address, peer_port: int, local: str, port: int
    ) -> int | None:
        if self._broken:
            return None
        family = socket.AF_INET if isinstance(peer, ipaddress.IPv4Address) else socket.AF_INET6
        local_ip = ipaddress.ip_address(local)
        if isinstance(local_ip, ipaddress.IPv6Address) and local_ip.ipv4_mapped is not None:
            local_ip = local_ip.ipv4_mapped
        # The client's socket: its own end is the peer address, its remote end is ours.
        sockid = struct.pack(
            "!HH16s16s", peer_port, port, peer.packed.ljust(16, b"\0"), local_ip.packed.ljust(16, b"\0")
        )
        sockid += struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE)
        request = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, 0xFFFFFFFF) + sockid
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        message = _HEADER.pack(_HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, self._sequence, 0)
        try:
            if self._netlink is None:
                self._netlink = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
                self._netlink.setblocking(False)
            self._netlink.send(message + request)
            reply = self._netlink.recv(8192)  # the kernel answers within send(): nothing to wait for
            while len(reply) >= _HEADER.size and _HEADER.unpack_from(reply)[3] != self._sequence:
                reply = self._netlink.recv(8192)  # an answer to an earlier question, left unread
        except BlockingIOError:
            return None
        except OSError as err:
            log.warning(
                "cannot tell local accounts apart (sock_diag: %s): loopback connections count as one client", err
            )
            self._broken = True
            return None
        if len(reply) < _UID_OFFSET + 4 or _HEADER.unpack_from(reply)[1] == _NLMSG_ERROR:
            return None  # the client is gone already
        return int(struct.unpack_from("=I", reply, _UID_OFFSET)[0])
