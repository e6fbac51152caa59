"""One launch recipe for tests and benchmarks: Debian's Chromium (never a Playwright-downloaded browser), headless, with
software decode and canvas as on the target."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("VERGENCE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def launch(browser_type: Any, *extra_args: str) -> Any:
    """Launch CHROMIUM through a Playwright browser type (`playwright.chromium`) with CHROMIUM_ARGS and `extra_args`."""
    return browser_type.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args])
