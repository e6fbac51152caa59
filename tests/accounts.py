"""A second, real account for local-security tests: nobody, reached through setpriv (the suite runs as root in CI)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

NOBODY = 65534
SYSTEM_PYTHON = Path("/usr/bin/python3")  # reachable by any account, unlike a virtual environment under a 0700 dir


def as_nobody(*command: str, files: int | None = None) -> list[str]:
    """`command` run as nobody (with `files` as its open-file limit, soft and hard, when given)."""
    if os.geteuid() != 0:
        pytest.fail("this test runs a second account (nobody): run the suite as root, as CI does")
    if command and command[0] == str(SYSTEM_PYTHON) and not SYSTEM_PYTHON.exists():
        pytest.fail(f"{SYSTEM_PYTHON} is needed to run Python as another account")
    limit = ["prlimit", f"--nofile={files}:{files}"] if files is not None else []
    return [*limit, "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


def python_as_nobody(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `code` with the system Python as nobody; fail the test if it fails."""
    done = subprocess.run(as_nobody(str(SYSTEM_PYTHON), "-c", code, *args), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done
