"""Starting and stopping the real servers tests run beside vergence (mosquitto, nginx-rtmp): wait until they listen."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

import pytest

STARTUP_TIMEOUT_S = 10.0


def require(available: bool, what: str) -> None:
    """Fail (never skip) when a component the tests need is missing: scripts/test.sh installs it."""
    if not available:
        pytest.fail(f"{what} is not installed; scripts/test.sh installs everything the tests need", pytrace=False)


def wait_listening(
    process: subprocess.Popen[bytes], port: int, name: str, log: Callable[[], str], host: str = "127.0.0.1"
) -> None:
    """Return once `port` accepts connections; raise with the daemon's log if it exits or the deadline passes."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log()}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not listen within {STARTUP_TIMEOUT_S} s:\n{log()}") from None
            time.sleep(0.05)  # poll interval of a deadline loop, not a wait for an event


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate a daemon, killing it if it does not go within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
