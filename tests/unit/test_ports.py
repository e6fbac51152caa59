"""The test ports: never the same number twice in a session, never in the kernel's ephemeral range."""

from __future__ import annotations

import socket

from tests.support.ports import EPHEMERAL_START, free_port


def test_ports_are_never_handed_out_twice_and_stay_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(port < EPHEMERAL_START for port in ports)


def test_a_port_in_use_on_tcp_or_udp_is_skipped_and_a_pair_is_consecutive() -> None:
    first = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", first + 1))  # the next numbers counted: taken on UDP, then on TCP
        tcp.bind(("127.0.0.1", first + 3))
        pair = free_port(2)
        assert pair >= first + 4
        for port in (pair, pair + 1):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", port))
