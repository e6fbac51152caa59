"""The TCP JPEG feed against a real server: twenty clients of two sizes get decodable frames at the stream's rate, a
client that never reads costs them nothing, bad handshakes are refused with a reason while others keep receiving, a
client asking 320 px, quality 50, 5 fps gets just that, and the client past max_clients is told the server is full."""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, free_port, start_server
from vergence.client.tcp import TcpFeedError, TcpFrames, decode, request_line

FPS = 30
WIDTH, HEIGHT = 640, 360
MAX_CLIENTS = 24
TIMEOUT_S = 15.0  # generous: the machine is shared with other test runs
WINDOW_S = 3.0


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    directory = tmp_path_factory.mktemp("tcp")
    port = free_port()
    config = directory / "vergence.toml"
    config.write_text(
        f'[[cameras]]\nid = "cam0"\nsize = "{WIDTH}x{HEIGHT}"\nfps = {FPS}\n'
        f'[tcp]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\nmax_clients = {MAX_CLIENTS}\n'
        "handshake_timeout_s = 1\n"
    )
    server = start_server(("--config", str(config)), directory / "server.log")
    yield server, port
    server.stop()


class Reader(threading.Thread):
    """A client on its own thread, keeping each frame's arrival time and header, and its first and last JPEG."""

    def __init__(self, port: int, **request: Any) -> None:
        super().__init__(daemon=True)
        self.frames = TcpFrames("127.0.0.1", port, timeout_s=TIMEOUT_S, **request)
        self.accepted = self.frames.open()
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.first_jpeg = self.last_jpeg = b""
        self.error: BaseException | None = None
        self._done = threading.Event()
        self.start()

    def run(self) -> None:
        try:
            for header, jpeg in self.frames:
                self.arrivals.append((time.monotonic(), header))
                self.first_jpeg = self.first_jpeg or jpeg
                self.last_jpeg = jpeg
                if self._done.is_set():
                    return
        except BaseException as err:  # reported by the test, not lost in the thread
            self.error = err

    def close(self) -> None:
        self._done.set()
        self.join(TIMEOUT_S)
        self.frames.close()
        assert self.error is None, f"reader failed: {self.error!r}"

    def count_between(self, start: float, end: float) -> int:
        return sum(1 for at, _ in list(self.arrivals) if start <= at < end)

    def wait_frames(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while len(self.arrivals) < count:
            assert self.error is None, f"reader failed: {self.error!r}"
            assert time.monotonic() < deadline, f"only {len(self.arrivals)} of {count} frames in {TIMEOUT_S} s"
            time.sleep(0.02)  # poll interval of a deadline loop, not a wait for an event


def tcp_service(server: ServerProcess) -> dict[str, Any]:
    return httpx.get(f"{server.url}/api/stats", timeout=5).json()["services"]["tcp"]


def wait_until(server: ServerProcess, condition: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        service = tcp_service(server)
        if condition(service):
            return service
        assert time.monotonic() < deadline, f"not {what} within {TIMEOUT_S} s: {service}"
        time.sleep(0.05)  # poll interval of a deadline loop, not a wait for an event


def rates(readers: list[Reader], start: float) -> list[float]:
    return [reader.count_between(start, start + WINDOW_S) / WINDOW_S for reader in readers]


def wait_past(moment: float) -> None:
    while time.monotonic() < moment:
        time.sleep(0.05)  # poll interval of a deadline loop, not a wait for an event


def refusal(port: int, payload: bytes, send_newline: bool = True) -> dict[str, Any]:
    """Send a raw handshake; return the server's reply and check it closes the connection after."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.sendall(payload)
        received = b""
        while not received.endswith(b"\n"):
            chunk = sock.recv(4096)
            assert chunk, f"closed without a reply (after {received!r})"
            received += chunk
        assert sock.recv(4096) == b"", "a refused client is disconnected"
    return json.loads(received)


def test_twenty_clients_get_their_frames_and_a_stalled_client_costs_them_nothing(feed):
    server, port = feed
    readers = [Reader(port) for _ in range(10)] + [Reader(port, width=320) for _ in range(10)]
    try:
        assert readers[0].accepted == {
            "ok": True,
            "version": 1,
            "stream": "cam0",
            "width": WIDTH,
            "height": HEIGHT,
            "quality": 80,
            "fps": FPS,
        }
        assert (readers[-1].accepted["width"], readers[-1].accepted["height"]) == (320, 180)
        for reader in readers:
            reader.wait_frames(5)
        baseline_start = time.monotonic()
        wait_past(baseline_start + WINDOW_S)
        baseline = rates(readers, baseline_start)

        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a few frames
        stalled.connect(("127.0.0.1", port))
        try:
            stalled.sendall(request_line(width=320))  # then never reads, not even the reply
            peer = "{}:{}".format(*stalled.getsockname())
            wait_until(
                server,
                lambda s: any(c["peer"] == peer and c["drops"] >= 10 for c in s["clients"]),
                "stalled and skipping frames",
            )
            stalled_start = time.monotonic()
            wait_past(stalled_start + WINDOW_S)
            during = rates(readers, stalled_start)
            service = tcp_service(server)
        finally:
            stalled.close()

        median = statistics.median(baseline)
        assert median >= 0.8 * FPS, f"baseline {baseline} is far from the stream's {FPS} fps"
        assert min(during) >= 0.85 * median, f"with a stalled client: {during}; before: {baseline}"
        variants = {(v["width"], v["source"]): v["clients"] for v in service["variants"]}
        assert variants == {(WIDTH, "jpeg channel"): 10, (320, "scaling encoder"): 11}
        stuck = next(c for c in service["clients"] if c["peer"] == peer)
        assert stuck["frames"] < 0.5 * min(c["frames"] for c in service["clients"] if c["peer"] != peer)

        for reader in readers:
            size = (reader.accepted["width"], reader.accepted["height"])
            assert {(h["width"], h["height"]) for _, h in reader.arrivals} == {size}
            seqs = [h["seq"] for _, h in reader.arrivals]
            assert seqs == sorted(set(seqs)), "frames in order, none twice"
            for jpeg in (reader.first_jpeg, reader.last_jpeg):
                assert decode(jpeg).shape == (size[1], size[0], 3)
    finally:
        for reader in readers:
            reader.close()
    wait_until(server, lambda s: not s["clients"] and not s["variants"], "empty again")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00\xffgarbage\n", "the handshake is not JSON"),
        (b'{"version": 1, "quality": \n', "the handshake is not JSON"),
        (b"[1, 2]\n", "must be a JSON object"),
        (request_line(quality=0), "quality = 0 must be within 1 … 100"),
        (request_line(stream="cam9"), 'unknown stream "cam9"; streams: cam0'),
        (request_line(fps=60), "fps = 60 must be a number within 0 (excluded) … 30"),
        (request_line(width=641), "width = 641 must be even and within 16 … 640"),
        (request_line(colour="red"), "unknown key 'colour'"),
        (b'{"stream": "cam0"}\n', "version must be 1, got null"),
        (b'{"version": 1, "stream": "' + b"x" * 2000 + b'"}\n', "longer than 1024 bytes"),
        (b'{"version": 1}', "no handshake line within 1 s"),
    ],
    ids=[
        "garbage",
        "bad-json",
        "not-object",
        "quality-0",
        "unknown-stream",
        "fps",
        "odd-width",
        "unknown-key",
        "no-version",
        "oversized",
        "no-newline",
    ],  # fmt: skip
)
def test_a_bad_handshake_is_refused_with_its_reason_and_others_keep_receiving(feed, payload, reason):
    server, port = feed
    reader = Reader(port, width=320)
    try:
        reader.wait_frames(3)
        before = len(reader.arrivals)
        reply = refusal(port, payload)
        assert reply["ok"] is False and reason in reply["error"], reply
        reader.wait_frames(before + 3)
        arrivals = [at for at, _ in reader.arrivals]
        gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
        assert max(gaps) < 0.5, f"the other client stalled for {max(gaps):.2f} s"
    finally:
        reader.close()


def test_a_client_gets_the_size_quality_and_rate_it_asked_for(feed):
    server, port = feed
    reader = Reader(port, width=320, quality=50, fps=5)
    try:
        assert reader.accepted == {
            "ok": True,
            "version": 1,
            "stream": "cam0",
            "width": 320,
            "height": 180,
            "quality": 50,
            "fps": 5.0,
        }
        reader.wait_frames(2)
        start = time.monotonic()
        wait_past(start + 2 * WINDOW_S)
        window = [h for at, h in reader.arrivals if start <= at < start + 2 * WINDOW_S]
        service = tcp_service(server)
    finally:
        reader.close()
    assert 5 * 2 * WINDOW_S - 2 <= len(window) <= 5 * 2 * WINDOW_S + 2, f"{len(window)} frames in {2 * WINDOW_S} s"
    captures = [h["capture_ns"] for h in window]
    intervals_ms = [(later - earlier) / 1e6 for earlier, later in zip(captures, captures[1:], strict=False)]
    assert abs(statistics.mean(intervals_ms) - 200) < 10, intervals_ms
    assert {(h["width"], h["height"]) for h in window} == {(320, 180)}
    assert decode(reader.last_jpeg).shape == (180, 320, 3)
    assert service["variants"] == [
        {
            "stream": "cam0",
            "width": 320,
            "height": 180,
            "quality": 50,
            "source": "scaling encoder",
            "clients": 1,
            "frames": service["variants"][0]["frames"],
        }
    ]


def test_the_client_past_max_clients_is_told_the_server_is_full(feed):
    server, port = feed
    wait_until(server, lambda s: not s["clients"], "without clients")
    clients = [TcpFrames("127.0.0.1", port, timeout_s=TIMEOUT_S) for _ in range(MAX_CLIENTS)]
    try:
        for client in clients:
            client.open()
        with pytest.raises(TcpFeedError, match="server full"):
            TcpFrames("127.0.0.1", port, timeout_s=TIMEOUT_S).open()
    finally:
        for client in clients:
            client.close()
    wait_until(server, lambda s: not s["clients"], "without clients")
    with TcpFrames("127.0.0.1", port, timeout_s=TIMEOUT_S) as frames:
        header, jpeg = frames.read()
        assert (header["width"], header["height"]) == (WIDTH, HEIGHT)


def test_with_auth_on_a_client_needs_a_token_in_its_handshake(tmp_path):
    port = free_port()
    token = "tcp-reader-token-0123456789"
    config = tmp_path / "vergence.toml"
    config.write_text(
        f'[[cameras]]\nid = "cam0"\nsize = "320x180"\nfps = {FPS}\n'
        f'[tcp]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n'
        f'[[auth.tokens]]\nname = "reader"\ntoken = "{token}"\nrole = "viewer"\n'
    )
    server = start_server(("--config", str(config)), tmp_path / "server.log")
    try:
        with pytest.raises(TcpFeedError, match="a token is needed"):
            TcpFrames("127.0.0.1", port, timeout_s=TIMEOUT_S).open()
        with pytest.raises(TcpFeedError, match="unknown token"):
            TcpFrames("127.0.0.1", port, timeout_s=TIMEOUT_S, token="not-the-token-000000").open()
        with TcpFrames("127.0.0.1", port, timeout_s=TIMEOUT_S, token=token) as frames:
            header, jpeg = frames.read()
            assert (header["width"], header["height"]) == (320, 180) and decode(jpeg).shape == (180, 320, 3)
        assert token not in server.log()
    finally:
        server.stop()
