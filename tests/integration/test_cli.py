"""The command line: invalid configuration fails at start with a message naming the key."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--fps", "0"], "fps"),
        (["--size", "12x"], "size"),
        (["--port", "0"], "server.port"),
    ],
)
def test_invalid_values_exit_non_zero_naming_the_key(args, key):
    result = subprocess.run(
        [sys.executable, "-m", "vergence", "serve", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert key in result.stderr and "invalid config" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_environment_value_fails_the_same_way():
    import os

    env = {**os.environ, "VERGENCE_JPEG__QUALITY": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "vergence", "serve"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode != 0 and "jpeg.quality" in result.stderr and "1 … 100" in result.stderr
