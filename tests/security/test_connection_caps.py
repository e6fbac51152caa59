"""Finding 4: no connection cap and no timeout for incomplete requests. 2,000 control WebSockets from one client took
every descriptor under systemd's soft limit of 1,024, and the API, snapshots and photos failed meanwhile; 500 half-sent
requests stayed open for 40 s and more. Now the server raises its soft file limit to the hard one at start, caps the
connections one client holds (a local account, on this machine, by the owner of its socket) and in total, and closes
connections that do not complete their request headers in time.

The attacker is another account on this machine (nobody, through setpriv), with a file limit of its own that lets it
open 2,000 connections; the server runs under a real limit (prlimit: soft 1,024, hard 4,096)."""

from __future__ import annotations

import select
import socket
import subprocess
import time

import httpx
import pytest

from tests.accounts import SYSTEM_PYTHON, as_nobody
from tests.integration.wsclient import VideoClient
from tests.polling import poll

HELD = 2000
FPS = 30

# Opens connections that each ask for a control WebSocket, says how many it opened, and holds them until stdin closes.
ATTACKER = r"""
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
upgrade = (b"GET /ws/control HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
held = []
for _ in range(count):
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(upgrade)
    except OSError as err:
        print("failed", err, flush=True)
        continue
    held.append(sock)
print("opened", len(held), flush=True)
sys.stdin.read()
"""


def stats(server) -> dict:
    return httpx.get(f"{server.url}/api/stats", timeout=5).json()


def read_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    if not ready:
        pytest.fail(f"the attacker said nothing within {timeout_s} s")
    assert process.stdout is not None
    return process.stdout.readline().strip()


def capture_fps(viewer: VideoClient, frames: int) -> float:
    """The frame rate the viewer gets, from the capture times of `frames` consecutive frames it received."""
    times = [viewer.next(timeout=5).header.capture_ns for _ in range(frames)]
    return (frames - 1) / ((times[-1] - times[0]) / 1e9)


def test_2000_connections_from_another_account_leave_the_api_and_viewers_alone(vergence_server):
    server = vergence_server(
        "--size",
        "320x180",
        "--fps",
        str(FPS),
        wrapper=("prlimit", "--nofile=1024:4096"),  # systemd's soft limit
    )
    assert stats(server)["process"]["fd_limit"] == 4096  # raised to the hard limit at start
    with VideoClient.open(server.ws_url, "/ws/video/cam0") as viewer:
        capture_fps(viewer, 10)  # playing
        attacker = subprocess.Popen(
            as_nobody(str(SYSTEM_PYTHON), "-c", ATTACKER, str(server.port), str(HELD), files=HELD + 100),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            said = read_line(attacker, 60)
            assert said.startswith("opened "), said
            # Every one of them reached the server, which kept its cap of them and refused the rest.
            poll(
                lambda: stats(server)["connections"]["refused"].get("per client", 0) >= HELD - 128,
                "the attacker's connections over the cap refused",
                deadline_s=20,
            )
            started = time.monotonic()
            answer = httpx.get(f"{server.url}/api/streams", timeout=5)
            took = time.monotonic() - started
            assert answer.status_code == 200 and took < 1.0, (answer.status_code, took)
            assert httpx.get(f"{server.url}/snapshot/cam0.jpg", timeout=5).status_code == 200
            rates = [capture_fps(viewer, 2 * FPS) for _ in range(3)]  # six seconds, two by two
            assert min(rates) >= 29, rates
        finally:
            attacker.kill()
            attacker.wait()


def test_connections_that_do_not_finish_their_headers_are_closed(vergence_server):
    server = vergence_server("--size", "320x180", env={"VERGENCE_SERVER__HEADER_TIMEOUT_S": "1"})
    half_sent = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /api/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        half_sent.append(sock)
    started = time.monotonic()
    try:
        for sock in half_sent:
            sock.settimeout(max(0.1, started + 5 - time.monotonic()))
            assert sock.recv(1024) == b""  # closed by the server
    finally:
        for sock in half_sent:
            sock.close()
    assert time.monotonic() - started < 5
    # A client that finishes its request in time is served as ever.
    assert httpx.get(f"{server.url}/api/streams", timeout=5).status_code == 200
