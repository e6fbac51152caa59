"""The connection guard's parts: who owns a loopback connection, what key a client counts under, the file limit."""

from __future__ import annotations

import ipaddress
import os
import resource
import socket
from typing import Any

from vergence.config import ServerSettings
from vergence.connections import ConnectionGuard, _SocketOwners, raise_file_limit


def test_the_owner_of_a_loopback_connection_is_asked_of_the_kernel() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        served, peer = listener.accept()
        with client, served:
            local = served.getsockname()
            owner = _SocketOwners().uid(ipaddress.ip_address(peer[0]), peer[1], local[0], local[1])
            assert owner == os.getuid()
            # A four-tuple no socket has: nobody owns it.
            assert _SocketOwners().uid(ipaddress.ip_address(peer[0]), 1, local[0], local[1]) is None


class FakeTransport:
    def __init__(self, peer: tuple[str, int], local: tuple[str, int]) -> None:
        self.extra = {"peername": peer, "sockname": local}

    def get_extra_info(self, name: str) -> Any:
        return self.extra[name]


def test_clients_are_keyed_by_address_an_ipv6_client_by_its_64() -> None:
    guard = ConnectionGuard(ServerSettings(), ["192.0.2.10"], file_limit=65536)
    key = guard._client
    assert key(FakeTransport(("198.51.100.7", 5000), ("198.51.100.1", 8000))) == ("198.51.100.7", False)
    assert key(FakeTransport(("::ffff:198.51.100.7", 5000), ("::ffff:198.51.100.1", 8000))) == ("198.51.100.7", False)
    first = key(FakeTransport(("2001:db8:1:2::7", 5000, 0, 0), ("2001:db8:1:2::1", 8000, 0, 0)))
    other = key(FakeTransport(("2001:db8:1:2:aaaa::9", 5000, 0, 0), ("2001:db8:1:2::1", 8000, 0, 0)))
    assert first == other == ("2001:db8:1:2::/64", False)
    assert key(FakeTransport(("192.0.2.10", 5000), ("192.0.2.1", 8000))) == ("192.0.2.10", True)  # a trusted proxy


def test_the_total_cap_leaves_room_under_the_file_limit() -> None:
    assert ConnectionGuard(ServerSettings(), [], file_limit=1024).total == 1024 - 256
    assert ConnectionGuard(ServerSettings(max_connections=100), [], file_limit=65536).total == 100


def test_the_soft_file_limit_is_raised_to_the_hard_one() -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, before[1]), before[1]))
        assert raise_file_limit() == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == (
            before[1] if before[1] != resource.RLIM_INFINITY else int(open("/proc/sys/fs/nr_open").read())
        )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)
