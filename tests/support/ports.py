"""Ports for the servers and receivers a test starts: each one handed out once per session.

Asking the kernel for port 0 and closing the socket hands the same number out again now and then (CI once gave a
test's ZeroMQ port and its HTTP port the same number, and the server could not bind). Ports here are counted up from
below the kernel's ephemeral range (32768 and up on Linux), so neither a second call nor the source port of a client's
connection can get the same number; each is checked free on TCP and UDP before it is handed out.
"""

from __future__ import annotations

import itertools
import socket
import threading

FIRST_PORT = 20000
EPHEMERAL_START = 32768

_next = itertools.count(FIRST_PORT)
_lock = threading.Lock()


def _free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port(count: int = 1) -> int:
    """The first of `count` consecutive ports free on 127.0.0.1 (TCP and UDP) that no earlier call returned."""
    with _lock:
        while True:
            first = next(_next)
            for _ in range(count - 1):
                next(_next)
            if first + count > EPHEMERAL_START:
                raise RuntimeError(f"ran out of test ports below {EPHEMERAL_START}")
            if all(_free(port) for port in range(first, first + count)):
                return first
