"""Run a coroutine to completion from a plain test, even while another event loop runs in this thread."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
    """`asyncio.run` on a fresh thread: Playwright's sync API keeps a loop running in the main thread."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-loop") as pool:
        return pool.submit(asyncio.run, coro).result(timeout=timeout_s)
