"""Fakes of hardware-facing packages (picamera2, libcamera), put on sys.path only by the tests that want them."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

FAKES_DIR = Path(__file__).resolve().parent
_FAKE_PACKAGES = ("picamera2", "libcamera")
_FAKE_MODULES = (
    "picamera2",
    "picamera2.fake",
    "picamera2.picamera2",
    "picamera2.request",
    "libcamera",
    "libcamera.controls",
)


def use_fake_picamera2(
    monkeypatch: pytest.MonkeyPatch, models: list[str] | tuple[str, ...] = ("imx219",)
) -> ModuleType:
    """Make `import picamera2` (and `libcamera`) load the fakes with these sensor modules; return `picamera2.fake`.

    Whatever picamera2 modules were imported before (the real ones on a Pi, or another test's fakes) are set aside and
    come back when the test ends, so the real package and the fake never mix.
    """
    _set_aside(monkeypatch)
    monkeypatch.syspath_prepend(str(FAKES_DIR))
    import picamera2.fake

    picamera2.fake.configure(list(models))
    return picamera2.fake


def _set_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget every picamera2/libcamera module for this test; monkeypatch puts back the previous ones afterwards."""
    names = {name for name in sys.modules if name.split(".")[0] in _FAKE_PACKAGES} | set(_FAKE_MODULES)
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]  # records what to restore
        del sys.modules[name]


def hide_picamera2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import picamera2` fail, as on a machine without it, for the rest of the test."""
    _set_aside(monkeypatch)
    for name in _FAKE_PACKAGES:
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]  # None in sys.modules: ImportError
