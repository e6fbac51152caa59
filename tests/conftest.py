"""Shared fixtures: a vergence server started as a real subprocess on a free 127.0.0.1 port.

The whole session runs in a network namespace of its own (`tests/support/netns.py`): loopback plus a veth pair, so WebRTC
has a non-loopback address for ICE and no test can reach an outside address.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.netns import enter_private_network, private_address, why_no_private_network
from tests.support.ports import free_port

STARTUP_TIMEOUT_S = 20.0


def pytest_configure(config: pytest.Config) -> None:
    # Before any thread starts: a namespace holds only the thread that enters it and what it starts afterwards.
    enter_private_network()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Launch the system Chromium once for all browser tests (tests/browser, the projects' pages in tests/compat)."""
    from tests.support import chromium  # one launch recipe for tests and benchmarks

    if not chromium.CHROMIUM.exists():
        pytest.fail(f"{chromium.CHROMIUM} is not installed: apt-get install chromium")
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = chromium.launch(playwright.chromium)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def ice_address() -> str:
    """The session's non-loopback address, which WebRTC peers use for ICE; fails (never skips) without one."""
    address = private_address()
    if address is None:
        pytest.fail(f"no private network for WebRTC: {why_no_private_network()}")
    return address


@dataclass
class ServerProcess:
    """A running `vergence serve`."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    args: tuple[str, ...], log_path: Path, env: dict[str, str] | None = None, wrapper: tuple[str, ...] = ()
) -> ServerProcess:
    """Start `python -m vergence serve` (under `wrapper`, e.g. prlimit, which execs it) and wait (with a deadline) until
    its API answers."""
    port = free_port()
    command = [*wrapper, sys.executable, "-m", "vergence", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    log_file = log_path.open("wb")
    # Each server keeps its control state beside its log unless the test says otherwise: never in the user's home.
    env = {"VERGENCE_STATE__PATH": str(log_path.with_suffix(".state.json")), **(env or {})}
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **env})
    server = ServerProcess(process, port, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vergence exited with {process.returncode}:\n{server.log()}")
        try:
            # Up once the API answers (401 when the test turned authentication on) and no source is still opening:
            # a source's first states reach every controller as events, and a test that connects a controller then
            # expects to hear only what it caused.
            answer = httpx.get(f"{server.url}/api/streams", timeout=1)
            if answer.status_code == 401:
                return server
            if answer.status_code == 200 and not any(stream["state"] == "starting" for stream in answer.json()):
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)  # poll interval of a deadline loop, not a wait for an event
    server.stop()
    raise RuntimeError(f"vergence did not answer within {STARTUP_TIMEOUT_S} s:\n{server.log()}")


@pytest.fixture
def vergence_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: `vergence_server("--size", "640x360")` starts a server; all are stopped at teardown."""
    servers: list[ServerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, wrapper: tuple[str, ...] = ()) -> ServerProcess:
        server = start_server(args, tmp_path / f"server{len(servers)}.log", env, wrapper)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One 640x360@30 test-pattern server for every test of a module that only reads from it."""
    server = start_server(("--size", "640x360", "--fps", "30"), tmp_path_factory.mktemp("server") / "server.log")
    yield server
    server.stop()
