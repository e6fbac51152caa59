"""Benchmarks behind `vergence bench` (see bench/README.md): development tools of a checkout, not part of the installed
package. They run from the checkout's root on `sys.path` (`vergence bench` puts it there; `python -m bench.NAME` from the
root does too) and share their fixtures with the tests (`tests/support`)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout: bench/, tests/, src/
