"""A virtual X display for tests and benches (Debian's xvfb): the preview's window opens on it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def virtual_display(width: int, height: int, number: int | None = None) -> Iterator[str]:
    """Run Xvfb with one screen of this size; yield its DISPLAY once it accepts clients (`-displayfd`): display
    `number`, or one Xvfb chose itself."""
    if shutil.which("Xvfb") is None:
        raise RuntimeError("Xvfb is not installed: apt-get install xvfb (scripts/install.sh --test does)")
    read, write = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", *([f":{number}"] if number is not None else []), "-displayfd", str(write)]
        + ["-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as chosen:
        number = chosen.readline().strip()  # written once the display accepts clients
    try:
        if not number.isdigit():
            raise RuntimeError(f"Xvfb did not start (exit {xvfb.poll()})")
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
